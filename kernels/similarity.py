"""Exact top-k search over int8 and binary corpora in Triton, with no query x corpus score matrix in memory.

Each program takes a block of queries and one slice of the corpus. It scores corpus tiles (int8: `tl.dot`
with int32 accumulation, on tensor cores; binary: XOR + popcount over 32-bit words) and merges each tile
into a running per-query top-k kept in registers. A candidate is one int64 key, score << 32 | ~id, so that
"higher score, then lower id" is a single integer comparison, and results are exact and deterministic.
The slices' top-k lists ([slices, queries, k], small) are merged by one torch.topk on the keys.

Reference twins: fastembed_rt.ops.reference.int8_topk and hamming_topk.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .launch import interpreting

LOW_BITS = 0xFFFFFFFF
MAX_K = 256


@triton.jit
def _merge_tile(best, keys, K_PAD: tl.constexpr, K: tl.constexpr):
    """Moves the K largest keys of a [BQ, BN] tile into the running top-k `best` [BQ, K_PAD] (K slots used)."""
    slots = tl.arange(0, K_PAD)[None, :]
    for _ in range(K):
        top = tl.max(keys, 1)  # the tile's best remaining candidate per query
        worst = tl.min(tl.where(slots < K, best, 9223372036854775807), 1)
        better = top > worst
        # Replace the first slot holding the current worst, where the candidate beats it.
        worst_slot = tl.min(tl.where((best == worst[:, None]) & (slots < K), slots, K_PAD), 1)
        best = tl.where(better[:, None] & (slots == worst_slot[:, None]), top[:, None], best)
        keys = tl.where(keys == top[:, None], -9223372036854775807 - 1, keys)  # keys are unique: ids differ
    return best


@triton.jit
def _popcount(x):
    """Set bits of each int32 word (SWAR), as int32."""
    x = x - ((x >> 1) & 0x55555555)
    x = (x & 0x33333333) + ((x >> 2) & 0x33333333)
    x = (x + (x >> 4)) & 0x0F0F0F0F
    return (x * 0x01010101) >> 24


@triton.jit
def _topk_kernel(Q, C, OUT, n_queries, n_corpus, width, per_slice, stride_q, stride_c,
                 K: tl.constexpr, K_PAD: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_N: tl.constexpr,
                 BLOCK_INNER: tl.constexpr, HAMMING: tl.constexpr):  # fmt: skip
    """Rows of `width` int8 values (dot products) or int32 words of bits (HAMMING: scores are minus the
    Hamming distance, so that higher is nearer in both)."""
    q_block = tl.program_id(0)
    part = tl.program_id(1)
    queries = q_block * BLOCK_Q + tl.arange(0, BLOCK_Q)
    q_ok = queries < n_queries
    lo = part * per_slice
    hi = tl.minimum(lo + per_slice, n_corpus)
    best = tl.full([BLOCK_Q, K_PAD], -9223372036854775807 - 1, tl.int64)
    lanes = tl.arange(0, BLOCK_INNER)
    for n0 in range(lo, hi, BLOCK_N):
        ids = n0 + tl.arange(0, BLOCK_N)
        id_ok = ids < hi
        scores = tl.zeros([BLOCK_Q, BLOCK_N], tl.int32)
        for d0 in range(0, width, BLOCK_INNER):
            d_ok = d0 + lanes < width
            q = tl.load(Q + queries[:, None].to(tl.int64) * stride_q + d0 + lanes[None, :], mask=q_ok[:, None] & d_ok[None, :], other=0)
            c = tl.load(C + ids[:, None].to(tl.int64) * stride_c + d0 + lanes[None, :], mask=id_ok[:, None] & d_ok[None, :], other=0)
            if HAMMING:
                scores -= tl.sum(_popcount(q[:, None, :] ^ c[None, :, :]), 2)
            else:
                scores += tl.dot(q, tl.trans(c), out_dtype=tl.int32)
        keys = (scores.to(tl.int64) << 32) | (4294967295 - ids[None, :].to(tl.int64))
        keys = tl.where(id_ok[None, :], keys, -9223372036854775807 - 1)
        best = _merge_tile(best, keys, K_PAD, K)
    slots = tl.arange(0, K_PAD)
    out = OUT + (part * n_queries + queries[:, None]).to(tl.int64) * K + slots[None, :]
    tl.store(out, best, mask=q_ok[:, None] & (slots[None, :] < K))


def _check(queries: torch.Tensor, corpus: torch.Tensor, k: int, dtype: torch.dtype, what: str) -> None:
    if queries.dtype != dtype or corpus.dtype != dtype:
        raise ValueError(f"{what}: queries and corpus must be {dtype}, got {queries.dtype} and {corpus.dtype}")
    if queries.dim() != 2 or corpus.dim() != 2 or queries.shape[1] != corpus.shape[1]:
        raise ValueError(f"{what}: queries [nq, d] and corpus [n, d] must share d, got {tuple(queries.shape)} and {tuple(corpus.shape)}")
    if queries.device != corpus.device:
        raise ValueError(f"{what}: queries on {queries.device}, corpus on {corpus.device}")
    if not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise ValueError(f"{what}: k must be an int in [1, {MAX_K}], got {k!r}")
    if corpus.shape[0] >= 2**31:
        raise ValueError(f"{what}: corpora of 2^31 rows or more are not supported")


def _search(queries, corpus, k, hamming: bool, block_q, block_n, block_inner):
    n_queries, n_corpus = queries.shape[0], corpus.shape[0]
    k_eff = min(k, n_corpus)
    if n_queries == 0 or k_eff == 0:
        empty = torch.empty((n_queries, k_eff), device=queries.device)
        return empty.to(torch.int32), empty.to(torch.int64)
    q_blocks = triton.cdiv(n_queries, block_q)
    # Enough corpus slices to fill the GPU (~4 programs per SM); one slice under the interpreter.
    programs = 1 if interpreting() else 4 * torch.cuda.get_device_properties(queries.device).multi_processor_count
    slices = max(1, min(triton.cdiv(n_corpus, block_n), triton.cdiv(programs, q_blocks)))
    per_slice = triton.cdiv(triton.cdiv(n_corpus, slices), block_n) * block_n
    slices = triton.cdiv(n_corpus, per_slice)
    keys = torch.empty((slices, n_queries, k_eff), dtype=torch.int64, device=queries.device)
    _topk_kernel[(q_blocks, slices)](
        queries, corpus, keys, n_queries, n_corpus, queries.shape[1], per_slice, queries.stride(0), corpus.stride(0),
        K=k_eff, K_PAD=max(16, triton.next_power_of_2(k_eff)), BLOCK_Q=block_q, BLOCK_N=block_n, BLOCK_INNER=block_inner,
        HAMMING=hamming,
    )  # fmt: skip
    keys = keys.permute(1, 0, 2).reshape(n_queries, slices * k_eff)
    keys = keys.topk(k_eff, dim=1).values  # keys are unique, so this is exact and its order total
    scores = (keys >> 32).to(torch.int32)
    ids = LOW_BITS - (keys & LOW_BITS)
    return scores, ids


def int8_topk(queries: torch.Tensor, corpus: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k int8 dot products: (scores int32 [nq, k'], ids int64 [nq, k']), k' = min(k, n), best first,
    equal scores to the lower id."""
    _check(queries, corpus, k, torch.int8, "int8_topk")
    queries, corpus = queries.contiguous(), corpus.contiguous()
    small = interpreting()
    return _search(queries, corpus, k, False, 16 if small else 64, 32 if small else 128, 32 if small else 128)


def hamming_topk(queries: torch.Tensor, corpus: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k by Hamming distance over packed bits (uint8 [n, d/8], as quantize_embeddings' ubinary):
    (distances int32 [nq, k'], ids int64 [nq, k']), nearest first, equal distances to the lower id."""
    _check(queries, corpus, k, torch.uint8, "hamming_topk")
    pad = -queries.shape[1] % 4  # whole 32-bit words; zero bytes XOR to zero
    queries, corpus = ((torch.nn.functional.pad(t, (0, pad)) if pad else t).contiguous().view(torch.int32) for t in (queries, corpus))
    small = interpreting()
    scores, ids = _search(queries, corpus, k, True, 16 if small else 32, 32 if small else 64, 8)
    return -scores, ids
