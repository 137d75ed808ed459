"""Token-budget batch planning: sort by length, cut by a token budget and a cap on sequences."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def plan_batches(lengths: Sequence[int], max_tokens: int, max_sequences: int) -> list[np.ndarray]:
    """Index arrays of batches, longest sequences first, each within `max_tokens` packed tokens and
    `max_sequences` sequences. A sequence longer than the budget travels alone. Sorting keeps
    similar lengths together, which keeps per-sequence attention work even within a batch."""
    if max_tokens < 1 or max_sequences < 1:
        raise ValueError(f"batch limits must be positive, got max_tokens={max_tokens}, max_sequences={max_sequences}")
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    batches, start, tokens = [], 0, 0
    for pos, index in enumerate(order):
        length = int(lengths[index])
        if pos > start and (tokens + length > max_tokens or pos - start >= max_sequences):
            batches.append(order[start:pos])
            start, tokens = pos, 0
        tokens += length
    if start < len(order):
        batches.append(order[start:])
    return batches
