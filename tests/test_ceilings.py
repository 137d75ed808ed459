"""The compute ceilings the similarity benchmark divides by."""

import pytest

from fastembed_rt import _C


def test_ceilings_are_measured_or_refused_clearly():
    if "avx512" not in _C.supported_isas():
        with pytest.raises(ValueError, match="which this CPU lacks"):
            _C.compute_ceilings(1, 0.05)
        return
    one = _C.compute_ceilings(1, 0.05)
    assert one["threads"] == 1
    # Each loop issues at least one 512-bit instruction per 10 ns on one thread: far below any AVX-512 core.
    assert one["int8_macs_per_s"] > 64 / 10e-9 and one["fp32_fmas_per_s"] > 16 / 10e-9
    assert one["hamming_bits_per_s"] > 512 / 10e-9
    with pytest.raises(ValueError, match=r"seconds must be in \(0, 60\]"):
        _C.compute_ceilings(1, 0.0)
