"""The compute ceilings the similarity benchmark divides by."""

import pytest

from fastembed_rt import _C, isa


@pytest.mark.parametrize("level", _C.supported_isas())
def test_ceilings_are_measured_at_each_isa_or_refused_clearly(level):
    with isa.use(level):
        if level == "scalar":
            with pytest.raises(ValueError, match="at AVX2 or better; the active ISA is scalar"):
                _C.compute_ceilings(1, 0.05)
            return
        one = _C.compute_ceilings(1, 0.05)
        with pytest.raises(ValueError, match=r"seconds must be in \(0, 60\]"):
            _C.compute_ceilings(1, 0.0)
    assert one["threads"] == 1 and one["isa"] == level
    # Each loop issues at least one 256-bit instruction per 10 ns on one thread: far below any AVX2 core.
    assert one["int8_macs_per_s"] > 32 / 10e-9 and one["int16_macs_per_s"] > 16 / 10e-9
    assert one["fp32_fmas_per_s"] > 8 / 10e-9
    assert one["hamming_bits_per_s"] > 64 / 10e-9
