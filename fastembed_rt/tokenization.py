"""Texts → token ids (the `tokenizers` library, called once per chunk) → packed batches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from tokenizers import Tokenizer


@dataclass
class PackedBatch:
    """Sequences concatenated without padding, as flash-attn's varlen API takes them."""

    input_ids: torch.Tensor  # int64 [total_tokens]
    cu_seqlens: torch.Tensor  # int32 [num_seqs + 1]: sequence i is tokens cu_seqlens[i]:cu_seqlens[i+1]
    max_seqlen: int
    skip: torch.Tensor | None = None  # int32 [num_seqs]: leading prompt tokens that pooling may leave out

    @property
    def num_tokens(self) -> int:
        return int(self.input_ids.shape[0])

    def to(self, device) -> PackedBatch:
        skip = None if self.skip is None else self.skip.to(device)
        return PackedBatch(self.input_ids.to(device), self.cu_seqlens.to(device), self.max_seqlen, skip)


@dataclass
class Tokenized:
    ids: list[list[int]]
    overflowed: list[bool]  # per text: longer than the limit, so it lost tokens

    @property
    def truncated(self) -> int:
        return sum(self.overflowed)


class TextTokenizer:
    def __init__(self, tokenizer: Tokenizer, max_length: int, lowercase: bool = False):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.lowercase = lowercase
        special = tokenizer.get_added_tokens_decoder()
        self.special_ids = {i for i, tok in special.items() if tok.special}
        self._encode_batch = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)

    def prepare(self, texts: Sequence[str]) -> list[str]:
        """The texts as the model reads them: lowercased where its sentence_bert_config says so."""
        return [t.lower() for t in texts] if self.lowercase else list(texts)

    def encode(self, texts: Sequence[str]) -> Tokenized:
        encodings = self._encode_batch(self.prepare(texts), add_special_tokens=True)
        return Tokenized([e.ids for e in encodings], [bool(e.overflowing) for e in encodings])

    def prompt_length(self, prompt: str) -> int:
        """Tokens a prompt occupies at the start of a text, as sentence-transformers counts them:
        the prompt encoded alone, minus a trailing special token (SEP/EOS)."""
        ids = self.encode([prompt]).ids[0]
        return len(ids) - 1 if ids and ids[-1] in self.special_ids else len(ids)


def pack(ids: Sequence[Sequence[int]], skip: int | Sequence[int] = 0) -> PackedBatch:
    """Concatenates token id lists into one PackedBatch. `skip` leading prompt tokens are marked for pooling
    to leave out: one count for every sequence, or one count per sequence."""
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    cu = np.zeros(len(ids) + 1, dtype=np.int32)
    np.cumsum(lengths, out=cu[1:])
    flat = np.fromiter((t for seq in ids for t in seq), dtype=np.int64, count=int(cu[-1]))
    if isinstance(skip, int):
        skip_tensor = torch.full((len(ids),), skip, dtype=torch.int32) if skip else None
    else:
        skip_tensor = torch.tensor(skip, dtype=torch.int32) if any(skip) else None
    return PackedBatch(torch.from_numpy(flat), torch.from_numpy(cu), int(lengths.max(initial=0)), skip_tensor)
