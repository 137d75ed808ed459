"""Multi-vector search: MUVERA candidates + exact MaxSim rescoring against exact MaxSim, and fast-plaid, one run.

    python benchmarks/bench_multivector.py [--docs N] [--queries Q] [--dim D] [--threads T] [--fast-plaid]
    python benchmarks/bench_multivector.py --arguana  [recall of the candidate stage on real text]

Synthetic corpus: N documents of 16..48 token vectors (D dims, unit norm), each document's tokens drawn around 3 of
2,000 topic centers (cosine ~0.8 to their center); each query is 32 tokens around the 3 topics of a random document.
Documents are stored as int8 codes with per-token scales (MultiVectorIndex precision int8). The reference is exact
MaxSim over every document (float32 when N <= 200,000, else over the stored int8 codes: a float32 copy of 1M
documents does not fit beside the rest in 24 GB); recall@10 is the share of its top 10 found. MUVERA: 10
repetitions x 2^4 buckets x 16 dims = 2,560-value encodings in an int8 Index, then the C best rescored exactly.
fast-plaid (--fast-plaid; .venv-fast-plaid, benchmarks/setup_fast_plaid.sh): its own index (k-means centroids,
4-bit residuals) built from the float32 token vectors and searched with its defaults, in its own process.
--arguana: all-MiniLM-L6-v2's token states as a stand-in ColBERT (HF_ColBERT layout, a random orthogonal 384 -> 128
projection: no trained ColBERT weights are reachable here) over ArguAna's 8,674 documents and 1,406 queries:
recall@10 and @100 of MUVERA candidates + rescoring against exact MaxSim.
Rows go to benchmarks/results/late_interaction_search.csv.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import fastembed_rt  # first: it sets the OpenMP spin policy and the ISA cap before torch loads
import numpy as np
import torch
from results_csv import append_rows

from fastembed_rt import MultiVectorEmbeddings, MultiVectorIndex, isa

ROOT = Path(__file__).resolve().parents[1]
FAST_PLAID = ROOT / ".venv-fast-plaid" / "bin" / "python"
TOPICS = 2000
FLOAT_LIMIT = 200_000


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def synthetic(docs: int, queries: int, dim: int, keep_float: bool, seed: int = 0):
    """(documents as int8 MultiVectorEmbeddings, float32 ones or None, queries [Q, 32, dim])."""
    rng = np.random.default_rng(seed)
    centers = unit(rng.standard_normal((TOPICS, dim)))
    topics = rng.integers(TOPICS, size=(docs, 3))
    lengths = rng.integers(16, 49, size=docs)
    noise = 0.75 / np.sqrt(dim)
    int8_parts, float_parts = [], []
    for start in range(0, docs, 50_000):
        end = min(start + 50_000, docs)
        n = lengths[start:end]
        owner = np.repeat(np.arange(start, end), n)
        choice = topics[owner, rng.integers(3, size=len(owner))]
        tokens = unit(centers[choice] + noise * rng.standard_normal((len(owner), dim)).astype(np.float32))
        offsets = np.concatenate([[0], np.cumsum(n)]).astype(np.int64)
        part = MultiVectorEmbeddings(tokens, offsets)
        int8_parts.append(part.quantize())
        if keep_float:
            float_parts.append(part)
    targets = rng.integers(docs, size=queries)
    query_topics = topics[targets][:, rng.integers(3, size=32)]
    q = unit(centers[query_topics] + noise * rng.standard_normal((queries, 32, dim)).astype(np.float32))
    documents = MultiVectorEmbeddings.concatenate(int8_parts)
    return documents, MultiVectorEmbeddings.concatenate(float_parts) if keep_float else None, q


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a.tolist()) & set(b.tolist())) / truth.shape[1] for a, b in zip(found, truth)]))


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def bench_synthetic(args) -> list[list]:
    keep_float = args.docs <= FLOAT_LIMIT
    seconds, (documents, floats, queries) = timed(lambda: synthetic(args.docs, args.queries, args.dim, keep_float or args.fast_plaid))
    print(f"corpus: {args.docs:,} documents, {len(documents.vectors):,} tokens x {args.dim} (made in {seconds:.0f} s); "
          f"{args.queries} queries of 32 tokens")  # fmt: skip
    query_list = list(queries)
    rows = []
    truth_name = "exact float32 MaxSim" if keep_float else "exact MaxSim of the int8 codes"
    reference = MultiVectorIndex.build(floats) if keep_float else None
    build, index = timed(lambda: MultiVectorIndex.build(documents, "int8", candidates="int8"))
    index = MultiVectorIndex(documents, index.muvera, index.fde)  # the stored int8 codes, as built
    print(f"MUVERA encodings + int8 index built in {build:.1f} s")
    header = f"{'system':38s} {'candidates':>10s} {'queries/s':>10s} {'recall@10':>10s}"
    truth_seconds, (_, truth) = timed(lambda: (reference or index).search(query_list, 10, exact=True))
    print(f"reference: {truth_name}, {args.queries / truth_seconds:.2f} queries/s\n{header}")

    def add(system, candidates, seconds, found, build_s):
        r = recall(found, truth)
        print(f"{system:38s} {candidates!s:>10s} {args.queries / seconds:10.2f} {r:10.3f}")
        rows.append(["synthetic", args.docs, len(documents.vectors), args.dim, system, candidates, round(build_s, 1), args.queries,
                     round(args.queries / seconds, 3), round(r, 4), truth_name])  # fmt: skip

    if reference is not None:
        add("fastembed_rt exact MaxSim float32", "all", truth_seconds, truth, 0.0)
    seconds, (_, found) = timed(lambda: index.search(query_list, 10, exact=True))
    add("fastembed_rt exact MaxSim int8", "all", seconds, found, 0.0)
    for candidates in args.candidates:
        seconds, (_, found) = timed(lambda: index.search(query_list, 10, candidates=candidates))
        add("fastembed_rt MUVERA int8 + MaxSim", candidates, seconds, found, build)
    if args.fast_plaid:
        rows += fast_plaid(floats, queries, truth, truth_name, args)
    return rows


def fast_plaid(floats: MultiVectorEmbeddings, queries: np.ndarray, truth, truth_name: str, args) -> list[list]:
    if not FAST_PLAID.exists():
        print("fast-plaid: not installed (benchmarks/setup_fast_plaid.sh)")
        return []
    with tempfile.TemporaryDirectory() as tmp:
        np.save(f"{tmp}/documents.npy", floats.vectors)
        np.save(f"{tmp}/offsets.npy", floats.offsets)
        np.save(f"{tmp}/queries.npy", queries)
        run = subprocess.run([str(FAST_PLAID), str(Path(__file__).with_name("fast_plaid_search.py")), tmp, "10", str(args.threads)],
                             capture_output=True, text=True, check=False)  # fmt: skip
        if run.returncode:
            print(f"fast-plaid failed: {run.stderr[-2000:]}")
            return []
        times = json.loads(run.stdout.strip().splitlines()[-1])
        found = np.load(f"{tmp}/ids.npy")
    r = recall(found, truth)
    print(f"{'fast-plaid (defaults)':38s} {'ivf':>10s} {len(queries) / times['search_seconds']:10.2f} {r:10.3f}"
          f"   (index built in {times['build_seconds']:.0f} s)")  # fmt: skip
    return [["synthetic", len(floats), len(floats.vectors), floats.dim, "fast-plaid 1.7 (defaults)", "ivf",
             round(times["build_seconds"], 1), len(queries), round(len(queries) / times["search_seconds"], 3), round(r, 4), truth_name]]  # fmt: skip


def stand_in_colbert(directory: Path) -> Path:
    """all-MiniLM-L6-v2's weights in Stanford's HF_ColBERT layout with a random orthogonal 384 -> 128 projection."""
    from safetensors.torch import load_file, save_file

    minilm = fastembed_rt.loading.resolve_model_path("all-MiniLM-L6-v2")
    directory.mkdir(parents=True)
    tensors = {"bert." + k.removeprefix("bert."): v for k, v in load_file(minilm / "model.safetensors").items()}
    q, _ = torch.linalg.qr(torch.randn(384, 128, generator=torch.Generator().manual_seed(0)))
    tensors["linear.weight"] = q.T.contiguous()
    save_file(tensors, directory / "model.safetensors")
    config = json.loads((minilm / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps(config | {"architectures": ["HF_ColBERT"]}))
    (directory / "artifact.metadata").write_text(json.dumps({"query_maxlen": 32, "doc_maxlen": 256}))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (directory / name).write_bytes((minilm / name).read_bytes())
    return directory


def bench_arguana(args) -> list[list]:
    from fastembed_rt.evaluation import read_beir

    corpus, queries, qrels = read_beir(ROOT.parent / "shared" / "data" / "arguana")
    with tempfile.TemporaryDirectory() as tmp:
        model = fastembed_rt.load(stand_in_colbert(Path(tmp) / "colbert"), dtype="int8")
        seconds, documents = timed(lambda: model.encode(list(corpus.values())))
        print(f"ArguAna: {len(corpus):,} documents, {len(documents.vectors):,} token vectors, encoded in {seconds:.0f} s")
        query_vectors = model.encode([queries[q] for q in queries if q in qrels], is_query=True)
    index = MultiVectorIndex.build(documents, "int8", candidates="int8")
    seconds, (_, exact) = timed(lambda: index.search(query_vectors, 100, exact=True))
    truth = {10: exact[:, :10], 100: exact}  # one total order (score, then id): the top 10 lead the top 100
    print(f"{'candidates':>10s} {'recall@10':>10s} {'recall@100':>11s} {'queries/s':>10s}")
    print(f"{'all':>10s} {1:10.3f} {1:11.3f} {len(query_vectors) / seconds:10.1f}   (exact MaxSim, the reference)")
    rows = [["arguana", len(corpus), len(documents.vectors), model.dimension, "fastembed_rt exact MaxSim int8", "all", "",
             len(query_vectors), round(len(query_vectors) / seconds, 3), 1.0, "itself; MiniLM-L6 stand-in ColBERT"]]  # fmt: skip
    for candidates in args.candidates:
        seconds, (_, found) = timed(lambda: index.search(query_vectors, 100, candidates=candidates))
        r10, r100 = recall(found[:, :10], truth[10]), recall(found, truth[100])
        print(f"{candidates:10d} {r10:10.3f} {r100:11.3f} {len(query_vectors) / seconds:10.1f}")
        rows.append(["arguana", len(corpus), len(documents.vectors), model.dimension, "fastembed_rt MUVERA int8 + MaxSim", candidates,
                     "", len(query_vectors), round(len(query_vectors) / seconds, 3), round(r10, 4),
                     f"exact MaxSim of the int8 codes; recall@100 {r100:.4f}; MiniLM-L6 stand-in ColBERT"])  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--dim", type=int, default=96)
    parser.add_argument("--candidates", type=lambda s: [int(x) for x in s.split(",")], default=[100, 300, 1000, 3000])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--fast-plaid", action="store_true")
    parser.add_argument("--arguana", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"ISA: {isa.active()}, threads: {args.threads}")
    rows = bench_arguana(args) if args.arguana else bench_synthetic(args)
    append_rows("late_interaction_search.csv", ["data", "docs", "tokens", "dim", "system", "candidates", "build_s", "queries",
                                                "queries_per_s", "recall_at_10", "reference"], rows)  # fmt: skip


if __name__ == "__main__":
    main()
