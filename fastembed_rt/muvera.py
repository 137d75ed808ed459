"""MUVERA fixed-dimensional encodings (Dhulipala et al., 2024): one vector per multi-vector text, whose dot products
approximate MaxSim, so that a single-vector index can find candidates for exact MaxSim rescoring.

Per repetition, SimHash with `simhash_bits` Gaussian hyperplanes puts each token in one of 2^bits buckets, and a
random +-1 projection maps it to `projection_dim` values. A query sums its projected tokens per bucket; a document
averages them, and a bucket none of its tokens fell in takes the token whose bucket is nearest in Hamming distance.
Repetitions are concatenated: the encoding has repetitions * 2^bits * projection_dim values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .multivector import MultiVectorEmbeddings

# Tokens encoded per step: bounds the [tokens, buckets] Hamming table that empty buckets are filled from.
_CHUNK_TOKENS = 1 << 16


@dataclass(frozen=True)
class MuveraEncoder:
    hyperplanes: np.ndarray  # float32 [repetitions, dim, simhash_bits]
    projections: np.ndarray  # float32 [repetitions, dim, projection_dim], entries +-1 / sqrt(projection_dim)

    @classmethod
    def create(cls, dim: int, repetitions: int = 10, simhash_bits: int = 4, projection_dim: int = 16, seed: int = 0) -> MuveraEncoder:
        for name, value, low, high in (("dim", dim, 1, None), ("repetitions", repetitions, 1, None),
                                       ("simhash_bits", simhash_bits, 0, 12), ("projection_dim", projection_dim, 1, None)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
                raise ValueError(f"MUVERA {name} must be an int in [{low}, {high or 'inf'}], got {value!r}")
        g = torch.Generator().manual_seed(seed)
        hyperplanes = torch.randn(repetitions, dim, simhash_bits, generator=g)
        signs = torch.randint(0, 2, (repetitions, dim, projection_dim), generator=g).float() * 2 - 1
        return cls(hyperplanes.numpy(), (signs / projection_dim**0.5).numpy())

    @property
    def dim(self) -> int:
        return self.hyperplanes.shape[1]

    @property
    def buckets(self) -> int:
        return 1 << self.hyperplanes.shape[2]

    @property
    def output_dim(self) -> int:
        return self.hyperplanes.shape[0] * self.buckets * self.projections.shape[2]

    def encode_queries(self, queries: MultiVectorEmbeddings) -> np.ndarray:
        return self._encode(queries, document=False)

    def encode_documents(self, documents: MultiVectorEmbeddings) -> np.ndarray:
        return self._encode(documents, document=True)

    def _encode(self, texts: MultiVectorEmbeddings, document: bool) -> np.ndarray:
        out = np.zeros((len(texts), self.output_dim), dtype=np.float32)
        for rows, encodings in self.chunks(texts, document):
            out[rows] = encodings
        return out

    def chunks(self, texts: MultiVectorEmbeddings, document: bool):
        """(slice of texts, their float32 encodings [n, output_dim]) for chunks of whole texts of about _CHUNK_TOKENS
        tokens: a large corpus's encodings can be used without ever being held whole."""
        if texts.dim != self.dim:
            raise ValueError(f"token vectors have dimension {texts.dim}, the MUVERA encoder {self.dim}")
        offsets = texts.offsets
        start = 0
        while start < len(texts):
            end = int(np.searchsorted(offsets, offsets[start] + _CHUNK_TOKENS, side="right")) - 1
            end = min(max(end, start + 1), len(texts))
            rows = slice(int(offsets[start]), int(offsets[end]))
            tokens = texts.vectors[rows] if texts.scales is None else texts.vectors[rows] * texts.scales[rows, None]
            lengths = torch.from_numpy(np.diff(offsets[start : end + 1]))
            yield slice(start, end), self._encode_chunk(torch.from_numpy(np.asarray(tokens, dtype=np.float32)), lengths, document)
            start = end

    def _encode_chunk(self, tokens: torch.Tensor, lengths: torch.Tensor, document: bool) -> np.ndarray:
        n, buckets, width = len(lengths), self.buckets, self.projections.shape[2]
        owner = torch.repeat_interleave(torch.arange(n), lengths)  # the text of each token
        powers = 2 ** torch.arange(self.hyperplanes.shape[2])
        parts = []
        for hyperplanes, projection in zip(torch.from_numpy(self.hyperplanes), torch.from_numpy(self.projections)):
            bucket = ((tokens @ hyperplanes > 0).long() * powers).sum(1)  # [T]
            projected = tokens @ projection  # [T, width]
            slot = owner * buckets + bucket
            sums = torch.zeros(n * buckets, width).index_add_(0, slot, projected)
            if document:
                counts = torch.zeros(n * buckets).index_add_(0, slot, torch.ones(len(slot)))
                sums = sums / counts.clamp(min=1)[:, None]
                empty = (counts == 0) & (lengths > 0).repeat_interleave(buckets)  # a text without tokens stays 0
                if bool(empty.any()):
                    sums[empty] = projected[self._nearest_token(bucket, owner, n)[empty]]
            parts.append(sums.view(n, buckets * width))
        return torch.cat(parts, dim=1).numpy()

    def _nearest_token(self, bucket: torch.Tensor, owner: torch.Tensor, n: int) -> torch.Tensor:
        """[n * buckets]: for each text and bucket, the text's token whose bucket is nearest in Hamming distance (the
        first such token; meaningless for a text without tokens)."""
        all_buckets = torch.arange(self.buckets)
        differing = bucket[:, None] ^ all_buckets[None, :]  # [T, buckets]
        distance = torch.zeros_like(differing)
        for bit in range(self.hyperplanes.shape[2]):
            distance += (differing >> bit) & 1
        count = len(bucket)
        key = distance * count + torch.arange(count)[:, None]  # nearest first, then the earlier token
        best = torch.full((n, self.buckets), torch.iinfo(torch.long).max, dtype=torch.long)
        best.scatter_reduce_(0, owner[:, None].expand(-1, self.buckets), key, reduce="amin")
        return (best % count).reshape(-1)
