"""MaxSim rerank (late interaction): our kernels against PyLate's torch scoring and maxsim-cpu, one run.

    python benchmarks/bench_maxsim.py [--queries Q] [--docs N] [--doc-tokens T] [--dim D] [--threads T] [--rounds R]

Workload (issue 17's): Q queries of 32 tokens, each scored against the same N candidate documents of T tokens x D
dims (unit-norm random token vectors, as ColBERT's are normalized), one query per call as a reranker calls it.
- PyLate: pylate.scores.colbert_scores (its torch path on the CPU: einsum to [1, N, 32, T], max, sum) on the padded
  [N, T, D] documents;
- maxsim-cpu: maxsim_cpu.maxsim_scores(query, documents [N, T, D]);
- ours: ops.maxsim on the packed documents: float32, bfloat16 (queries and documents stored as bfloat16: half
  float32's bytes, widened exactly and computed in float32), int8 with the documents quantized as they stream, and
  int8 on documents stored as per-token int8 codes + scales (a multi-vector corpus as it is kept: a quarter of
  float32's bytes).
Each system scores every query once per round, in turn; its best round counts. Prints ms per query, ratios, and the
largest score difference to PyLate's float32 (int8: relative). Rows go to benchmarks/results/late_interaction.csv.
"""

from __future__ import annotations

import argparse
import time

import fastembed_rt  # first: it sets the OpenMP spin policy and the ISA cap before torch loads
import numpy as np
import torch
from results_csv import append_rows

from fastembed_rt import isa, ops
from fastembed_rt.ops import reference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--doc-tokens", type=int, default=300)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    queries = torch.nn.functional.normalize(torch.randn(args.queries, 32, args.dim, generator=g), dim=-1)
    documents = torch.nn.functional.normalize(torch.randn(args.docs, args.doc_tokens, args.dim, generator=g), dim=-1)
    packed = documents.reshape(-1, args.dim).contiguous()
    doc_cu = torch.arange(0, packed.shape[0] + 1, args.doc_tokens, dtype=torch.int32)
    query_cu = torch.tensor([0, 32], dtype=torch.int32)

    systems = {}
    try:
        from pylate.scores import colbert_scores

        systems["PyLate colbert_scores (torch)"] = lambda q: colbert_scores(q[None], documents, backend="torch")[0]
    except ImportError as e:
        print(f"PyLate: not installed ({e})")
    try:
        import maxsim_cpu

        documents_np = documents.numpy()
        systems["maxsim-cpu"] = lambda q: torch.from_numpy(np.asarray(maxsim_cpu.maxsim_scores(q.numpy(), documents_np)))
    except ImportError as e:
        print(f"maxsim-cpu: not installed ({e})")
    systems["fastembed_rt float32"] = lambda q: ops.maxsim(q, query_cu, packed, doc_cu)[0]
    stored_bf16 = packed.bfloat16()
    systems["fastembed_rt bfloat16 (stored)"] = lambda q: ops.maxsim(q.bfloat16(), query_cu, stored_bf16, doc_cu)[0]
    systems["fastembed_rt int8"] = lambda q: ops.maxsim(q, query_cu, packed, doc_cu, int8=True)[0]
    codes = reference.quantize_rows(packed)
    systems["fastembed_rt int8 (stored codes)"] = lambda q: ops.maxsim(q, query_cu, codes, doc_cu, int8=True)[0]

    best = {name: float("inf") for name in systems}
    scores = {}
    for _ in range(args.rounds):
        for name, fn in systems.items():
            start = time.perf_counter()
            scores[name] = torch.stack([fn(q) for q in queries])
            best[name] = min(best[name], (time.perf_counter() - start) / args.queries)
    exact = torch.einsum("qsh,bth->qbst", queries.double(), documents.double()).amax(-1).sum(-1).float()
    peer = "PyLate colbert_scores (torch)" if "PyLate colbert_scores (torch)" in best else "fastembed_rt float32"
    print(f"ISA {isa.active()}, {args.threads} threads: {args.queries} queries x 32 tokens against {args.docs} documents x "
          f"{args.doc_tokens} tokens x {args.dim} dims")  # fmt: skip
    print(f"{'system':32s} {'ms/query':>9s} {'vs PyLate':>10s} {'vs maxsim-cpu':>14s} {'vs our fp32':>12s} {'max rel err':>12s}")
    rows = []
    for name, seconds in best.items():
        error = float(((scores[name] - exact).abs() / exact.abs()).max())
        ratios = [best[peer] / seconds, best["maxsim-cpu"] / seconds if "maxsim-cpu" in best else float("nan"),
                  best["fastembed_rt float32"] / seconds]  # fmt: skip
        print(f"{name:32s} {seconds * 1e3:9.2f} {ratios[0]:10.2f} {ratios[1]:14.2f} {ratios[2]:12.2f} {error:12.2e}")
        rows.append(["rerank", name, args.threads, args.queries, args.docs, args.doc_tokens, args.dim, round(seconds * 1e3, 3),
                     *(round(r, 3) for r in ratios), f"{error:.2e}"])  # fmt: skip
    append_rows("late_interaction.csv", ["form", "system", "threads", "queries", "docs", "doc_tokens", "dim", "ms_per_query",
                                         "vs_pylate", "vs_maxsim_cpu", "vs_our_float32", "max_rel_error"], rows)  # fmt: skip


if __name__ == "__main__":
    main()
