"""MultiVectorEmbeddings: one [tokens, dim] matrix per text (ColBERT's token vectors), held packed as one
[total tokens, dim] array and offsets, as cu_seqlens keeps sequences apart. It reads as a sequence of per-text
arrays (PyLate's list), and hands the packed form to the MaxSim kernels and the index without copying."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np


@dataclass(frozen=True)
class MultiVectorEmbeddings:
    vectors: np.ndarray  # float32 [total tokens, dim], or int8 codes with `scales`
    offsets: np.ndarray  # int64 [n + 1]: text i is vectors[offsets[i]:offsets[i + 1]]
    scales: np.ndarray | None = None  # float32 [total tokens]: int8 codes times scale give the float vectors

    def __post_init__(self):
        v, o = self.vectors, self.offsets
        if v.ndim != 2:
            raise ValueError(f"token vectors must be [tokens, dim], got shape {v.shape}")
        if v.dtype not in (np.float32, np.int8):
            raise ValueError(f"token vectors must be float32 or int8 codes, got {v.dtype}")
        if o.dtype.kind not in "iu":
            raise ValueError(f"offsets must be integers, got {o.dtype}")
        if o.ndim != 1 or len(o) < 1 or o[0] != 0 or o[-1] != len(v) or (np.diff(o) < 0).any():
            raise ValueError(f"offsets must rise from 0 to the {len(v)} token vectors")
        if (v.dtype == np.int8) != (self.scales is not None):
            raise ValueError("int8 token codes need their scales (float32 [tokens]), and float vectors take none")
        if self.scales is not None and self.scales.shape != (len(v),):
            raise ValueError(f"{len(v)} token codes but {self.scales.shape} scales")

    @classmethod
    def from_arrays(cls, arrays: Sequence[np.ndarray], dim: int | None = None) -> MultiVectorEmbeddings:
        """From per-text float arrays [tokens_i, dim] (e.g. PyLate's encode output); `dim` for an empty list."""
        arrays = [np.asarray(a, dtype=np.float32) for a in arrays]
        for i, a in enumerate(arrays):
            if a.ndim != 2:
                raise ValueError(f"item {i}: token vectors must be [tokens, dim], got shape {a.shape}")
        dims = {a.shape[1] for a in arrays}
        if len(dims) > 1:
            first = arrays[0].shape[1]
            bad = next(i for i, a in enumerate(arrays) if a.shape[1] != first)
            raise ValueError(f"item {bad}: dimension {arrays[bad].shape[1]} differs from item 0's ({first})")
        dim = dims.pop() if dims else (dim or 0)
        offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
        np.cumsum([len(a) for a in arrays], out=offsets[1:])
        vectors = np.concatenate(arrays) if arrays else np.zeros((0, dim), dtype=np.float32)
        packed = cls(np.ascontiguousarray(vectors, dtype=np.float32), offsets)
        packed.check_finite("item")
        return packed

    def check_finite(self, name: str) -> None:
        """A ValueError naming the first text (`name` i) and token whose float values (or int8 scale) are NaN or
        inf; a chunk of tokens at a time, so that a memory-mapped corpus is never copied whole."""
        values = self.vectors if self.scales is None else self.scales[:, None]
        chunk = 1 << 16
        for start in range(0, len(values), chunk):
            bad = ~np.isfinite(values[start : start + chunk]).all(axis=1)
            if bad.any():
                token = start + int(np.argmax(bad))
                item = int(np.searchsorted(self.offsets, token, side="right") - 1)
                what = "vector" if self.scales is None else "int8 scale"
                raise ValueError(f"{name} {item}: token {token - int(self.offsets[item])}'s {what} holds NaN or inf")

    @classmethod
    def concatenate(cls, parts: Sequence[MultiVectorEmbeddings]) -> MultiVectorEmbeddings:
        if not parts:
            raise ValueError("nothing to concatenate")
        if len({p.scales is None for p in parts}) > 1:
            raise ValueError("cannot concatenate float token vectors with int8 codes: quantize() the float parts first")
        if len({p.dim for p in parts}) > 1:
            raise ValueError(f"cannot concatenate token vectors of dimensions {sorted({p.dim for p in parts})}")
        offsets = [parts[0].offsets]
        for p in parts[1:]:
            offsets.append(p.offsets[1:] + offsets[-1][-1])
        scales = None if parts[0].scales is None else np.concatenate([p.scales for p in parts])
        return cls(np.concatenate([p.vectors for p in parts]), np.concatenate(offsets), scales)

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        """Text i's token vectors (float32; int8 codes come back dequantized)."""
        if not isinstance(i, (int, np.integer)):
            raise TypeError(f"index with an int, got {type(i).__name__}")
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} texts")
        i = int(i) % n
        rows = slice(int(self.offsets[i]), int(self.offsets[i + 1]))
        if self.scales is None:
            return self.vectors[rows]
        return self.vectors[rows].astype(np.float32) * self.scales[rows, None]

    def float_vectors(self) -> np.ndarray:
        """All token vectors, packed, as float32 (int8 codes dequantized)."""
        if self.scales is None:
            return self.vectors
        return self.vectors.astype(np.float32) * self.scales[:, None]

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self[i] for i in range(len(self)))

    def take(self, indices: Sequence[int]) -> MultiVectorEmbeddings:
        """The texts at `indices`, in that order, packed anew."""
        indices = np.asarray(indices, dtype=np.int64)
        lengths = self.lengths[indices]
        offsets = np.zeros(len(indices) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        rows = np.repeat(self.offsets[indices] - offsets[:-1], lengths) + np.arange(offsets[-1])
        scales = None if self.scales is None else self.scales[rows]
        return MultiVectorEmbeddings(self.vectors[rows], offsets, scales)

    def quantize(self) -> MultiVectorEmbeddings:
        """Per-token symmetric int8 codes and scales (scale = max |x| / 127), the form MaxSim's int8 path reads."""
        if self.scales is not None:
            return self
        from .ops.reference import quantize_rows
        import torch

        codes, scales = quantize_rows(torch.from_numpy(self.vectors))
        return MultiVectorEmbeddings(codes.numpy(), self.offsets, scales.numpy())
