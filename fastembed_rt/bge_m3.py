"""BGE-M3: dense, sparse and multi-vector (ColBERT) outputs of one XLM-RoBERTa forward pass, as FlagEmbedding's
BGEM3FlagModel computes them:
- dense: the [CLS] state, L2-normalized;
- sparse: relu(sparse_linear(state)) per token, the largest weight per distinct token id, special tokens dropped
  (sparse_linear.pt, the SparseEncoder's head);
- multivector: colbert_linear(state) for every token after [CLS], each L2-normalized (colbert_linear.pt).
Heads are read with torch.load(weights_only=True) only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .batching import DEFAULT_MAX_BATCH_SEQUENCES, iter_batches
from .engine import check_texts, warn_truncated
from .loading import resolve_model
from .multivector import MultiVectorEmbeddings
from .pooling import Dense
from .sparse import SparseEmbeddings
from .sparse_encoder import SparseEncoder, load_head_file, load_sparse_spec

COLBERT_FILE = "colbert_linear.pt"
OUTPUTS = ("dense", "sparse", "multivector", "all")


def is_bge_m3(root: Path) -> bool:
    return (root / COLBERT_FILE).is_file() and (root / "sparse_linear.pt").is_file()


class BGEM3:
    """A loaded BGE-M3. Build one with fastembed_rt.load_bge_m3()."""

    def __init__(self, path: Path, device=None, dtype=None):
        self.sparse_encoder = SparseEncoder(load_sparse_spec(path), device=device, dtype=dtype)
        if self.sparse_encoder.spec.head != "bge-m3":
            raise ValueError(f"{path}: not a BGE-M3 folder (it needs sparse_linear.pt and {COLBERT_FILE} beside the weights)")
        self.model, self.device = self.sparse_encoder.model, self.sparse_encoder.device
        self.tokenizer = self.sparse_encoder.tokenizer
        hidden = self.model.config.hidden_size
        state = load_head_file(path / COLBERT_FILE)
        weight, bias = state.get("weight"), state.get("bias")
        if not isinstance(weight, torch.Tensor) or weight.dim() != 2 or weight.shape[1] != hidden:
            raise ValueError(f"{path / COLBERT_FILE}: expected 'weight' [dim, {hidden}], got "
                             f"{tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__}")  # fmt: skip
        if bias is not None and (not isinstance(bias, torch.Tensor) or bias.shape != (weight.shape[0],)):
            raise ValueError(f"{path / COLBERT_FILE}: expected 'bias' [{weight.shape[0]}]")
        self.colbert_linear = Dense(weight.float(), None if bias is None else bias.float()).to(self.device)
        self.dimension = hidden
        self.colbert_dimension = weight.shape[0]
        self.vocab_size = self.sparse_encoder.dimension

    @property
    def max_seq_length(self) -> int:
        return self.sparse_encoder.max_seq_length

    def encode(self, texts: str | Sequence[str], *, output: str = "all", batch_tokens: int | None = None,
               max_batch_sequences: int = DEFAULT_MAX_BATCH_SEQUENCES,
               on_batch: Callable[[int, int], None] | None = None):  # fmt: skip
        """Texts' embeddings from one forward pass each: output "dense" (float32 [n, hidden]), "sparse"
        (SparseEmbeddings), "multivector" (MultiVectorEmbeddings) or "all" (a dict of the three)."""
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
        texts = check_texts([texts] if isinstance(texts, str) else texts)
        tokenized = self.tokenizer.encode(texts)
        warn_truncated(tokenized.truncated, len(texts), self.max_seq_length)
        ids = tokenized.ids
        wanted = ("dense", "sparse", "multivector") if output == "all" else (output,)
        parts = {name: [] for name in wanted}
        order = []
        for indices, batch in iter_batches(ids, self.device, batch_tokens=batch_tokens, max_batch_sequences=max_batch_sequences):
            for name, value in self.embed_batch(batch, wanted).items():
                parts[name].append(value)
            order.append(indices)
            if on_batch is not None:
                on_batch(len(indices), batch.num_tokens)
        back = np.argsort(np.concatenate(order), kind="stable") if order else np.zeros(0, np.int64)
        out = {}
        if "dense" in parts:
            out["dense"] = np.concatenate(parts["dense"])[back] if order else np.zeros((0, self.dimension), np.float32)
        if "sparse" in parts:
            sparse = SparseEmbeddings.concatenate(parts["sparse"], self.vocab_size)
            out["sparse"] = sparse[back] if order else sparse
        if "multivector" in parts:
            out["multivector"] = (MultiVectorEmbeddings.concatenate(parts["multivector"]).take(back) if order else
                                  MultiVectorEmbeddings(np.zeros((0, self.colbert_dimension), np.float32), np.zeros(1, np.int64)))  # fmt: skip
        return out if output == "all" else out[output]

    def embed_batch(self, batch, outputs: Sequence[str] = ("dense", "sparse", "multivector")) -> dict:
        """One packed batch through the backbone once, then each head asked for."""
        batch = batch.to(self.device)
        out = {}
        with torch.inference_mode():
            hidden = self.model.forward(batch.input_ids, batch.cu_seqlens, batch.max_seqlen)
            starts = batch.cu_seqlens[:-1].long()
            lengths = (batch.cu_seqlens[1:] - batch.cu_seqlens[:-1]).long()
            if "dense" in outputs:
                out["dense"] = F.normalize(hidden[starts].float(), dim=-1).cpu().numpy()
            if "sparse" in outputs:
                rows, cols, values = (t.cpu() for t in self.sparse_encoder.head(hidden, batch.cu_seqlens, batch.input_ids))
                counts = torch.bincount(rows, minlength=len(lengths)).numpy()
                out["sparse"] = SparseEmbeddings(np.concatenate([[0], np.cumsum(counts)]), cols.numpy(), values.numpy(), self.vocab_size)
            if "multivector" in outputs:
                keep = torch.ones(len(hidden), dtype=torch.bool, device=hidden.device)
                keep[starts[lengths > 0]] = False  # every token after [CLS]
                vectors = F.normalize(self.colbert_linear(hidden[keep].float()), dim=-1).cpu().numpy()
                offsets = np.concatenate([[0], np.cumsum((lengths - 1).clamp(min=0).cpu().numpy())])
                out["multivector"] = MultiVectorEmbeddings(np.ascontiguousarray(vectors), offsets.astype(np.int64))
        return out

    def colbert_score(self, queries: MultiVectorEmbeddings, documents: MultiVectorEmbeddings) -> np.ndarray:
        """FlagEmbedding's colbert_score: MaxSim divided by the query's token count, [n queries, n documents]."""
        from .colbert import maxsim_scores

        return maxsim_scores(queries, documents) / np.maximum(queries.lengths, 1)[:, None]


def load_bge_m3(name_or_path: str | Path, device=None, dtype=None, *, revision: str | None = None) -> BGEM3:
    """BGE-M3 with its three heads (a folder with colbert_linear.pt and sparse_linear.pt beside the XLM-R weights)."""
    root, _ = resolve_model(name_or_path, revision)
    if not (root / COLBERT_FILE).is_file():
        raise FileNotFoundError(f"{root / COLBERT_FILE} is missing: BGE-M3's multi-vector head")
    return BGEM3(root, device=device, dtype=dtype)
