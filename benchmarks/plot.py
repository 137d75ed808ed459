"""The README's speed charts, drawn from the latest run per ISA in benchmarks/results/*.csv:

    cpu.png          tokens/s of each system (bench_cpu.py): fastembed_rt per precision against sentence-transformers
                     and ONNX Runtime
    similarity.png   exact top-k search time (bench_similarity.py): fastembed_rt against FAISS, usearch, NumKong, numpy

    .venv/bin/python benchmarks/plot.py                  # into benchmarks/results/plots/
    .venv/bin/python benchmarks/plot.py --out DIR
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

from fastembed_rt.plots import pyplot

RESULTS = Path(__file__).resolve().parent / "results"


def latest_runs(path: Path) -> dict[str, list[dict]]:
    """The rows of the latest run (one date) for each ISA in a results CSV (runs from before the ISA was recorded
    are left out: their code and machine are not the ones the README describes)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    runs: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if row["isa"] != "unrecorded":
            runs[row["isa"]][row["date"]].append(row)
    return {isa: dates[max(dates)] for isa, dates in sorted(runs.items())}


def cpu_chart(path: Path, out: Path) -> Path:
    plt = pyplot()
    runs = latest_runs(path)
    figure, axes = plt.subplots(len(runs), 1, figsize=(8, 2.6 * len(runs) + 0.6), squeeze=False)
    for axis, (isa, rows) in zip(axes[:, 0], runs.items()):
        names = [r["system"] for r in rows]
        rates = [float(r["tokens_per_s"]) for r in rows]
        colors = ["C0" if n.startswith("fastembed_rt") else "C7" for n in names]
        axis.barh(range(len(rows)), rates, color=colors)
        for y, r in enumerate(rows):
            axis.text(float(r["tokens_per_s"]), y, f" {float(r['vs_st']):.2f}x ST, cos {float(r['min_cosine_to_st']):.3f}",
                      va="center", fontsize=7)  # fmt: skip
        axis.set_yticks(range(len(rows)), names, fontsize=8)
        axis.invert_yaxis()
        axis.set_xlim(0, max(rates) * 1.45)
        axis.set_xlabel("tokens/s (higher is better)")
        first = rows[0]
        axis.set_title(f"{isa}: {first['machine']}, {first['texts']} texts, {first['date'][:10]}", fontsize=8)
    figure.suptitle("Embedding throughput, bench_cpu.py (every system in one process, best round)", fontsize=9)
    figure.tight_layout()
    return save(figure, out / "cpu.png")


def similarity_chart(path: Path, out: Path) -> Path:
    plt = pyplot()
    runs = latest_runs(path)
    figure, axes = plt.subplots(len(runs), 1, figsize=(8, 3.6 * len(runs) + 0.6), squeeze=False)
    for axis, (isa, rows) in zip(axes[:, 0], runs.items()):
        labels, times, colors, notes = [], [], [], []
        for corpus in dict.fromkeys(r["corpus"] for r in rows):
            for r in (r for r in rows if r["corpus"] == corpus):
                labels.append(f"{corpus}: {r['implementation']}")
                times.append(float(r["ms"]))
                colors.append("C0" if r["implementation"] == "fastembed_rt" else "C7")
                notes.append(f" {r['peer_over_ours']} slower" if r["peer_over_ours"] else f" {r['fraction_of_ceiling']} of ceiling")
        axis.barh(range(len(labels)), times, color=colors)
        for y, (t, note) in enumerate(zip(times, notes)):
            axis.text(t, y, note, va="center", fontsize=7)
        axis.set_yticks(range(len(labels)), labels, fontsize=7)
        axis.invert_yaxis()
        axis.set_xscale("log")
        axis.set_xlim(min(times) / 1.5, max(times) * 8)
        axis.set_xlabel("ms for the whole search (log; lower is better)")
        first = rows[0]
        axis.set_title(f"{isa}: {first['machine']}, {int(first['n']):,} vectors, {first['queries']} queries, "
                       f"k={first['k']}, {first['date'][:10]}", fontsize=8)  # fmt: skip
    figure.suptitle("Exact top-k search, bench_similarity.py (every implementation in one process, best of 5)", fontsize=9)
    figure.tight_layout()
    return save(figure, out / "similarity.png")


def save(figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    figure.clf()
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of the results CSVs")
    parser.add_argument("--out", type=Path, default=RESULTS / "plots")
    args = parser.parse_args()
    for chart in (cpu_chart(args.results / "cpu.csv", args.out), similarity_chart(args.results / "similarity.csv", args.out)):
        print(chart)


if __name__ == "__main__":
    main()
