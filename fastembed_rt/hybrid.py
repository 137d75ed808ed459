"""Hybrid retrieval: one ranked list per query from a dense and a sparse search's results.

- "rrf": reciprocal rank fusion, score = sum over the lists of 1 / (rrf_k + rank), rank from 1 (Cormack et al.;
  rrf_k = 60 as there and in Elasticsearch, Qdrant and others);
- "weighted": each list's scores min-max normalized per query to [0, 1], then weights[0] * dense + weights[1] *
  sparse (a document missing from a list gets 0 there).
Ties go to the lower id.
"""

from __future__ import annotations

import numpy as np

from .validation import positive_int

HYBRID_METHODS = ("rrf", "weighted")


def _results(results, name: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        scores, ids = results
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be (scores, ids) as Index.search returns them") from None
    try:
        ids = np.atleast_2d(np.asarray(ids))
    except ValueError:
        raise ValueError(f"{name}: ids must be a [queries, k] array of integers (rows of one length)") from None
    if ids.dtype.kind not in "iu" and ids.size:
        raise ValueError(f"{name}: ids must be integers, got {ids.dtype}")
    try:
        scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    except (TypeError, ValueError):
        raise ValueError(f"{name}: scores must be numbers") from None
    if scores.shape != ids.shape or scores.ndim != 2:
        raise ValueError(f"{name}: scores {list(scores.shape)} and ids {list(ids.shape)} must be the same [queries, k]")
    if not np.isfinite(scores).all():
        row = int(np.argwhere(~np.isfinite(scores))[0, 0])
        raise ValueError(f"{name}: the scores of query {row} hold NaN or inf")
    return scores, ids.astype(np.int64)


def hybrid(dense_results, sparse_results, method: str = "rrf", *, k: int | None = None, rrf_k: float = 60.0,
           weights: tuple[float, float] = (0.5, 0.5)) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Fused (scores float32 [nq, k], ids int64 [nq, k]) from two (scores, ids) results over the same queries;
    ids < 0 (padding) are ignored, and rows with fewer than k documents are padded with score 0 and id -1.
    k defaults to the longer list's length."""
    if method not in HYBRID_METHODS:
        raise ValueError(f"unknown hybrid method {method!r}; supported: {', '.join(HYBRID_METHODS)}")
    lists = [_results(dense_results, "dense_results"), _results(sparse_results, "sparse_results")]
    if lists[0][0].shape[0] != lists[1][0].shape[0]:
        raise ValueError(f"dense_results has {lists[0][0].shape[0]} queries, sparse_results {lists[1][0].shape[0]}")
    if method == "rrf" and not rrf_k >= 0:
        raise ValueError(f"rrf_k must be >= 0, got {rrf_k}")
    if method == "weighted":
        try:
            numbers = [float(w) for w in weights]
        except (TypeError, ValueError):
            numbers = []
        if len(numbers) != 2 or not np.isfinite(numbers).all():
            raise ValueError(f"weights must be two finite numbers (dense, sparse), got {weights!r}")
        weights = numbers
    k = max(lists[0][0].shape[1], lists[1][0].shape[1]) if k is None else k
    k = positive_int(k, "k")
    nq = lists[0][0].shape[0]
    out_scores, out_ids = np.zeros((nq, k), np.float32), np.full((nq, k), -1, np.int64)
    for q in range(nq):
        fused: dict[int, float] = {}
        for which, (scores, ids) in enumerate(lists):
            valid = ids[q] >= 0
            row_ids, row_scores = ids[q][valid], scores[q][valid]
            if method == "rrf":
                contributions = 1.0 / (rrf_k + np.arange(1, len(row_ids) + 1))
            else:
                low, high = (row_scores.min(), row_scores.max()) if len(row_scores) else (0.0, 0.0)
                normalized = (row_scores - low) / (high - low) if high > low else np.ones_like(row_scores)
                contributions = weights[which] * normalized
            for doc, value in zip(row_ids.tolist(), contributions.tolist()):
                fused[doc] = fused.get(doc, 0.0) + value
        ranked = sorted(fused.items(), key=lambda item: (-item[1], item[0]))[:k]
        for i, (doc, value) in enumerate(ranked):
            out_ids[q, i], out_scores[q, i] = doc, value
    return out_scores, out_ids
