"""Late-interaction MaxSim in one Triton kernel: each program takes one (query, document) pair, keeps a block of the
query's tokens in registers, streams the document's tokens a block at a time (tl.dot over the dimension) and keeps
each query token's running maximum; the [query tokens x document tokens] matrix is never written.

Reference twin: fastembed_rt.ops.reference.maxsim (an empty query or document scores 0).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .launch import check_packed, interpreting


@triton.jit
def _maxsim_kernel(Q, D, QCU, DCU, OUT, stride_q, stride_d, num_docs, dim,
                   PRECISION: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr):  # fmt: skip
    query = tl.program_id(0)
    doc = tl.program_id(1)
    q_start = tl.load(QCU + query)
    q_len = tl.load(QCU + query + 1) - q_start
    d_start = tl.load(DCU + doc)
    d_len = tl.load(DCU + doc + 1) - d_start
    dims = tl.arange(0, BLOCK_D)
    dim_ok = dims < dim
    rows = tl.arange(0, BLOCK_Q)
    cols = tl.arange(0, BLOCK_T)
    total = 0.0
    for q0 in range(0, q_len, BLOCK_Q):
        q_ok = q0 + rows < q_len
        q = tl.load(Q + (q_start + q0 + rows).to(tl.int64)[:, None] * stride_q + dims[None, :],
                    mask=q_ok[:, None] & dim_ok[None, :], other=0.0)  # fmt: skip
        best = tl.full([BLOCK_Q], float("-inf"), tl.float32)
        for t0 in range(0, d_len, BLOCK_T):
            t_ok = t0 + cols < d_len
            d = tl.load(D + (d_start + t0 + cols).to(tl.int64)[:, None] * stride_d + dims[None, :],
                        mask=t_ok[:, None] & dim_ok[None, :], other=0.0)  # fmt: skip
            s = tl.dot(q, tl.trans(d), input_precision=PRECISION)
            s = tl.where(t_ok[None, :], s, float("-inf"))
            best = tl.maximum(best, tl.max(s, 1))
        total += tl.sum(tl.where(q_ok & (d_len > 0), best, 0.0), 0)
    tl.store(OUT + query.to(tl.int64) * num_docs + doc, total)


def maxsim(queries: torch.Tensor, query_cu: torch.Tensor, documents: torch.Tensor, doc_cu: torch.Tensor,
           int8: bool = False) -> torch.Tensor:  # fmt: skip
    """float32 [num_queries, num_docs] MaxSim scores of packed query and document token vectors (float32, float16
    or bfloat16, dimension <= 1024)."""
    if int8:
        raise ValueError("the Triton MaxSim kernel takes float token vectors, not int8 codes")
    if queries.dim() != 2 or documents.dim() != 2 or queries.shape[1] != documents.shape[1]:
        raise ValueError(f"queries and documents must be [tokens, dim] of one dim, got {tuple(queries.shape)} and {tuple(documents.shape)}")
    if queries.shape[1] > 1024:
        raise ValueError(f"the Triton MaxSim kernel takes dimensions up to 1024, got {queries.shape[1]}")
    nq = check_packed(query_cu, queries.shape[0], "query_cu", queries.device)
    nd = check_packed(doc_cu, documents.shape[0], "doc_cu", documents.device)
    documents = documents.to(queries.dtype).contiguous()
    queries = queries.contiguous()
    out = torch.zeros((nq, nd), dtype=torch.float32, device=queries.device)
    if nq == 0 or nd == 0:
        return out
    block_d = max(16, triton.next_power_of_2(queries.shape[1]))
    block_q, block_t = (32, 32) if interpreting() else (32, 64)
    _maxsim_kernel[(nq, nd)](
        queries, documents, query_cu, doc_cu, out, queries.stride(0), documents.stride(0), nd, queries.shape[1],
        PRECISION="ieee" if queries.dtype == torch.float32 else "tf32", BLOCK_Q=block_q, BLOCK_T=block_t, BLOCK_D=block_d,
    )  # fmt: skip
    return out
