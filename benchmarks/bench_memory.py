"""What a loaded model costs in memory at each weight precision, each in a fresh process.

    python benchmarks/bench_memory.py [--model NAME_OR_PATH]

Per precision: resident memory (RssAnon + RssFile of /proc/self/status) added by `load`, and after a short
query and a batch of 64 texts of ../shared/data/bench/corpus.jsonl (so the fused encoder and the op path have
both run and packed what they pack); and the bytes held by the linear layers' weights (ops.Linear.nbytes:
stored, oneDNN-reordered and packed copies). Rows go to benchmarks/results/memory.csv. Run it under
FASTEMBED_RT_ISA=avx2 to see an AVX2 machine's paths.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "bench" / "corpus.jsonl"
PRECISIONS = ("float32", "bfloat16", "int8")

# Runs in the child: one precision, printed as one JSON line.
MEASURE = """
import gc, json, sys, warnings
import fastembed_rt

def resident_mb():
    fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return sum(int(fields[key].split()[0]) for key in ("RssAnon", "RssFile")) / 1024

warnings.simplefilter("ignore")
model_name, dtype, corpus = sys.argv[1:4]
texts = [json.loads(line)["text"] for line in open(corpus, encoding="utf-8")][:64]
before = resident_mb()
model = fastembed_rt.load(model_name, dtype=dtype)
gc.collect()
loaded = resident_mb()
model.encode("how do I reset my password")
model.encode(texts)
gc.collect()
used = resident_mb()
linears = [lin for layer in model.model.layers for lin in vars(layer).values() if isinstance(lin, fastembed_rt.ops.Linear)]
print(json.dumps({"isa": fastembed_rt.isa.active(), "load_mb": loaded - before, "after_encode_mb": used - before,
                  "linear_weights_mb": sum(lin.nbytes() for lin in linears) / 2**20}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from results_csv import append_rows

    rows = []
    print(f"{'precision':10}{'isa':>8}{'load MB':>10}{'+ encode MB':>13}{'linear weights MB':>19}")
    for dtype in PRECISIONS:
        done = subprocess.run([sys.executable, "-c", MEASURE, args.model, dtype, str(args.corpus)],
                              capture_output=True, text=True, check=True)  # fmt: skip
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{dtype:10}{r['isa']:>8}{r['load_mb']:>10.0f}{r['after_encode_mb']:>13.0f}{r['linear_weights_mb']:>19.1f}")
        rows.append([args.model, dtype, round(r["load_mb"], 1), round(r["after_encode_mb"], 1), round(r["linear_weights_mb"], 2)])
    append_rows("memory.csv", ["model", "precision", "load_mb", "after_encode_mb", "linear_weights_mb"], rows)


if __name__ == "__main__":
    main()
