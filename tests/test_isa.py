"""FASTEMBED_RT_ISA: every kernel capped at the level asked for, torch's kernels too when it is set before torch
loads, a level the CPU cannot run refused at import, and the same vectors at every level, thread count and in a
forked child."""

import multiprocessing
import os
import subprocess
import sys

import numpy as np
import pytest

import fastembed_rt
from fastembed_rt import _C, isa

TEXTS = ["how do I reset my password", "A man is playing a guitar.", "x"]


def python(code: str, level: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS")}
    return subprocess.run([sys.executable, "-c", code], env={**env, "FASTEMBED_RT_ISA": level}, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("level", [name for name in _C.supported_isas() if name != "avx512"])
def test_a_level_caps_our_kernels_and_torchs(level):
    result = python("import fastembed_rt, os, torch\n"
                    "print(fastembed_rt.isa.active(), torch.backends.cpu.get_cpu_capability(), os.environ['ONEDNN_MAX_CPU_ISA'])",
                    level)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == {"avx2": ["avx2", "AVX2", "AVX2"], "scalar": ["scalar", "DEFAULT", "SSE41"]}[level]


def test_unknown_level_is_refused_at_import():
    result = python("import fastembed_rt", "avx9")
    assert result.returncode != 0
    assert "FASTEMBED_RT_ISA='avx9' is not an instruction set; use auto, scalar, avx2, avx512" in result.stderr


def test_a_level_the_cpu_lacks_is_refused_with_a_message(monkeypatch):
    monkeypatch.setattr(isa._C, "supported_isas", lambda: ["avx2", "scalar"])  # an AVX2-only CPU
    monkeypatch.setenv("FASTEMBED_RT_ISA", "avx512")
    with pytest.raises(RuntimeError, match="FASTEMBED_RT_ISA=avx512 cannot run on this CPU, which supports avx2, scalar"):
        isa.configure()
    with pytest.raises(ValueError, match="isa 'avx9'|unknown isa 'avx9'"):
        _C.set_active_isa("avx9")


def test_fastembed_rt_amx_0_forbids_the_amx_kernels():
    code = "import fastembed_rt\nfrom fastembed_rt import _C\nprint(_C.amx_int8_ready(), _C.bf16_attention_products())"
    env = {**os.environ, "FASTEMBED_RT_AMX": "0"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    ready, attention = result.stdout.split()
    assert ready == "False" and attention != "amx"
    env["FASTEMBED_RT_AMX"] = "yes"
    result = subprocess.run([sys.executable, "-c", "import fastembed_rt"], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "FASTEMBED_RT_AMX='yes': use 1" in result.stderr


@pytest.fixture(scope="module")
def vectors_by_level(minilm_path, real_texts):
    texts = TEXTS + real_texts[:40]
    out = {}
    for level in _C.supported_isas():
        with isa.use(level):
            for dtype in ("float32", "bfloat16", "int8"):
                model = fastembed_rt.load(minilm_path, dtype=dtype)
                out[level, dtype] = (model.encode(texts), np.stack([model.encode(t) for t in TEXTS]))
    return out


@pytest.mark.parametrize("dtype,floor", [("float32", 0.99999), ("bfloat16", 0.999), ("int8", 0.99)])
def test_every_level_gives_the_same_vectors(vectors_by_level, dtype, floor):
    """float32 to summation order; bfloat16 and int8 within their quality gates (AVX2 has no bfloat16
    activations, no VNNI: other roundings, not other numbers)."""
    base, _ = vectors_by_level[_C.supported_isas()[0], dtype]
    for level in _C.supported_isas():
        batch, single = vectors_by_level[level, dtype]
        assert (batch * base).sum(1).min() >= floor, level
        assert (single * batch[: len(TEXTS)]).sum(1).min() >= floor, level  # fused small batches vs the op path


@pytest.mark.parametrize("level", [name for name in _C.supported_isas() if name != "scalar"])
def test_thread_counts_agree(minilm_path, level):
    import torch

    with isa.use(level):
        model = fastembed_rt.load(minilm_path, dtype="int8")
        previous = torch.get_num_threads()
        try:
            torch.set_num_threads(1)
            one = model.encode(TEXTS + ["a longer text " * 40])
            torch.set_num_threads(2)
            two = model.encode(TEXTS + ["a longer text " * 40])
        finally:
            torch.set_num_threads(previous)
    np.testing.assert_array_equal(one, two)  # int8: exact integer GEMMs, threads split columns, not sums


def _encode_in_child(model, level, queue):
    with isa.use(level):
        queue.put(model.encode(TEXTS))


@pytest.mark.parametrize("level", [name for name in _C.supported_isas() if name != "scalar"])
def test_a_forked_child_gives_the_same_vectors(minilm_path, level):
    """Small batches run in our own worker pool, which a forked child restarts. (torch's OpenMP pool is not
    fork-safe once used: a child that loads a model or runs large batches can hang inside torch.)"""
    with isa.use(level):
        model = fastembed_rt.load(minilm_path, dtype="int8")
        parent = model.encode(TEXTS)  # starts the parent's worker pool
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_encode_in_child, args=(model, level, queue))
    child.start()
    got = queue.get(timeout=120)
    child.join(timeout=60)
    np.testing.assert_array_equal(got, parent)
