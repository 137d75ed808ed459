"""Triton int8 and Hamming top-k: exactly the reference's and the C++ kernels' answers, ties included."""

import numpy as np
import pytest
import torch

from fastembed_rt import _C
from fastembed_rt.kernels import hamming_topk, int8_topk
from fastembed_rt.ops import reference

from .common import DEVICE

CASES = [(1, 1, 1, 1), (3, 1000, 384, 10), (17, 333, 13, 5), (2, 5, 7, 10), (5, 200, 64, 1), (4, 129, 96, 33)]


@pytest.mark.parametrize("queries, corpus, dim, k", CASES)
def test_int8_topk_is_exact(queries, corpus, dim, k):
    g = torch.Generator().manual_seed(queries * corpus + dim)
    q = torch.randint(-128, 128, (queries, dim), dtype=torch.int8, generator=g)
    c = torch.randint(-3, 4, (corpus, dim), dtype=torch.int8, generator=g)  # small values: many equal scores
    c[corpus // 2] = c[0]  # an exact tie between two ids
    scores, ids = int8_topk(q.to(DEVICE), c.to(DEVICE), k)
    want_scores, want_ids = reference.int8_topk(q, c, k)
    assert scores.dtype == torch.int32 and ids.dtype == torch.int64 and scores.shape == (queries, min(k, corpus))
    assert torch.equal(scores.cpu(), want_scores) and torch.equal(ids.cpu(), want_ids)
    cpp_scores, cpp_ids = _C.topk_dot_i8(q.numpy(), c.numpy(), min(k, corpus), "auto")
    assert np.array_equal(scores.cpu().numpy(), cpp_scores) and np.array_equal(ids.cpu().numpy(), cpp_ids)


@pytest.mark.parametrize("queries, corpus, dim, k", CASES)
def test_hamming_topk_is_exact(queries, corpus, dim, k):
    g = torch.Generator().manual_seed(queries + corpus * dim)
    nbytes = (dim + 7) // 8
    q = torch.randint(0, 256, (queries, nbytes), dtype=torch.uint8, generator=g)
    c = torch.randint(0, 256, (corpus, nbytes), dtype=torch.uint8, generator=g)
    c[corpus // 2] = c[0]
    distances, ids = hamming_topk(q.to(DEVICE), c.to(DEVICE), k)
    want_distances, want_ids = reference.hamming_topk(q, c, k)
    assert torch.equal(distances.cpu(), want_distances) and torch.equal(ids.cpu(), want_ids)
    cpp_distances, cpp_ids = _C.topk_hamming(q.numpy(), c.numpy(), min(k, corpus), "auto")
    assert np.array_equal(distances.cpu().numpy(), cpp_distances) and np.array_equal(ids.cpu().numpy(), cpp_ids)


def test_extreme_int8_values_and_empty_inputs():
    q = torch.full((2, 300), -128, dtype=torch.int8, device=DEVICE)
    c = torch.cat([torch.full((3, 300), -128, dtype=torch.int8), torch.full((3, 300), 127, dtype=torch.int8)]).to(DEVICE)
    scores, ids = int8_topk(q, c, 4)
    assert scores.tolist() == [[128 * 128 * 300] * 3 + [-128 * 127 * 300]] * 2 and ids.tolist() == [[0, 1, 2, 3]] * 2
    scores, ids = int8_topk(q[:0], c, 3)
    assert scores.shape == (0, 3) and ids.shape == (0, 3)


def test_bad_arguments_are_named():
    q = torch.zeros(2, 8, dtype=torch.int8, device=DEVICE)
    with pytest.raises(ValueError, match="int8_topk: queries and corpus must be torch.int8"):
        int8_topk(q, q.float(), 1)
    with pytest.raises(ValueError, match="must share d"):
        int8_topk(q, torch.zeros(3, 9, dtype=torch.int8, device=DEVICE), 1)
    with pytest.raises(ValueError, match="k must be an int in \\[1, 256\\], got 0"):
        hamming_topk(q.to(torch.uint8), q.to(torch.uint8), 0)
