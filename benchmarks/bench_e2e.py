"""End to end on the CPU: sentence-transformers against fastembed_rt, same model, same threads, one run.

    python benchmarks/bench_e2e.py [--limit N] [--threads T]

Prints texts/s, tokens/s, single-query latency and the ratios, and appends a row to
benchmarks/results/e2e.csv (date, machine, versions). Timings on shared machines are noisy: compare
only figures from the same run.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import fastembed_rt
from latency import query_latency_ms
from results_csv import append_rows

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "data" / "bench" / "corpus.jsonl"


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--limit", type=int, default=None, help="first N texts only")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--st-batch-size", type=int, default=32, help="sentence-transformers' batch size (its default: 32)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")

    from sentence_transformers import SentenceTransformer

    texts = [json.loads(line)["text"] for line in open(args.corpus, encoding="utf-8")][: args.limit]
    ours = fastembed_rt.load("all-MiniLM-L6-v2", device="cpu")
    theirs = SentenceTransformer(str(ours.spec.path), device="cpu")
    tokens = sum(ours.count_tokens(texts))
    ours.encode(texts[:64])
    theirs.encode(texts[:64], batch_size=args.st_batch_size)

    st_vectors, st_seconds = timed(lambda: theirs.encode(texts, batch_size=args.st_batch_size))
    our_vectors, our_seconds = timed(lambda: ours.encode(texts))
    cosine = (st_vectors * our_vectors).sum(1) / (np.linalg.norm(st_vectors, axis=1) * np.linalg.norm(our_vectors, axis=1))
    query = "how do I reset my password"
    latency = query_latency_ms({"st": theirs.encode, "ours": ours.encode}, query, repeats=30, warmup=1)
    st_latency, our_latency = latency["st"][0], latency["ours"][0]

    print(f"corpus {args.corpus.name}: {len(texts):,} texts, {tokens:,} tokens; threads {args.threads}")
    print(f"{'':24}{'texts/s':>10}{'tokens/s':>12}{'query ms':>10}")
    print(f"{'sentence-transformers':24}{len(texts) / st_seconds:>10.1f}{tokens / st_seconds:>12,.0f}{st_latency:>10.2f}")
    print(f"{'fastembed_rt':24}{len(texts) / our_seconds:>10.1f}{tokens / our_seconds:>12,.0f}{our_latency:>10.2f}")
    print(f"throughput ratio {st_seconds / our_seconds:.2f}x, query latency ratio {st_latency / our_latency:.2f}x, "
          f"min cosine to sentence-transformers {cosine.min():.7f}")  # fmt: skip

    append_rows(
        "e2e.csv",
        ["threads", "texts", "tokens", "st_tokens_per_s", "ours_tokens_per_s", "ratio", "st_query_ms", "ours_query_ms",
         "min_cosine", "torch", "fastembed_rt"],
        [[args.threads, len(texts), tokens, round(tokens / st_seconds), round(tokens / our_seconds),
          round(st_seconds / our_seconds, 3), round(st_latency, 2), round(our_latency, 2), float(cosine.min()),
          torch.__version__, fastembed_rt.__version__]],
    )  # fmt: skip

if __name__ == "__main__":
    main()
