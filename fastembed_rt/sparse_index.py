"""SparseIndex: exact top-k by dot product over sparse vectors (SPLADE, BGE-M3 lexical weights), on an inverted
index (per term: the ids and weights of the documents that hold it, CSR) searched term by term in C++ with
num_docs floats of memory per thread. Saved as .npy arrays plus a header, loaded memory-mapped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from . import _C
from .index_files import is_count, load_array, read_header, write_header
from .sparse import SparseEmbeddings
from .validation import positive_int

FORMAT = "fastembed_rt.sparse_index"
VERSION = 1


def as_sparse(vectors, name: str) -> SparseEmbeddings:
    """SparseEmbeddings from themselves or a scipy.sparse matrix, with finite values."""
    if not isinstance(vectors, SparseEmbeddings):
        if hasattr(vectors, "tocsr"):
            csr = vectors.tocsr(copy=True)  # the caller's matrix is left as it was
            csr.sum_duplicates()
            csr.sort_indices()
            vectors = SparseEmbeddings(csr.indptr, csr.indices, csr.data, csr.shape[1])
        else:
            raise TypeError(f"{name} must be SparseEmbeddings or a scipy.sparse matrix, got {type(vectors).__name__}")
    if not np.isfinite(vectors.values).all():
        row = int(np.searchsorted(vectors.indptr, np.flatnonzero(~np.isfinite(vectors.values))[0], side="right") - 1)
        raise ValueError(f"{name}[{row}] holds a value that is not finite")
    return vectors


class SparseIndex:
    def __init__(self, term_offsets: np.ndarray, doc_ids: np.ndarray, weights: np.ndarray, dim: int, count: int):
        self.dim, self.count = dim, count
        self.term_offsets, self.doc_ids, self.weights = term_offsets, doc_ids, weights
        self._postings = _C.SparsePostings(term_offsets, doc_ids, weights, count)  # checks every posting once

    @classmethod
    def build(cls, vectors) -> SparseIndex:
        """The inverted index of `vectors` (SparseEmbeddings or a scipy.sparse matrix [n, dim])."""
        vectors = as_sparse(vectors, "vectors")
        offsets, ids, weights = _C.sparse_postings(vectors.indptr, vectors.indices, vectors.values, vectors.dim)
        return cls(offsets, ids, weights, vectors.dim, len(vectors))

    def __len__(self) -> int:
        return self.count

    @property
    def nnz(self) -> int:
        return len(self.doc_ids)

    def search(self, queries, k: int = 10, num_threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k dot products: (scores float32 [nq, min(k, n)], ids int64), best first, ties to the lower id;
        documents that share no term with a query score 0 and rank like any other."""
        queries = as_sparse(queries, "queries")
        if queries.dim != self.dim:
            raise ValueError(f"queries have dimension {queries.dim}, the index {self.dim}")
        k = positive_int(k, "k")
        k = min(k, self.count)
        if k == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        threads = torch.get_num_threads() if num_threads is None else positive_int(num_threads, "num_threads")
        return self._postings.search(queries.indptr, queries.indices, queries.values, k, threads)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for name in ("term_offsets", "doc_ids", "weights"):
            np.save(path / f"{name}.npy", getattr(self, name))
        header = {"format": FORMAT, "version": VERSION, "dim": self.dim, "count": self.count, "nnz": self.nnz}
        write_header(path, header)

    @classmethod
    def load(cls, path: str | Path, mmap: bool = True) -> SparseIndex:
        path = Path(path)
        header, header_path = read_header(path, "sparse index", FORMAT, VERSION)
        fields = {name: header.get(name) for name in ("dim", "count", "nnz")}
        for name, value in fields.items():
            if not is_count(value, 1 if name == "dim" else 0):
                raise ValueError(f"{header_path}: {name} {value!r} is not a valid count")
        mode = "r" if mmap else None
        arrays = {name: load_array(path / f"{name}.npy", mode, dtype, (length,))
                  for name, dtype, length in (("term_offsets", np.int64, fields["dim"] + 1), ("doc_ids", np.int32, fields["nnz"]),
                                              ("weights", np.float32, fields["nnz"]))}  # fmt: skip
        try:
            return cls(arrays["term_offsets"], arrays["doc_ids"], arrays["weights"], fields["dim"], fields["count"])
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
