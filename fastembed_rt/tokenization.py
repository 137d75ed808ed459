"""Texts → token ids (the `tokenizers` library, called once per chunk) → packed batches."""

from __future__ import annotations

import re
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
    token_types: torch.Tensor | None = None  # int64 [total_tokens]: segment of each token (pairs); None: all 0
    is_query: torch.Tensor | None = None  # bool [num_seqs]: late-interaction queries among documents; None: no flags

    @property
    def num_tokens(self) -> int:
        return int(self.input_ids.shape[0])

    def to(self, device) -> PackedBatch:
        skip = None if self.skip is None else self.skip.to(device)
        types = None if self.token_types is None else self.token_types.to(device)
        return PackedBatch(self.input_ids.to(device), self.cu_seqlens.to(device), self.max_seqlen, skip, types, self.is_query)


@dataclass
class Tokenized:
    ids: list[list[int]]
    overflowed: list[bool]  # per text: longer than the limit, so it lost tokens

    @property
    def truncated(self) -> int:
        return sum(self.overflowed)


# A truncating tokenizer first reads at most this many characters per token it keeps: tokenizing 100 whole texts
# of 35 KB to keep their first 256 tokens took 12-16x the CPU time of reading their first 2,048 characters.
CHARS_PER_KEPT_TOKEN = 8
_WORD_END = re.compile(r"\S(?=\s)")  # a word's last character, before whitespace
_WORD_START = re.compile(r"\s(?=\S)")  # the whitespace just before a word


def cut_at_word(text: str, chars: int, direction: str) -> str | None:
    """The head (direction "right") or tail ("left") of `text` of at most about `chars` characters, cut between
    words (where pre-tokenizers split, so the tokens on the kept side do not change); None if none is found."""
    if direction == "right":
        last = None
        for last in _WORD_END.finditer(text, 0, chars):
            pass
        return text[: last.end()] if last else None
    first = _WORD_START.search(text, len(text) - chars)  # keeps the space: byte-level BPE attaches it to the word
    return text[first.start() :] if first else None


def cut_text(text: str, chars: int, direction: str) -> tuple[str, bool]:
    """The head (direction "right") or tail ("left") of `text` of about `chars` characters, cut between words where
    there is whitespace to cut at, and whether it was cut inside a word instead (then cut_word_dropped decides)."""
    part = cut_at_word(text, chars, direction)
    if part is not None:
        return part, False
    return (text[:chars] if direction == "right" else text[-chars:]), True


def cut_word_dropped(encoding, direction: str, sequence: int = 0) -> bool:
    """Whether a truncated encoding of a text cut inside a word kept none of that word's tokens: the cut word is the
    text's last (direction "right") or first ("left"), so it must lie wholly in the overflowing tokens. `sequence`:
    which text of a pair was cut (its word ids count from 0)."""

    def words(e):
        return [w for w, s in zip(e.word_ids, e.sequence_ids) if w is not None and s == sequence]

    kept, dropped = words(encoding), [w for o in encoding.overflowing for w in words(o)]
    if not kept or not dropped:
        return False
    return max(kept) < max(dropped) if direction == "right" else min(kept) > min(dropped)


def clone_tokenizer(tokenizer: Tokenizer, max_length: int | None, direction: str = "right",
                    strategy: str = "longest_first") -> Tokenizer:  # fmt: skip
    """A copy without padding and with its own truncation (none for max_length None). Settings stay fixed per copy,
    so that threads may tokenize with several copies at once."""
    copy = Tokenizer.from_str(tokenizer.to_str())
    copy.no_padding()
    if max_length is None:
        copy.no_truncation()
    else:
        copy.enable_truncation(max_length=max_length, direction=direction, strategy=strategy)
    return copy


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
        encodings, _ = self.encodings(self.prepare(texts))
        return Tokenized([e.ids for e in encodings], [bool(e.overflowing) for e in encodings])

    def encodings(self, texts: Sequence[str], add_special_tokens: bool = True, offsets: bool = False) -> tuple[list, list[int]]:
        """The tokenizer's encodings of `texts` (as they are: see prepare), truncation included, and for each the
        character where its tokens' offsets start (not 0 where the tail of the text was read). Where it
        truncates, a long text is first cut between words to CHARS_PER_KEPT_TOKEN characters per kept token: if the
        cut text still overflows, its kept tokens are the whole text's; if not, the whole text is read after all.
        A text with no whitespace to cut at (Chinese or Japanese, a URL) is cut inside a word; its kept tokens are
        the whole text's when the cut word is not among them (the tokenizer's word ids say), else it is read whole."""
        encode = self.tokenizer.encode_batch if offsets else self._encode_batch
        truncation = self.tokenizer.truncation
        limit = None if truncation is None else truncation["max_length"] * CHARS_PER_KEPT_TOKEN
        direction = None if truncation is None else truncation["direction"]
        cut, inside_word = {}, []
        for i, text in enumerate(texts):
            if limit is not None and len(text) > limit:
                cut[i], inside = cut_text(text, limit, direction)
                if inside:
                    inside_word.append(i)
        encodings = [None] * len(texts)
        between = [i for i in range(len(texts)) if i not in inside_word] if inside_word else range(len(texts))
        # Texts cut inside a word need word ids, which the fast path leaves out.
        for group, encode_group in ((between, encode), (inside_word, self.tokenizer.encode_batch)):
            if group:
                for i, encoding in zip(group, encode_group([cut.get(i, texts[i]) for i in group], add_special_tokens=add_special_tokens)):
                    encodings[i] = encoding
        starts = [len(texts[i]) - len(cut[i]) if i in cut else 0 for i in range(len(texts))]
        # Read whole where the cut lost tokens the model would have read, or where they may include the cut word.
        whole = [i for i in cut if not encodings[i].overflowing or (i in inside_word and not cut_word_dropped(encodings[i], direction))]
        if whole:
            for i, encoding in zip(whole, encode([texts[i] for i in whole], add_special_tokens=add_special_tokens)):
                encodings[i], starts[i] = encoding, 0
        return encodings, starts

    def prompt_length(self, prompt: str) -> int:
        """Tokens a prompt occupies at the start of a text, as sentence-transformers counts them:
        the prompt encoded alone, minus a trailing special token (SEP/EOS)."""
        ids = self.encode([prompt]).ids[0]
        return len(ids) - 1 if ids and ids[-1] in self.special_ids else len(ids)


def pack(ids: Sequence[Sequence[int]], skip: int | Sequence[int] = 0,
         token_types: Sequence[Sequence[int]] | None = None, is_query: Sequence[bool] | None = None) -> PackedBatch:  # fmt: skip
    """Concatenates token id lists into one PackedBatch. `skip` leading prompt tokens are marked for pooling
    to leave out: one count for every sequence, or one count per sequence. `token_types`: the segment of each
    token (text pairs), as long as `ids`; dropped when all are 0. `is_query`: per sequence, whether a
    late-interaction model takes it as a query."""
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    cu = np.zeros(len(ids) + 1, dtype=np.int32)
    np.cumsum(lengths, out=cu[1:])
    flat = np.fromiter((t for seq in ids for t in seq), dtype=np.int64, count=int(cu[-1]))
    if isinstance(skip, int):
        skip_tensor = torch.full((len(ids),), skip, dtype=torch.int32) if skip else None
    else:
        skip_tensor = torch.tensor(skip, dtype=torch.int32) if any(skip) else None
    types = None
    if token_types is not None:
        types = np.fromiter((t for seq in token_types for t in seq), dtype=np.int64, count=int(cu[-1]))
        types = torch.from_numpy(types) if types.any() else None
    flags = None if is_query is None else torch.tensor(list(is_query), dtype=torch.bool)
    return PackedBatch(torch.from_numpy(flat), torch.from_numpy(cu), int(lengths.max(initial=0)), skip_tensor, types, flags)
