"""Run by .venv-fast-plaid/bin/python for bench_multivector.py: fast-plaid's index built and searched on the CPU.

argv: folder with documents.npy (float32 [tokens, dim]), offsets.npy, queries.npy (float32 [n, tokens, dim]); k;
threads. Writes ids.npy (int64 [n, k]) there and prints build and search seconds as JSON."""

import json
import sys
import time

import numpy as np
import torch
from fast_plaid import search


def main():
    folder, k, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(threads)
    vectors, offsets = np.load(f"{folder}/documents.npy"), np.load(f"{folder}/offsets.npy")
    documents = [torch.from_numpy(vectors[a:b]) for a, b in zip(offsets[:-1], offsets[1:])]
    queries = torch.from_numpy(np.load(f"{folder}/queries.npy"))
    index = search.FastPlaid(index=f"{folder}/fast_plaid_index", device="cpu")
    start = time.perf_counter()
    index.create(documents_embeddings=documents)
    build = time.perf_counter() - start
    index.search(queries_embeddings=queries[:2], top_k=k, show_progress=False)  # warm-up
    start = time.perf_counter()
    results = index.search(queries_embeddings=queries, top_k=k, show_progress=False)
    seconds = time.perf_counter() - start
    ids = np.full((len(queries), k), -1, dtype=np.int64)
    for i, row in enumerate(results):
        ids[i, : len(row)] = [doc for doc, _ in row]
    np.save(f"{folder}/ids.npy", ids)
    print(json.dumps({"build_seconds": build, "search_seconds": seconds}))


if __name__ == "__main__":
    main()
