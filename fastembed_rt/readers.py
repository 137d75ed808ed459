"""Texts and ids streamed from txt, jsonl, csv and parquet files (a file, a directory or a glob), one record
at a time, with errors that name the file and line."""

from __future__ import annotations

import csv
import glob
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

SUPPORTED_SUFFIXES = (".txt", ".jsonl", ".csv", ".parquet")
ON_ERROR = ("stop", "skip")


@dataclass
class Record:
    position: int  # ordinal of the row in the whole input, counting rows that were skipped
    id: str
    text: str
    where: str = ""  # file:line (or file: row N)


@dataclass
class ReadStats:
    rows: int = 0  # data rows seen, skipped ones included
    skipped: int = 0  # bad rows left out under on_error="skip"
    skipped_files: int = 0  # unreadable files (or their unreadable rest) left out under on_error="skip"
    replaced_utf8: int = 0  # rows whose invalid UTF-8 bytes were replaced by U+FFFD
    empty: int = 0  # empty or whitespace-only texts (embedded as the tokenizer encodes them)
    bytes_read: int = 0
    first_errors: list[str] = field(default_factory=list)


class InputError(ValueError):
    """A bad input row, named by file and line (or row)."""


def input_files(spec: str | Path) -> list[Path]:
    """A file, every supported file directly in a directory, or the files a glob pattern matches (sorted)."""
    path = Path(spec)
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES)
    else:
        files = sorted(Path(p) for p in glob.glob(str(spec)) if Path(p).is_file())
    if not files:
        raise FileNotFoundError(f"{spec}: no input files (expected a file, a directory or a glob of {', '.join(SUPPORTED_SUFFIXES)})")
    for f in files:
        if f.suffix.lower() not in SUPPORTED_SUFFIXES:
            raise ValueError(f"{f}: unsupported input format {f.suffix!r}; supported: {', '.join(SUPPORTED_SUFFIXES)}")
    return files


def iter_records(files: Iterable[Path], text_field: str = "text", id_field: str | None = "id", on_error: str = "stop",
                 stats: ReadStats | None = None) -> Iterator[Record]:  # fmt: skip
    """Records of all files in order. A bad row (malformed JSON/CSV, missing or non-string text) raises
    InputError naming file:line under on_error="stop"; under "skip" it is counted in stats and left out."""
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {', '.join(ON_ERROR)}, got {on_error!r}")
    stats = stats if stats is not None else ReadStats()

    def refuse(message: str) -> None:
        if on_error == "stop":
            raise InputError(message)
        if len(stats.first_errors) < 10:
            stats.first_errors.append(message)

    for path in files:
        rows = {".txt": _txt_rows, ".jsonl": _jsonl_rows, ".csv": _csv_rows, ".parquet": _parquet_rows}[path.suffix.lower()]
        try:
            for where, row_id, text, problem in rows(path, text_field, id_field, stats):
                position = stats.rows
                stats.rows += 1
                if problem is None and row_id is not None:
                    problem = id_problem(row_id, id_field)
                if problem is not None:
                    refuse(f"{where}: {problem}")
                    stats.skipped += 1
                    continue
                if not text.strip():
                    stats.empty += 1
                yield Record(position, str(position) if row_id is None else str(row_id), text, where)
        except InputError as e:  # the whole file is unusable (no such column, ...): already names it
            refuse(str(e))
            stats.skipped_files += 1
        except Exception as e:  # unreadable: an I/O error, a corrupt parquet file, ...
            refuse(f"{path}: cannot read ({type(e).__name__}: {e}) after {stats.rows} rows in all")
            stats.skipped_files += 1


def id_problem(row_id, id_field: str) -> str | None:
    """Ids are strings or integers: anything else (a list, an object, a float, a boolean) would be stored as
    its Python spelling, which no one would look it up by."""
    if isinstance(row_id, str) or (isinstance(row_id, int) and not isinstance(row_id, bool)):
        return None
    return f"field {id_field!r} is {_json_kind(row_id)}, expected a string or an integer"


def _json_kind(value) -> str:
    return {bool: "a boolean", float: "a number with a fraction", list: "a list", dict: "an object"}.get(
        type(value), type(value).__name__
    )


def _decoded_lines(path: Path, stats: ReadStats) -> Iterator[tuple[int, str]]:
    with open(path, "rb") as f:
        for line_number, raw in enumerate(f, start=1):
            stats.bytes_read += len(raw)
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                line = raw.decode("utf-8", errors="replace")
                stats.replaced_utf8 += 1
            yield line_number, line


def _txt_rows(path, text_field, id_field, stats):
    for line_number, line in _decoded_lines(path, stats):
        yield f"{path}:{line_number}", None, line.rstrip("\r\n"), None


def _text_problem(row, text_field) -> str | None:
    if not isinstance(row, dict) or row.get(text_field) is None:
        return f"no field {text_field!r}"
    if not isinstance(row[text_field], str):
        return f"field {text_field!r} is {type(row[text_field]).__name__}, expected a string"
    return None


def _jsonl_objects(path: Path, stats: ReadStats) -> Iterator[tuple[str, object, str | None]]:
    for line_number, line in _decoded_lines(path, stats):
        if not line.strip():
            continue
        try:
            yield f"{path}:{line_number}", json.loads(line), None
        except ValueError as e:
            yield f"{path}:{line_number}", None, f"malformed JSON ({e})"


def _jsonl_rows(path, text_field, id_field, stats):
    for where, row, problem in _jsonl_objects(path, stats):
        problem = problem or _text_problem(row, text_field)
        row_id = row.get(id_field) if isinstance(row, dict) and id_field else None
        yield where, row_id, "" if problem else row[text_field], problem


def iter_jsonl(path: Path, text_field: str) -> Iterator[dict]:
    """Whole objects of a jsonl file whose `text_field` holds a string; a bad line raises InputError."""
    for where, row, problem in _jsonl_objects(path, ReadStats()):
        problem = problem or _text_problem(row, text_field)
        if problem:
            raise InputError(f"{where}: {problem}")
        yield row


def _csv_rows(path, text_field, id_field, stats):
    lines = (line for _, line in _decoded_lines(path, stats))
    reader = csv.reader(lines, strict=True)  # strict: a quote never closed is an error, not the rest of the file as one field
    try:
        header = next(reader)
    except StopIteration:
        return
    if text_field not in header:
        raise InputError(f"{path}:1: no column {text_field!r} (columns: {', '.join(header)})")
    text_col = header.index(text_field)
    id_col = header.index(id_field) if id_field and id_field in header else None
    while True:
        first_line = reader.line_num + 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            yield f"{path}:{first_line}", None, "", f"malformed CSV ({e}; a quoted field that starts here may never close)"
            continue
        where = f"{path}:{reader.line_num}"
        if len(values) != len(header):
            yield where, None, "", f"expected {len(header)} fields, got {len(values)}"
            continue
        yield where, None if id_col is None else values[id_col], values[text_col], None


def _parquet_rows(path, text_field, id_field, stats):
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    names = parquet.schema_arrow.names
    if text_field not in names:
        raise InputError(f"{path}: no column {text_field!r} (columns: {', '.join(names)})")
    columns = [text_field] + ([id_field] if id_field and id_field in names else [])
    row = 0
    for batch in parquet.iter_batches(batch_size=8192, columns=columns):
        stats.bytes_read += batch.nbytes
        texts = batch.column(0).to_pylist()
        ids = batch.column(1).to_pylist() if len(columns) > 1 else [None] * len(texts)
        for text, row_id in zip(texts, ids):
            problem = None if isinstance(text, str) else f"column {text_field!r} is {type(text).__name__}, expected a string"
            yield f"{path}: row {row}", row_id, text if problem is None else "", problem
            row += 1


@dataclass
class Corpus:
    texts: list[str]
    ids: list[str] | None  # None: rows are identified by position


def read_corpus(path: Path, text_field: str = "text", id_field: str | None = "id") -> Corpus:
    """A whole corpus file in memory (small inputs); bad rows stop with file:line."""
    files = input_files(path)
    records = list(iter_records(files, text_field, id_field))
    has_ids = any(f.suffix.lower() != ".txt" for f in files)
    return Corpus([r.text for r in records], [r.id for r in records] if has_ids else None)
