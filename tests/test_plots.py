"""The charts: `fastembed-rt bench --plot` (each op against this run's ceilings) and benchmarks/plot.py (the
README's speed charts from benchmarks/results/*.csv), drawn for real with matplotlib into temporary folders."""

import csv
import importlib.util
import subprocess
import sys
from pathlib import Path

import matplotlib.image

from fastembed_rt.cli import main

REPO = Path(__file__).resolve().parents[1]


def image_size(path: Path) -> tuple[int, int]:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width = matplotlib.image.imread(path).shape[:2]
    return width, height


def test_bench_plot_draws_each_op_against_the_ceilings(tmp_path, capsys):
    chart = tmp_path / "ops.png"
    assert main(["bench", "--ops", "layer_norm,int8_linear", "--repeats", "1", "--csv", str(tmp_path / "b.csv"),
                 "--plot", str(chart)]) == 0  # fmt: skip
    assert f"chart: {chart}" in capsys.readouterr().out
    width, height = image_size(chart)
    assert width > 1000 and height > 300  # two panels: compute-bound and memory-bound ops


def test_bench_plot_is_refused_with_e2e(tmp_path, capsys):
    assert main(["bench", "--e2e", "--plot", str(tmp_path / "x.png")]) == 2
    assert "--plot draws the op benchmarks; run it without --e2e" in capsys.readouterr().err


def load_plot_module():
    spec = importlib.util.spec_from_file_location("plot", REPO / "benchmarks" / "plot.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_charts_are_drawn_from_the_latest_run_per_isa(tmp_path):
    plot = load_plot_module()
    results = tmp_path / "results"
    results.mkdir()
    for name in ("cpu.csv", "similarity.csv"):
        rows = list(csv.reader(open(REPO / "benchmarks" / "results" / name, newline="")))
        with open(results / name, "w", newline="") as f:
            csv.writer(f).writerows(rows)
    runs = plot.latest_runs(results / "cpu.csv")
    assert "unrecorded" not in runs and runs
    for isa, rows in runs.items():
        assert len({r["date"] for r in rows}) == 1 and all(r["isa"] == isa for r in rows)
        everything = [r for r in csv.DictReader(open(results / "cpu.csv", newline="")) if r["isa"] == isa]
        assert rows[0]["date"] == max(r["date"] for r in everything)
    out = tmp_path / "plots"
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "plot.py"), "--results", str(results), "--out", str(out)],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    for name in ("cpu.png", "similarity.png"):
        width, height = image_size(out / name)
        assert width == 800 and height > 300
