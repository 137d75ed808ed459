"""Token-budget batches: sort by length, cut by a token budget and a cap on sequences, run each packed batch."""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from .tokenization import PackedBatch, pack
from .validation import positive_int

# Token budget per batch: on the CPU a moderate budget keeps each layer's activations near the cache
# (all-MiniLM-L6-v2, 1,000 bench texts: 4,096 tokens ran 3-5% faster than 2,048 at every precision, and
# 1.2-1.3x faster than 8,192 at float32 and int8); a GPU wants large batches.
DEFAULT_BATCH_TOKENS = {"cpu": 4096, "cuda": 16384}
DEFAULT_MAX_BATCH_SEQUENCES = 512


def plan_batches(lengths: Sequence[int], max_tokens: int, max_sequences: int) -> list[np.ndarray]:
    """Index arrays of batches, longest sequences first, each within `max_tokens` packed tokens and
    `max_sequences` sequences. A sequence longer than the budget travels alone. Sorting keeps
    similar lengths together, which keeps per-sequence attention work even within a batch."""
    max_tokens, max_sequences = positive_int(max_tokens, "batch_tokens"), positive_int(max_sequences, "max_batch_sequences")
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


def iter_batches(ids: Sequence[Sequence[int]], device: torch.device, *, skip: int = 0,
                 token_types: Sequence[Sequence[int]] | None = None, batch_tokens: int | None = None,
                 max_batch_sequences: int = DEFAULT_MAX_BATCH_SEQUENCES) -> Iterator[tuple[np.ndarray, PackedBatch]]:  # fmt: skip
    """(indices into ids, their PackedBatch) for each token-budget batch of the sequences `ids` (with their token
    types, and `skip` prompt tokens each); batch_tokens defaults to the device's budget."""
    if batch_tokens is None:
        batch_tokens = DEFAULT_BATCH_TOKENS.get(device.type, DEFAULT_BATCH_TOKENS["cuda"])
    for indices in plan_batches([len(x) for x in ids], batch_tokens, max_batch_sequences):
        types = None if token_types is None else [token_types[i] for i in indices]
        yield indices, pack([ids[i] for i in indices], skip=skip, token_types=types)


def run_batches(ids: Sequence[Sequence[int]], run: Callable[[PackedBatch], np.ndarray], width: int, device: torch.device, *,
                skip: int = 0, token_types: Sequence[Sequence[int]] | None = None, batch_tokens: int | None = None,
                max_batch_sequences: int = DEFAULT_MAX_BATCH_SEQUENCES,
                on_batch: Callable[[int, int], None] | None = None) -> np.ndarray:  # fmt: skip
    """run(PackedBatch) -> float32 [num_seqs, width] over iter_batches' batches, rows back in input order;
    on_batch(sequences, tokens) after each batch."""
    out = np.empty((len(ids), width), dtype=np.float32)
    for indices, batch in iter_batches(ids, device, skip=skip, token_types=token_types, batch_tokens=batch_tokens,
                                       max_batch_sequences=max_batch_sequences):  # fmt: skip
        out[indices] = run(batch)
        if on_batch is not None:
            on_batch(len(indices), batch.num_tokens)
    return out
