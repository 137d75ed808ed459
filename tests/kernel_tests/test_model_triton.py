"""Whole models through the Triton kernels: under the interpreter on the CPU (a tiny BERT), and on a CUDA
GPU (all-MiniLM-L6-v2 in bfloat16 / float16 against float32 on the CPU)."""

import pytest
import torch

import fastembed_rt
from fastembed_rt import ops
from fastembed_rt.testing import random_bert, row_cosines, synthetic_texts

from .common import GPU, needs_gpu

TRITON_OPS = ("attention", "layer_norm", "gelu", "pool")
TEXTS = ["A man is playing a guitar.", "x", "Stock markets fell sharply on Tuesday after the report. " * 4, ""]


@pytest.mark.skipif(GPU, reason="the interpreter run is for machines without a GPU; the GPU test covers the rest")
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_tiny_bert_through_triton_kernels_under_the_interpreter(tiny_bert_dir, dtype):
    reference_vectors = fastembed_rt.load(tiny_bert_dir, device="cpu").encode(TEXTS)
    model = fastembed_rt.load(tiny_bert_dir, device="cpu", dtype=dtype)
    with ops.use_implementation("triton", *TRITON_OPS), ops.use_implementation("cublas", "linear"):
        assert {ops.select(op, torch.device("cpu"), model.dtype).name for op in TRITON_OPS} == {"triton"}
        vectors = model.encode(TEXTS)
    assert row_cosines(vectors, reference_vectors).min() >= (0.99999 if dtype == "float32" else 0.999)


def test_use_implementation_names_what_is_missing():
    with pytest.raises(KeyError, match="no implementation 'triton' of op\\(s\\) embed"):
        with ops.use_implementation("triton", "attention", "embed"):
            pass
    assert not ops.forcing()


@needs_gpu
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_bert_on_cuda_matches_float32_on_the_cpu(tmp_path, dtype):
    """A random-weight BERT (4 layers, hidden 384, head_dim 64) on texts of 1-500 tokens."""
    directory = random_bert(tmp_path, hidden=384, layers=4, heads=6, intermediate=1536)
    texts = synthetic_texts(200, 1, 500, 30522, seed=1)
    expected = fastembed_rt.load(directory, device="cpu").encode(texts)
    model = fastembed_rt.load(directory, device="cuda", dtype=dtype)
    assert {ops.select(op, torch.device("cuda"), model.dtype).name for op in TRITON_OPS} == {"triton"}
    assert row_cosines(model.encode(texts), expected).min() >= 0.999
