"""An index on disk, for Index and SparseIndex alike: .npy arrays (memory-mapped when loaded) and a header.json
written last and atomically, so that a folder with a header holds a whole index."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def write_header(path: Path, header: dict) -> None:
    tmp = path / "header.json.tmp"
    tmp.write_text(json.dumps(header, indent=1))
    tmp.replace(path / "header.json")


def read_header(path: Path, what: str, format: str, version: int) -> tuple[dict, Path]:
    """The parsed header.json of the index folder `path` (`what`: the kind of index, for errors), and its path; its
    format and version must be those given."""
    header_path = path / "header.json"
    if not header_path.is_file():
        raise FileNotFoundError(f"{header_path} is missing: not a fastembed_rt {what}")
    try:
        header = json.loads(header_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{header_path} is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{header_path}: expected a JSON object, got {type(header).__name__}")
    if header.get("format") != format or header.get("version") != version:
        raise ValueError(f"{header_path}: not a version-{version} {format} header")
    return header, header_path


def is_count(value, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def load_array(path: Path, mode, dtype, shape: tuple) -> np.ndarray:
    """A .npy array that must have `dtype` and `shape` (what the header says), named when it does not."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is a directory, not a .npy file" if path.is_dir() else f"{path} is missing")
    with open(path, "rb") as f:
        if f.read(6) != b"\x93NUMPY":
            raise ValueError(f"{path}: not a .npy file (it does not start with numpy's magic bytes)")
    try:
        array = np.load(path, mmap_mode=mode, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise ValueError(f"{path}: not a readable .npy array ({e})") from None
    if array.dtype != dtype or array.shape != shape:
        raise ValueError(f"{path}: {array.dtype} {list(array.shape)}, but header.json says {np.dtype(dtype)} {list(shape)}")
    if not array.flags.c_contiguous:
        raise ValueError(f"{path}: stored in Fortran order; an index's arrays are in C order (rows contiguous)")
    return array
