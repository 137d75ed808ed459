"""SparseEmbeddings: a batch of sparse vectors (learned lexical weights over a vocabulary) in CSR form:
row i holds indices[indptr[i]:indptr[i+1]] (int32, sorted, distinct) and the values there (float32)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch

from .validation import positive_int


@dataclass
class SparseEmbeddings:
    indptr: np.ndarray  # int64 [n + 1]
    indices: np.ndarray  # int32 [nnz], sorted within each row
    values: np.ndarray  # float32 [nnz]
    dim: int  # the vocabulary size

    def __post_init__(self):
        # Checked before the casts, so that no index wraps around or loses a fraction on its way to int32.
        if isinstance(self.dim, bool) or not isinstance(self.dim, (int, np.integer)) or not 1 <= self.dim < 2**31:
            raise ValueError(f"dim must be an integer in [1, 2^31), got {self.dim!r}")
        self.dim = int(self.dim)
        indptr, indices = np.asarray(self.indptr), np.asarray(self.indices)
        for name, array in (("indptr", indptr), ("indices", indices)):
            if array.dtype.kind not in "iu" and array.size:
                raise ValueError(f"{name} must be integers, got {array.dtype}")
        if indptr.ndim != 1 or len(indptr) < 1 or indptr[0] != 0 or np.any(np.diff(indptr) < 0):
            raise ValueError("indptr must rise from 0 and never decrease")
        if indices.size and (indices.min() < 0 or indices.max() >= self.dim):
            raise ValueError(f"indices must lie in [0, {self.dim})")
        self.indptr = np.ascontiguousarray(indptr, dtype=np.int64)
        self.indices = np.ascontiguousarray(indices, dtype=np.int32)
        self.values = np.ascontiguousarray(self.values, dtype=np.float32)
        if self.indptr[-1] != len(self.indices) or len(self.indices) != len(self.values) or self.indices.ndim != 1:
            raise ValueError(f"indptr ends at {self.indptr[-1]}, but there are {len(self.indices)} indices and "
                             f"{len(self.values)} values")  # fmt: skip
        # Within a row the indices rise strictly: a step that does not is a fault unless a row starts there.
        falls = np.flatnonzero(np.diff(self.indices) <= 0) + 1
        if len(falls):
            starts = np.isin(falls, self.indptr)
            if not starts.all():
                at = int(falls[~starts][0])
                row = int(np.searchsorted(self.indptr, at, side="right") - 1)
                raise ValueError(f"vector {row}: indices must be sorted and distinct, got {self.indices[at - 1]} "
                                 f"then {self.indices[at]}")  # fmt: skip

    # --- building ---

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[Sequence[int], Sequence[float]]], dim: int) -> SparseEmbeddings:
        """From (indices, values) per vector, in any order; each row is sorted here, and must not repeat an index."""
        indptr, indices, values = [0], [], []
        for i, (idx, val) in enumerate(rows):
            idx, val = np.asarray(idx, dtype=np.int64).ravel(), np.asarray(val, dtype=np.float32).ravel()
            if len(idx) != len(val):
                raise ValueError(f"vector {i}: {len(idx)} indices but {len(val)} values")
            order = np.argsort(idx, kind="stable")
            idx, val = idx[order], val[order]
            if len(idx) > 1 and np.any(idx[1:] == idx[:-1]):
                raise ValueError(f"vector {i}: index {int(idx[1:][idx[1:] == idx[:-1]][0])} appears twice")
            if len(idx) and (idx[0] < 0 or idx[-1] >= dim):
                raise ValueError(f"vector {i}: indices must lie in [0, {dim}), got {int(idx[0])}..{int(idx[-1])}")
            indices.append(idx.astype(np.int32))
            values.append(val)
            indptr.append(indptr[-1] + len(idx))
        cat = (lambda parts, dtype: np.concatenate(parts) if parts else np.zeros(0, dtype))  # noqa: E731
        return cls(np.asarray(indptr), cat(indices, np.int32), cat(values, np.float32), dim)

    @classmethod
    def from_dense(cls, dense, max_active_dims: int | None = None) -> SparseEmbeddings:
        """The non-zeros of dense [n, dim] (numpy or torch), keeping at most max_active_dims per row (the
        largest in absolute value, ties to the lower index)."""
        dense = torch.as_tensor(dense).float()
        if dense.dim() != 2:
            raise ValueError(f"dense embeddings must be [n, dim], got shape {tuple(dense.shape)}")
        dense = prune_dense(dense, max_active_dims)
        rows, cols = dense.nonzero(as_tuple=True)
        counts = torch.bincount(rows, minlength=dense.shape[0])
        indptr = np.concatenate([[0], counts.cumsum(0).numpy()])
        return cls(indptr, cols.numpy(), dense[rows, cols].numpy(), dense.shape[1])

    @classmethod
    def concatenate(cls, parts: Sequence[SparseEmbeddings], dim: int | None = None) -> SparseEmbeddings:
        if not parts:
            if dim is None:
                raise ValueError("concatenating no parts needs the dimension")
            return cls(np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32), dim)
        dims = {p.dim for p in parts}
        if len(dims) != 1:
            raise ValueError(f"cannot concatenate sparse embeddings of dimensions {sorted(dims)}")
        offsets = np.cumsum([0] + [p.nnz for p in parts[:-1]])
        indptr = np.concatenate([[0]] + [p.indptr[1:] + o for p, o in zip(parts, offsets)])
        return cls(indptr, np.concatenate([p.indices for p in parts]), np.concatenate([p.values for p in parts]), parts[0].dim)

    # --- reading ---

    def __len__(self) -> int:
        return len(self.indptr) - 1

    @property
    def nnz(self) -> int:
        return len(self.indices)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self), self.dim

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(indices, values) of vector i."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"vector {i} out of range for {len(self)} vectors")
        i %= len(self)
        a, b = self.indptr[i], self.indptr[i + 1]
        return self.indices[a:b], self.values[a:b]

    def __iter__(self):
        return (self.row(i) for i in range(len(self)))

    def __getitem__(self, key) -> SparseEmbeddings:
        """A subset of the vectors (an int, a slice or an index array), as SparseEmbeddings."""
        picked = np.atleast_1d(np.arange(len(self))[key])
        lengths = np.diff(self.indptr)[picked]
        indptr = np.concatenate([[0], np.cumsum(lengths)])
        # each kept entry's position in self: its row's start, plus its place within the row
        at = np.repeat(self.indptr[picked] - indptr[:-1], lengths) + np.arange(indptr[-1])
        return SparseEmbeddings(indptr, self.indices[at], self.values[at], self.dim)

    def to_scipy(self):
        """scipy.sparse.csr_matrix [n, dim]."""
        import scipy.sparse

        return scipy.sparse.csr_matrix((self.values, self.indices, self.indptr), shape=self.shape)

    def to_torch(self) -> torch.Tensor:
        """A coalesced torch.sparse_coo_tensor [n, dim]."""
        rows = np.repeat(np.arange(len(self)), np.diff(self.indptr))
        index = torch.from_numpy(np.stack([rows, self.indices.astype(np.int64)]))
        return torch.sparse_coo_tensor(index, torch.from_numpy(self.values.copy()), self.shape, check_invariants=True).coalesce()

    def to_dense(self) -> np.ndarray:
        out = np.zeros(self.shape, dtype=np.float32)
        rows = np.repeat(np.arange(len(self)), np.diff(self.indptr))
        out[rows, self.indices] = self.values
        return out

    def prune(self, max_active_dims: int) -> SparseEmbeddings:
        """At most max_active_dims non-zeros per vector: the largest in absolute value, ties to the lower index."""
        check_max_active_dims(max_active_dims)
        rows = []
        for idx, val in self:
            if len(idx) > max_active_dims:
                keep = np.sort(np.argsort(-np.abs(val), kind="stable")[:max_active_dims])
                idx, val = idx[keep], val[keep]
            rows.append((idx, val))
        return SparseEmbeddings.from_rows(rows, self.dim)

    def dot(self, other: SparseEmbeddings) -> np.ndarray:
        """Dot products [len(self), len(other)] (the similarity of SPLADE models)."""
        if self.dim != other.dim:
            raise ValueError(f"dimensions differ ({self.dim} vs {other.dim})")
        return np.asarray((self.to_scipy() @ other.to_scipy().T).todense(), dtype=np.float32)


def check_max_active_dims(max_active_dims) -> None:
    positive_int(max_active_dims, "max_active_dims")


def prune_dense(dense: torch.Tensor, max_active_dims: int | None) -> torch.Tensor:
    """dense [n, dim] with all but the max_active_dims largest |values| of each row zeroed (ties to the lower index)."""
    if max_active_dims is None or max_active_dims >= dense.shape[1]:
        return dense
    check_max_active_dims(max_active_dims)
    # a stable sort: among equal magnitudes the lower index comes first
    keep = torch.sort(dense.abs(), dim=1, descending=True, stable=True).indices[:, :max_active_dims]
    return torch.zeros_like(dense).scatter_(1, keep, dense.gather(1, keep))
