"""Benchmark rows appended to CSV files under benchmarks/results/, each prefixed with date and machine."""

from __future__ import annotations

import csv
import datetime
import platform
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def append_rows(name: str, header: list[str], rows: list[list]) -> None:
    path = RESULTS / name
    path.parent.mkdir(parents=True, exist_ok=True)
    new_file = not path.exists()
    now = datetime.datetime.now().isoformat(timespec="seconds")
    with open(path, "a", newline="") as f:
        writer = csv.writer(f)
        if new_file:
            writer.writerow(["date", "machine", *header])
        writer.writerows([now, platform.machine(), *row] for row in rows)
