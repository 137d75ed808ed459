"""Embedding quantization with sentence-transformers' semantics, bit for bit.

int8/uint8: per-dimension [min, max] ranges cut into 255 steps (floor, clip to [0, 255]; int8 subtracts 128).
binary/ubinary: bit = (x > 0), packed most-significant bit first (numpy.packbits); binary is the byte - 128.
"""

from __future__ import annotations

import numpy as np

PRECISIONS = ("float32", "int8", "uint8", "binary", "ubinary")


def as_float_matrix(x, name: str) -> np.ndarray:
    """x (numpy or torch) as a 1-D or 2-D floating-point numpy array, or a TypeError/ValueError naming it."""
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().float().cpu().numpy()
    x = np.asarray(x)
    if x.dtype.kind not in "f":
        raise TypeError(f"{name} must be floating point, got dtype {x.dtype}")
    if x.ndim not in (1, 2):
        raise ValueError(f"{name} must be 1-D or 2-D, got shape {x.shape}")
    return x


def check_finite(x: np.ndarray, name: str) -> None:
    """A ValueError naming the first row of x holding NaN or inf (x as it will be computed with: after any cast)."""
    if not np.isfinite(x).all():
        at = np.argwhere(~np.isfinite(x))[0]
        raise ValueError(f"{name} contain NaN or inf (row {int(at[0]) if x.ndim == 2 else 0}); float32 values stop at 3.4e38")


def check_ranges(ranges, dim: int, name: str = "ranges") -> np.ndarray:
    """int8 calibration ranges as float32 [2, dim]: finite, min <= max, and max - min within float32's range."""
    try:
        ranges = np.asarray(ranges, dtype=np.float32)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be [2][{dim}] finite numbers (int8 calibration), got {type(ranges).__name__}") from None
    if ranges.shape != (2, dim):
        raise ValueError(f"{name} must be [2][{dim}] finite numbers (int8 calibration), got shape {list(ranges.shape)}")
    with np.errstate(over="ignore", invalid="ignore"):
        bad = ~np.isfinite(ranges).all(axis=0) | ~(ranges[1] >= ranges[0]) | ~np.isfinite(ranges[1] - ranges[0])
    if bad.any():
        d = int(np.argmax(bad))
        raise ValueError(f"{name}: dimension {d} has min {ranges[0, d]} and max {ranges[1, d]}; "
                         "each needs finite min <= max, less than float32's largest value apart")  # fmt: skip
    return ranges


def quantization_ranges(embeddings: np.ndarray) -> np.ndarray:
    """[2, dim] per-dimension minimum and maximum, the calibration sentence-transformers uses."""
    embeddings = as_float_matrix(embeddings, "calibration_embeddings")
    if embeddings.ndim == 1 or embeddings.shape[0] < 2:
        raise ValueError("int8/uint8 ranges need at least 2 embeddings; pass ranges or calibration_embeddings")
    return np.vstack((np.min(embeddings, axis=0), np.max(embeddings, axis=0)))


def int8_buckets(ranges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(start, step) per dimension of the 255-step int8/uint8 grid over [min, max] ranges [2, dim];
    a constant dimension gets step 1, as in sentence-transformers."""
    ranges = ranges.astype(np.float32, copy=False)
    starts = ranges[0, :]
    steps = (ranges[1, :] - starts) / 255
    return starts, np.where(steps == 0, 1, steps)


def quantize_embeddings(embeddings, precision: str, ranges=None, calibration_embeddings=None) -> np.ndarray:
    """Quantizes float embeddings [n, d] (or [d]) to `precision`; see the module docstring."""
    if precision not in PRECISIONS:
        raise ValueError(f"unsupported precision {precision!r}; supported: {', '.join(PRECISIONS)}")
    embeddings = as_float_matrix(embeddings, "embeddings")
    dim = embeddings.shape[-1]
    if precision == "float32":
        return embeddings.astype(np.float32)
    if precision in ("binary", "ubinary"):
        packed = np.packbits(embeddings > 0, axis=-1)
        return (packed - 128).astype(np.int8) if precision == "binary" else packed
    if embeddings.ndim == 2 and embeddings.shape[0] == 0:
        return np.zeros((0, dim), dtype=np.int8 if precision == "int8" else np.uint8)
    check_finite(embeddings, "embeddings")
    if ranges is None:
        source = embeddings if calibration_embeddings is None else calibration_embeddings
        ranges = quantization_ranges(source)
    ranges = check_ranges(ranges, dim)
    starts, steps = int8_buckets(ranges)
    levels = np.clip(np.floor((embeddings - starts) / steps), 0, 255)
    return (levels - 128).astype(np.int8) if precision == "int8" else levels.astype(np.uint8)
