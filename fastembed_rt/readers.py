"""Texts (and ids) from txt, jsonl and parquet files, with errors that name the file and line."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

SUPPORTED_SUFFIXES = (".txt", ".jsonl", ".parquet")


@dataclass
class Corpus:
    texts: list[str]
    ids: list[str] | None  # None: rows are identified by position


def read_corpus(path: Path, text_field: str = "text", id_field: str | None = "id") -> Corpus:
    """Reads a whole corpus file: .txt (one text per line), .jsonl (one object per line) or .parquet."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".txt":
        with open(path, encoding="utf-8") as f:
            return Corpus([line.rstrip("\r\n") for line in f], None)
    if suffix == ".jsonl":
        return _read_jsonl(path, text_field, id_field)
    if suffix == ".parquet":
        return _read_parquet(path, text_field, id_field)
    raise ValueError(f"{path}: unsupported input format {suffix!r}; supported: {', '.join(SUPPORTED_SUFFIXES)}")


def iter_jsonl(path: Path, text_field: str) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line whose `text_field` holds a string; any other line
    stops with an error naming the file and line."""
    with open(path, encoding="utf-8") as f:
        for line_number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as e:
                raise ValueError(f"{path}:{line_number}: malformed JSON ({e})") from None
            if not isinstance(row, dict) or text_field not in row:
                raise ValueError(f"{path}:{line_number}: no field {text_field!r}")
            if not isinstance(row[text_field], str):
                raise ValueError(f"{path}:{line_number}: field {text_field!r} is {type(row[text_field]).__name__}, expected a string")
            yield line_number, row


def _read_jsonl(path: Path, text_field: str, id_field: str | None) -> Corpus:
    texts, ids = [], []
    for _, row in iter_jsonl(path, text_field):
        texts.append(row[text_field])
        ids.append(str(row[id_field]) if id_field and id_field in row else str(len(ids)))
    return Corpus(texts, ids)


def _read_parquet(path: Path, text_field: str, id_field: str | None) -> Corpus:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    if text_field not in table.column_names:
        raise ValueError(f"{path}: no column {text_field!r} (columns: {', '.join(table.column_names)})")
    texts = table.column(text_field).to_pylist()
    for row, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"{path}: row {row} of column {text_field!r} is {type(text).__name__}, expected a string")
    ids = None
    if id_field and id_field in table.column_names:
        ids = [str(x) for x in table.column(id_field).to_pylist()]
    return Corpus(texts, ids)
