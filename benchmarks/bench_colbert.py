"""ColBERT encoding against PyLate, one run.

    python benchmarks/bench_colbert.py [--docs N] [--queries N] [--threads T] [--rounds R]

Model: answerai-colbert-small-v1's shape (12 layers, 384 wide, 12 heads, a 96-dim projection; Stanford's HF_ColBERT
layout, artifact.metadata query_maxlen 32, doc_maxlen 300) with random weights and the WordPiece tokenizer of the
bundled all-MiniLM-L6-v2 (no ColBERT weights are reachable from this machine; speed depends on the shape only).
Texts: the first N texts of ../shared/data/bench/corpus.jsonl as documents, the first N ArguAna queries as queries.
Peer: PyLate 1.6 (.venv-pylate, scripts/setup_pylate.sh) ColBERT.encode, float32, batch 32, in its own process
after a warm-up. Ours: float32, bfloat16, int8 through the same folder. Each round runs PyLate, then ours; each
system's best round counts. Quality: cosine of every token vector to PyLate's (min and mean).
Rows go to benchmarks/results/late_interaction_encode.csv.
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
from safetensors.torch import load_file, save_file

from fastembed_rt import isa
from fastembed_rt.testing import random_bert

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
PYLATE = ROOT / ".venv-pylate" / "bin" / "python"


def answerai_small_shape(directory: Path) -> Path:
    random_bert(directory, hidden=384, layers=12, heads=12, intermediate=1536)
    tensors = {"bert." + k: v for k, v in load_file(directory / "model.safetensors").items()}
    tensors["linear.weight"] = torch.randn(96, 384, generator=torch.Generator().manual_seed(1)) * 0.05
    save_file(tensors, directory / "model.safetensors")
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps(config | {"architectures": ["HF_ColBERT"]}))
    (directory / "artifact.metadata").write_text(json.dumps({"query_maxlen": 32, "doc_maxlen": 300}))
    minilm = fastembed_rt.loading.resolve_model_path("all-MiniLM-L6-v2")
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (minilm / name).is_file():
            (directory / name).write_bytes((minilm / name).read_bytes())
    return directory


def pylate_encode(folder: Path, texts_file: Path, side: str, threads: int, out: Path) -> float:
    run = subprocess.run([str(PYLATE), str(Path(__file__).with_name("pylate_encode.py")), str(folder), str(texts_file), side,
                          "32", str(threads), str(out)], capture_output=True, text=True, check=False)  # fmt: skip
    if run.returncode:
        raise RuntimeError(f"PyLate failed: {run.stderr[-2000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=500)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not PYLATE.exists():
        raise SystemExit("PyLate is the peer: run scripts/setup_pylate.sh first")
    docs = [json.loads(line)["text"] for line in (DATA / "bench" / "corpus.jsonl").read_text().splitlines()[: args.docs]]
    queries = [json.loads(line)["text"] for line in (DATA / "arguana" / "queries.jsonl").read_text().splitlines()[: args.queries]]
    print(f"ISA: {isa.active()}, threads: {args.threads}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = answerai_small_shape(tmp / "colbert")
        ours = {dtype: fastembed_rt.load(folder, dtype=dtype) for dtype in ("float32", "bfloat16", "int8")}
        print(f"{'side':9s} {'system':24s} {'texts/s':>9s} {'tokens/s':>9s} {'vs PyLate':>10s} {'min cos':>8s} {'mean cos':>9s}")
        for side, texts in (("document", docs), ("query", queries)):
            texts_file = tmp / f"{side}.json"
            texts_file.write_text(json.dumps(texts))
            is_query = side == "query"
            for model in ours.values():
                model.encode(texts[:64], is_query=is_query)  # warm-up, as PyLate's
            times = {name: float("inf") for name in ["PyLate float32", *(f"fastembed_rt {d}" for d in ours)]}
            outputs = {}
            for _ in range(args.rounds):
                times["PyLate float32"] = min(times["PyLate float32"], pylate_encode(folder, texts_file, side, args.threads, tmp / "ref.npz"))
                for dtype, model in ours.items():
                    start = time.perf_counter()
                    outputs[dtype] = model.encode(texts, is_query=is_query)
                    times[f"fastembed_rt {dtype}"] = min(times[f"fastembed_rt {dtype}"], time.perf_counter() - start)
            ref = np.load(tmp / "ref.npz")
            tokens = int(ref["offsets"][-1])
            for name, seconds in times.items():
                if name == "PyLate float32":
                    cos = np.ones(1)
                else:
                    got = outputs[name.split()[-1]]
                    if not np.array_equal(got.offsets, ref["offsets"]):
                        raise RuntimeError(f"{name}: token counts differ from PyLate's")
                    cos = (got.vectors * ref["vectors"]).sum(1)  # both L2-normalized
                ratio = times["PyLate float32"] / seconds
                print(f"{side:9s} {name:24s} {len(texts) / seconds:9.1f} {tokens / seconds:9.0f} {ratio:10.2f} {cos.min():8.4f} {cos.mean():9.4f}")
                rows.append([side, name, args.threads, len(texts), tokens, round(len(texts) / seconds, 2), round(tokens / seconds, 1),
                             round(ratio, 3), round(float(cos.min()), 5), round(float(cos.mean()), 5)])  # fmt: skip
    append_rows("late_interaction_encode.csv", ["side", "system", "threads", "texts", "tokens", "texts_per_s", "tokens_per_s",
                                                "vs_pylate", "min_token_cosine", "mean_token_cosine"], rows)  # fmt: skip


if __name__ == "__main__":
    main()
