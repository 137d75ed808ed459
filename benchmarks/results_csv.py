"""Benchmark rows appended to CSV files under benchmarks/results/, each prefixed with date, the instruction set
our kernels ran with, and machine."""

from __future__ import annotations

import platform
from pathlib import Path

from fastembed_rt.benchmark import append_csv

RESULTS = Path(__file__).resolve().parent / "results"


def append_rows(name: str, header: list[str], rows: list[list]) -> None:
    append_csv(RESULTS / name, ["machine", *header], [[platform.machine(), *row] for row in rows])
