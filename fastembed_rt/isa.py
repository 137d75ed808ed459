"""The instruction set that our C++ kernels, and torch's oneDNN and ATen kernels, use on this CPU.

FASTEMBED_RT_ISA=scalar|avx2|avx512 (default auto: the best this CPU runs) caps every kernel of ours and,
when set before torch is first imported, torch's too (ONEDNN_MAX_CPU_ISA, ATEN_CPU_CAPABILITY,
MKL_ENABLE_INSTRUCTIONS; a value the user set for those is kept). An AVX-512 machine then takes the paths of an AVX2-only or a
baseline x86-64 CPU, and meets their speed. A level this CPU cannot run is refused here, at import, with a
message, instead of a SIGILL later.

FASTEMBED_RT_AMX=0 forbids our AMX kernels (bfloat16 attention, int8 linear layers) where the CPU has them: the
AVX-512 kernels they replace run instead, to measure or compare those.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from typing import Iterator

from . import _C

NAMES = ("scalar", "avx2", "avx512")
# The caps that make torch's kernels (oneDNN, ATen's vectorized ops, MKL's BLAS) behave as on a CPU of our
# level (none needed at the top one).
_TORCH_CAPS = {
    "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "scalar": {"ONEDNN_MAX_CPU_ISA": "SSE41", "ATEN_CPU_CAPABILITY": "default", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
}
# What cpuid and xgetbv report: fixed for the process, read once (the op layer asks on every call).
_FEATURES: dict[str, bool] = _C.cpu_features()
# The level torch's kernels were capped at by configure() (None: not capped). It lasts for the process: use()
# can raise our kernels above it, never torch's.
_torch_cap: str | None = None


def requested() -> str:
    """FASTEMBED_RT_ISA, checked: 'auto' or a level this CPU runs."""
    name = os.environ.get("FASTEMBED_RT_ISA", "").strip().lower() or "auto"
    if name != "auto" and name not in NAMES:
        raise ValueError(f"FASTEMBED_RT_ISA={name!r} is not an instruction set; use auto, {', '.join(NAMES)}")
    if name != "auto" and name not in _C.supported_isas():
        raise RuntimeError(f"FASTEMBED_RT_ISA={name} cannot run on this CPU, which supports "
                           f"{', '.join(_C.supported_isas())}; unset it or pick one of those")  # fmt: skip
    return name


def configure() -> None:
    """Applies FASTEMBED_RT_ISA to our kernels and (before torch loads) to oneDNN and ATen."""
    name = requested()
    caps = _TORCH_CAPS.get(name, {})
    if caps and "torch" in sys.modules:
        warnings.warn(f"FASTEMBED_RT_ISA={name} was set after torch was imported: oneDNN and ATen may keep their "
                      "wider instructions; import fastembed_rt first", RuntimeWarning, stacklevel=3)  # fmt: skip
    global _torch_cap
    for key, value in caps.items():
        os.environ.setdefault(key, value)
    _torch_cap = name if caps else None
    _C.set_active_isa(name)
    amx = os.environ.get("FASTEMBED_RT_AMX", "1").strip()
    if amx not in ("0", "1"):
        raise ValueError(f"FASTEMBED_RT_AMX={amx!r}: use 1 (AMX kernels where the CPU has them, the default) or 0")
    _C.set_amx_allowed(amx == "1")


def active() -> str:
    """The level our kernels run at now."""
    return _C.active_isa()


def has(feature: str) -> bool:
    """Whether an extension beyond the active level's base is usable: avx512_vnni, avx512_bf16, avx512_vpopcntdq
    exist only at the avx512 level."""
    return active() == "avx512" and _FEATURES[feature]


def onednn_bfloat16() -> bool:
    """Whether oneDNN runs bfloat16 GEMMs fast here: with AVX512_BF16. (With AVX-512 but without it, oneDNN
    emulates them: 0.40x the float32 model's tokens/s on an Ice Lake Xeon, where our packed kernels, which
    widen the bfloat16 weights to float32, gave 0.66x; without AVX-512 it refuses.)"""
    return has("avx512_bf16") and _torch_cap is None


def int_mm_fast() -> bool:
    """Whether torch._int_mm has a fast, exact kernel here (oneDNN with VNNI); elsewhere ours runs."""
    return has("avx512_vnni") and _torch_cap is None


def float_panels_preferred() -> bool:
    """Whether float32 and bfloat16 linear layers run on our panel kernels at every batch size, rather than on MKL's
    sgemm from a few hundred rows on: on AMD CPUs at the AVX2 level, where MKL's sgemm (tuned for Intel cores) lost
    to them. AMD EPYC Zen 3, 2 threads, MiniLM on 1,000 bench texts: float32 16.8 s against 18.7 s through MKL (the
    panels' epilogue adds the bias and GELU, no separate pass); bfloat16 16.4-16.9 s against 17.5-18.1 s for MKL on
    the weights widened. On Intel, MKL's AVX2 sgemm beat the panels (1.3x at 1,024 rows, a Xeon capped at AVX2)."""
    return active() == "avx2" and _FEATURES["amd"]


def amx_int8() -> bool:
    """Whether our int8 linear layers run on AMX tiles here (AMX-INT8, at the avx512 level, allowed)."""
    return _C.amx_int8_ready()


@contextlib.contextmanager
def use(name: str) -> Iterator[None]:
    """Runs our kernels at `name` for a while (tests: every level on one machine). oneDNN and ATen are not
    affected: they read their caps once, when torch starts."""
    previous = active()
    _C.set_active_isa(name)
    try:
        yield
    finally:
        _C.set_active_isa(previous)


@contextlib.contextmanager
def amx_allowed(allowed: bool) -> Iterator[None]:
    """Allows or forbids our AMX kernels for a while (tests and benchmarks of the kernels they replace)."""
    previous = _C.set_amx_allowed(allowed)
    try:
        yield
    finally:
        _C.set_amx_allowed(previous)
