"""Exact search over a corpus stored as float32, int8 or binary, with float rescoring of quantized hits.

On disk an index is a directory: `header.json` (format, precision, dimension, count, int8 ranges) and
plain .npy arrays (`codes.npy`, and `float.npy` when float vectors are kept), memory-mapped on load so a
corpus larger than RAM is searched by streaming it through the C++ kernels.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from . import _C
from .index_files import is_count, load_array, read_header, write_header
from .quantize import as_float_matrix, check_finite, check_ranges, int8_buckets, quantization_ranges, quantize_embeddings
from .validation import positive_int

INDEX_PRECISIONS = ("float32", "int8", "binary")
FORMAT = "fastembed_rt.index"
VERSION = 1


def _isa() -> str:
    """FASTEMBED_RT_ISA=scalar|avx2|avx512 forces one kernel path (for tests and benchmarks)."""
    return os.environ.get("FASTEMBED_RT_ISA", "auto")


def _float_matrix(x, name: str, dim: int | None = None) -> np.ndarray:
    """A checked, finite, contiguous float32 [n, d] matrix (a single vector becomes one row)."""
    x = np.atleast_2d(as_float_matrix(x, name))
    if x.shape[1] == 0:
        raise ValueError(f"{name} have no dimensions (shape {list(x.shape)})")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"dimension mismatch: {name} have {x.shape[1]} dimensions, the index {dim}")
    with np.errstate(over="ignore"):
        x = np.ascontiguousarray(x, dtype=np.float32)
    check_finite(x, name)  # after the cast: a float64 value past float32's range becomes inf
    return x


class Index:
    """Exact top-k search. Build with Index.build(embeddings, precision=...), or Index.load(path)."""

    def __init__(self, precision: str, dim: int, codes: np.ndarray, floats: np.ndarray | None, ranges: np.ndarray | None):
        self.precision, self.dim = precision, dim
        self.codes, self.floats, self.ranges = codes, floats, ranges

    @classmethod
    def build(cls, embeddings, precision: str = "float32", *, ranges=None, keep_float: bool = False) -> Index:
        """keep_float stores the float vectors too (int8/binary), for exact rescoring; ranges fix the int8
        calibration (default: from these embeddings)."""
        if precision not in INDEX_PRECISIONS:
            raise ValueError(f"unsupported index precision {precision!r}; supported: {', '.join(INDEX_PRECISIONS)}")
        x = _float_matrix(embeddings, "embeddings")
        if precision == "int8" and ranges is None:
            ranges = quantization_ranges(x)
        ranges = None if precision != "int8" else check_ranges(ranges, x.shape[1])
        index = cls(precision, x.shape[1], cls.encode(x, precision, ranges), None, ranges)
        if keep_float and precision != "float32":
            index.floats = x
        return index

    @staticmethod
    def encode(x: np.ndarray, precision: str, ranges) -> np.ndarray:
        if precision == "float32":
            return x
        if precision == "int8":
            return quantize_embeddings(x, "int8", ranges=ranges)
        return quantize_embeddings(x, "ubinary")

    def __len__(self) -> int:
        return int(self.codes.shape[0])

    def add(self, embeddings) -> None:
        """Appends vectors (quantized with the index's own ranges); ids continue from len(index)."""
        x = _float_matrix(embeddings, "embeddings", self.dim)
        self.codes = np.concatenate([self.codes, self.encode(x, self.precision, self.ranges)])
        if self.floats is not None:
            self.floats = np.concatenate([self.floats, x])

    def search(self, queries, k: int = 10, rescore_multiplier: int = 4) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores float32 [nq, k'], ids int64 [nq, k']), best first, k' = min(k, len(index)).

        int8 and binary indexes first retrieve k * rescore_multiplier candidates on the quantized codes,
        then rescore them with the float query against the kept float vectors, or else the dequantized int8
        values / the +-1 bits. rescore_multiplier=0 skips rescoring: the scores are then the quantized ones
        (int8 dot products, or minus the Hamming distance), which shows what quantization alone costs."""
        k = positive_int(k, "k")
        if not isinstance(rescore_multiplier, (int, np.integer)) or rescore_multiplier < 0:
            raise ValueError(f"rescore_multiplier must be a non-negative integer, got {rescore_multiplier!r}")
        if len(self) == 0:
            raise ValueError("the index is empty: add vectors before searching")
        k = min(int(k), len(self))  # k past the corpus: every vector, as the docstring says
        q = _float_matrix(queries, "queries", self.dim)
        if self.precision == "float32":
            return _C.topk_dot_f32(q, self.codes, k, _isa())
        candidates = int(min(len(self), k * max(rescore_multiplier, 1)))
        if self.precision == "int8":
            scores, ids = _C.topk_dot_i8(self.encode(q, "int8", self.ranges), self.codes, candidates, _isa())
        else:
            distances, ids = _C.topk_hamming(self.encode(q, "binary", None), self.codes, candidates, _isa())
            scores = -distances
        if rescore_multiplier == 0:
            return scores.astype(np.float32), ids
        return self._rescore(q, ids, k)

    def _rescore(self, q: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        vectors = self._float_rows(ids.reshape(-1)).reshape(ids.shape[0], ids.shape[1], self.dim)
        with np.errstate(over="ignore", invalid="ignore"):
            scores = np.einsum("qd,qcd->qc", q, vectors)
        if not np.isfinite(scores).all():
            i, c = (int(a) for a in np.argwhere(~np.isfinite(scores))[0])
            raise ValueError(f"query {i} against corpus row {ids[i, c]}: the rescored score is NaN or inf "
                             "(a kept float vector holds NaN or inf, or the products overflow float32)")  # fmt: skip
        order = np.lexsort((ids, -scores), axis=1)[:, :k]  # best score first, ties to the lower id
        return np.take_along_axis(scores, order, 1).astype(np.float32), np.take_along_axis(ids, order, 1)

    def _float_rows(self, ids: np.ndarray) -> np.ndarray:
        if self.floats is not None:
            return np.asarray(self.floats[ids], dtype=np.float32)
        codes = np.asarray(self.codes[ids])
        if self.precision == "int8":
            starts, steps = int8_buckets(self.ranges)
            return starts + (codes.astype(np.float32) + 128.5) * steps  # the middle of each bucket
        return np.unpackbits(codes, axis=-1, count=self.dim).astype(np.float32) * 2 - 1

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        np.save(path / "codes.npy", self.codes)
        if self.floats is not None:
            np.save(path / "float.npy", self.floats)
        header = {
            "format": FORMAT, "version": VERSION, "precision": self.precision, "dim": self.dim, "count": len(self),
            "ranges": None if self.ranges is None else self.ranges.tolist(), "has_float": self.floats is not None,
        }  # fmt: skip
        write_header(path, header)

    @classmethod
    def load(cls, path: str | Path, mmap: bool = True) -> Index:
        path = Path(path)
        header, header_path = read_header(path, "index", FORMAT, VERSION)
        precision, dim, count, ranges = _check_header(header, header_path)
        mode = "r" if mmap else None
        codes = load_array(path / "codes.npy", mode, CODE_DTYPES[precision], (count, code_width(precision, dim)))
        floats = load_array(path / "float.npy", mode, np.float32, (count, dim)) if header["has_float"] else None
        return cls(precision, dim, codes, floats, ranges)


CODE_DTYPES = {"float32": np.float32, "int8": np.int8, "binary": np.uint8}


def code_width(precision: str, dim: int) -> int:
    return (dim + 7) // 8 if precision == "binary" else dim


def _check_header(header, path: Path) -> tuple[str, int, int, np.ndarray | None]:
    """precision, dim, count and int8 ranges of an index header, every field checked before any array is read."""
    precision, dim, count = header.get("precision"), header.get("dim"), header.get("count")
    if precision not in INDEX_PRECISIONS:
        raise ValueError(f"{path}: precision {precision!r} is not one of {', '.join(INDEX_PRECISIONS)}")
    if not (is_count(dim, 1) and dim <= 1 << 20):
        raise ValueError(f"{path}: dim {dim!r} is not an integer in [1, {1 << 20}]")
    if not is_count(count, 0):
        raise ValueError(f"{path}: count {count!r} is not a non-negative integer")
    if not isinstance(header.get("has_float"), bool):
        raise ValueError(f"{path}: has_float {header.get('has_float')!r} is not true or false")
    ranges = header.get("ranges")
    if precision != "int8":
        if ranges is not None:
            raise ValueError(f"{path}: ranges are only for int8 indexes, this one is {precision}")
        return precision, dim, count, None
    return precision, dim, count, check_ranges(ranges, dim, f"{path}: ranges")
