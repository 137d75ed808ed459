"""The whole offline job (read → embed → write shards) against a plain sentence-transformers script doing
the same (read, encode, save) and against fastembed_rt's in-memory encode, in one run, same threads.

    python benchmarks/bench_corpus.py [--corpus ../shared/data/arguana/corpus.jsonl] [--limit N]

Prints texts/s, tokens/s, the model-busy fraction and the ratios; the engine's ratio should equal the
in-memory encode ratio (the pipeline adds no cost). Appends a row to benchmarks/results/corpus.csv.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import fastembed_rt
from fastembed_rt.corpus import JobOptions, embed_corpus
from results_csv import append_rows

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "data" / "arguana" / "corpus.jsonl"


def read_texts(path: Path, limit: int | None) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["text"] for _, line in zip(range(limit or 10**12), f)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--limit", type=int, default=None, help="first N texts only")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    from sentence_transformers import SentenceTransformer

    model = fastembed_rt.load("all-MiniLM-L6-v2", device="cpu")
    st = SentenceTransformer(str(model.spec.path), device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "corpus.jsonl"
        with open(args.corpus, encoding="utf-8") as f, open(source, "w", encoding="utf-8") as out:
            for _, line in zip(range(args.limit or 10**12), f):
                out.write(line)
        st.encode(["warm up"] * 32)
        model.encode(["warm up"] * 32)

        start = time.perf_counter()
        texts = read_texts(source, None)
        np.save(Path(tmp) / "st.npy", st.encode(texts, batch_size=32))
        st_seconds = time.perf_counter() - start

        start = time.perf_counter()
        texts = read_texts(source, None)
        np.save(Path(tmp) / "ours.npy", model.encode(texts))
        encode_seconds = time.perf_counter() - start

        start = time.perf_counter()
        manifest = embed_corpus(model, source, Path(tmp) / "job", JobOptions(text_field="text", id_field="_id"), progress=False)
        job_seconds = time.perf_counter() - start

    n, tokens = manifest["rows"], manifest["tokens"]
    encode_ratio, job_ratio = st_seconds / encode_seconds, st_seconds / job_seconds
    print(f"corpus {args.corpus.name}: {n:,} texts, {tokens:,} tokens; {torch.get_num_threads()} threads")
    print(f"{'':40}{'texts/s':>10}{'tokens/s':>12}{'vs ST':>8}")
    for name, seconds in [("sentence-transformers (read, encode, save)", st_seconds),
                          ("fastembed_rt encode (read, encode, save)", encode_seconds),
                          ("fastembed_rt job (stream, shards, manifest)", job_seconds)]:  # fmt: skip
        print(f"{name:<40}{n / seconds:>10.1f}{tokens / seconds:>12,.0f}{st_seconds / seconds:>7.2f}x")
    print(f"model busy {manifest['model_busy_fraction']:.1%} of the job's wall time; "
          f"job ratio / encode ratio = {job_ratio / encode_ratio:.3f} (target within 10% of 1)")  # fmt: skip

    append_rows(
        "corpus.csv",
        ["threads", "texts", "tokens", "st_s", "encode_s", "job_s", "encode_ratio", "job_ratio", "model_busy_fraction",
         "fastembed_rt"],
        [[torch.get_num_threads(), n, tokens, round(st_seconds, 2), round(encode_seconds, 2), round(job_seconds, 2),
          round(encode_ratio, 3), round(job_ratio, 3), round(manifest["model_busy_fraction"], 3), fastembed_rt.__version__]],
    )  # fmt: skip

if __name__ == "__main__":
    main()
