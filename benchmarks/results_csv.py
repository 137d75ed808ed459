"""Benchmark rows appended to CSV files under benchmarks/results/, each prefixed with date, the instruction set
our kernels ran with, and machine (the CPU's model name)."""

from __future__ import annotations

from pathlib import Path

import fastembed_rt  # noqa: F401  first: FASTEMBED_RT_ISA caps torch's kernels only before torch loads
import torch
from fastembed_rt.benchmark import append_csv, device_name

RESULTS = Path(__file__).resolve().parent / "results"


def append_rows(name: str, header: list[str], rows: list[list]) -> None:
    machine = device_name(torch.device("cpu"))
    append_csv(RESULTS / name, ["machine", *header], [[machine, *row] for row in rows])
