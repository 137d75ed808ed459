"""Run by .venv-pylate/bin/python for bench_colbert.py: PyLate's ColBERT.encode timed on texts, after a warm-up.

argv: model folder, texts (.json list), "query" or "document", batch size, threads, output .npz (token vectors)."""

import json
import sys
import time

import numpy as np
import torch
from pylate import models


def main():
    folder, texts_file, side, batch_size, threads, out = sys.argv[1:7]
    torch.set_num_threads(int(threads))
    texts = json.load(open(texts_file))
    model = models.ColBERT(folder, device="cpu")
    is_query = side == "query"
    model.encode(texts[:64], is_query=is_query, batch_size=int(batch_size))  # warm-up
    start = time.perf_counter()
    vectors = model.encode(texts, is_query=is_query, batch_size=int(batch_size))
    seconds = time.perf_counter() - start
    np.savez(out, offsets=np.cumsum([0] + [len(v) for v in vectors]), vectors=np.concatenate(vectors))
    print(json.dumps({"seconds": seconds}))


if __name__ == "__main__":
    main()
