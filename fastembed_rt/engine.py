"""Embedder: texts in, vectors out, in input order, through token-budget batches of packed sequences."""

from __future__ import annotations

import dataclasses
import itertools
import warnings
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .batching import DEFAULT_MAX_BATCH_SEQUENCES, run_batches
from .loading import ModelSpec, load_model_spec, resolve_model
from .models.registry import build_model
from .pooling import sentence_embeddings
from .quantize import PRECISIONS, quantize_embeddings
from .tokenization import PackedBatch, TextTokenizer
from .validation import positive_int


_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16,
}  # fmt: skip

SIMILARITY_FUNCTIONS = ("cosine", "dot", "euclidean", "manhattan")


class TruncationWarning(UserWarning):
    """Some texts were longer than the model's max_seq_length and lost their tail."""


def warn_truncated(truncated: int, count: int, max_seq_length: int) -> None:
    """A TruncationWarning, when texts were truncated, pointing at the caller of the encode that calls this."""
    if truncated:
        warnings.warn(f"{truncated} of {count} texts exceeded max_seq_length={max_seq_length} tokens and were truncated",
                      TruncationWarning, stacklevel=3)  # fmt: skip


INT8 = "int8"  # int8 linear layers (per-channel weights, per-token activations); everything else float32


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The device asked for (cpu, cuda or cuda:N); by default a GPU when there is one."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but torch sees no CUDA GPU on this machine")
    return resolved


def resolve_dtype(dtype) -> torch.dtype:
    """The dtype activations are computed in (float32 for int8 weights)."""
    if dtype is None or dtype == INT8:
        return torch.float32
    if isinstance(dtype, torch.dtype) and dtype in _DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype in _DTYPES:
        return _DTYPES[dtype]
    raise ValueError(f"unsupported dtype {dtype!r}; supported: float32, bfloat16, float16, int8")


class Embedder:
    """A loaded embedding model. Build one with fastembed_rt.load()."""

    def __init__(self, spec: ModelSpec, device: str | torch.device | None = None, dtype=None):
        # Kept without its weights: the model holds what it uses, and a load()ed spec then unmaps the file (a
        # converted model keeps no float32 copy). The caller's spec is left as it was.
        self.spec = dataclasses.replace(spec, weights={}, dense=[])
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype)
        self.int8 = dtype == INT8
        if spec.similarity_fn_name not in SIMILARITY_FUNCTIONS:
            raise ValueError(f"{spec.path}: unsupported similarity_fn_name {spec.similarity_fn_name!r}; supported: {', '.join(SIMILARITY_FUNCTIONS)}")
        self.model = build_model(spec.config, spec.weights, self.device, self.dtype, int8=self.int8)
        self.max_seq_length = min(spec.max_seq_length, self.model.max_positions)
        self.tokenizer = TextTokenizer(spec.tokenizer, self.max_seq_length, spec.do_lower_case)
        spec.tokenizer.enable_truncation(max_length=self.max_seq_length)
        self.dense = [layer.to(self.device) for layer in spec.dense]
        pooled = self.model.config.hidden_size * len(spec.pooling.modes)
        for i, layer in enumerate(self.dense):  # each Dense module takes what the one before it gives
            width = self.dense[i - 1].weight.shape[0] if i else pooled
            if layer.weight.shape[1] != width:
                raise ValueError(f"{spec.path}: Dense module {i} takes {layer.weight.shape[1]} features, but gets {width}")
        self.full_dimension = self.dense[-1].weight.shape[0] if self.dense else pooled

    @property
    def dimension(self) -> int:
        """Length of the vectors encode() returns by default (after the model's own truncate_dim)."""
        return self.spec.truncate_dim or self.full_dimension

    @property
    def similarity_fn_name(self) -> str:
        return self.spec.similarity_fn_name

    def encode(
        self,
        texts: str | Sequence[str],
        *,
        batch_tokens: int | None = None,
        max_batch_sequences: int = DEFAULT_MAX_BATCH_SEQUENCES,
        prompt: str | None = None,
        prompt_name: str | None = None,
        normalize: bool | None = None,
        truncate_dim: int | None = None,
        precision: str = "float32",
        on_batch: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Embeds texts into float32 [n, d] in input order (a single string gives [d]).

        normalize=None follows the model (normalized when its modules include Normalize).
        truncate_dim keeps the first dims (Matryoshka), re-normalizing when normalizing.
        precision: float32, or int8 / uint8 / binary / ubinary as quantize_embeddings computes them
        (int8 ranges from this call's own embeddings; use quantize_embeddings for calibrated ranges).
        batch_tokens (default: 4,096 on the CPU, 16,384 on a GPU) caps the packed tokens of a batch.
        on_batch(texts, tokens) is called after each batch, for progress reporting.
        """
        if isinstance(texts, str):
            return self.encode([texts], batch_tokens=batch_tokens, max_batch_sequences=max_batch_sequences,
                               prompt=prompt, prompt_name=prompt_name, normalize=normalize,
                               truncate_dim=truncate_dim, precision=precision, on_batch=on_batch)[0]  # fmt: skip
        texts = check_texts(texts)
        if precision not in PRECISIONS:
            raise ValueError(f"unsupported precision {precision!r}; supported: {', '.join(PRECISIONS)}")
        if precision in ("int8", "uint8") and len(texts) == 1:
            raise ValueError(f"precision {precision} takes its ranges from this call's embeddings, which needs at least 2 "
                             "texts: encode at float32 and quantize with quantize_embeddings(vectors, precision, ranges=...)")  # fmt: skip
        prompt = self.resolve_prompt(prompt, prompt_name)
        if normalize is not None and not isinstance(normalize, (bool, np.bool_)):
            raise TypeError(f"normalize must be True, False or None (the model's choice), got {normalize!r}")
        normalize = self.spec.normalize if normalize is None else bool(normalize)
        truncate_dim = self.resolve_truncate_dim(truncate_dim)
        tokenized = self.tokenizer.encode([prompt + t for t in texts] if prompt else texts)
        warn_truncated(tokenized.truncated, len(texts), self.max_seq_length)
        out = self.embed_token_ids(
            tokenized.ids, skip=self.prompt_skip(prompt), normalize=normalize, truncate_dim=truncate_dim,
            batch_tokens=batch_tokens, max_batch_sequences=max_batch_sequences, on_batch=on_batch,
        )  # fmt: skip
        return out if precision == "float32" else quantize_embeddings(out, precision)

    def embed_token_ids(
        self,
        ids: Sequence[Sequence[int]],
        *,
        skip: int = 0,
        normalize: bool = False,
        truncate_dim: int | None = None,
        batch_tokens: int | None = None,
        max_batch_sequences: int = DEFAULT_MAX_BATCH_SEQUENCES,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """The model on already tokenized texts (as self.tokenizer.encode gives them): float32 [n, d] in order.
        `skip` leading prompt tokens are left out of pooling; the other options are resolved (see encode)."""
        return run_batches(ids, lambda batch: self.embed_batch(batch, normalize=normalize, truncate_dim=truncate_dim),
                           truncate_dim or self.full_dimension, self.device, skip=skip, batch_tokens=batch_tokens,
                           max_batch_sequences=max_batch_sequences, on_batch=on_batch)  # fmt: skip

    def embed_batch(self, batch: PackedBatch, *, normalize: bool = False, truncate_dim: int | None = None) -> np.ndarray:
        """One packed batch through the model and the sentence-embedding head: float32 [num_seqs, d]."""
        batch = batch.to(self.device)
        with torch.inference_mode():
            rows = self._pooled_rows(batch)
            if rows is None:
                hidden = self.model.forward(batch.input_ids, batch.cu_seqlens, batch.max_seqlen)
                cu_seqlens, skip = batch.cu_seqlens, batch.skip
            else:  # one row per text: each its own sequence of one token
                hidden = self.model.forward(batch.input_ids, batch.cu_seqlens, batch.max_seqlen, rows=rows)
                cu_seqlens, skip = torch.arange(len(rows) + 1, dtype=batch.cu_seqlens.dtype, device=rows.device), None
            vectors = sentence_embeddings(
                hidden, cu_seqlens, self.spec.pooling, skip=skip, dense=self.dense, truncate_dim=truncate_dim,
                normalize=normalize,
            )  # fmt: skip
            return vectors.float().cpu().numpy()

    def _pooled_rows(self, batch: PackedBatch) -> torch.Tensor | None:
        """Under CLS or last-token pooling alone, the one token of each text pooling reads, as reference.pool picks
        it (CLS: the first after a left-out prompt, or the first if all is prompt), where the model can run its last
        layer on those rows only; else None."""
        modes = self.spec.pooling.modes
        if modes not in (("cls",), ("lasttoken",)) or not getattr(self.model, "takes_rows", False):
            return None
        lengths = batch.cu_seqlens[1:] - batch.cu_seqlens[:-1]
        skipped = not self.spec.pooling.include_prompt and batch.skip is not None
        offset = batch.skip.to(lengths.dtype) if skipped else torch.zeros_like(lengths)
        if len(lengths) == 0 or int(lengths.min()) < 1 or (modes == ("lasttoken",) and bool((offset >= lengths).any())):
            return None  # an empty text, or one all prompt: pooled from no row (lasttoken's zeros)
        if modes == ("lasttoken",):
            return (batch.cu_seqlens[1:] - 1).long()
        offset = torch.where(offset < lengths, offset, torch.zeros_like(offset))  # all prompt: the first token
        return (batch.cu_seqlens[:-1] + offset).long()

    def prompt_skip(self, prompt: str) -> int:
        """Leading tokens of `prompt` that pooling leaves out (0 unless the model pools without its prompt)."""
        return self.tokenizer.prompt_length(prompt) if prompt and not self.spec.pooling.include_prompt else 0

    def encode_iter(self, texts: Iterable[str], *, chunk_size: int = 4096, **options) -> Iterator[np.ndarray]:
        """Embeds a stream of texts chunk by chunk, yielding one [<=chunk_size, d] array per chunk in order;
        memory stays bounded by the chunk, whatever the stream's length."""
        chunk_size = positive_int(chunk_size, "chunk_size")
        iterator = iter(texts)
        while chunk := list(itertools.islice(iterator, chunk_size)):
            yield self.encode(chunk, **options)

    def similarity(self, a, b) -> np.ndarray:
        """Pairwise scores [len(a), len(b)] with the model's similarity function (higher is closer)."""
        a = torch.as_tensor(np.atleast_2d(np.asarray(a, dtype=np.float32)))
        b = torch.as_tensor(np.atleast_2d(np.asarray(b, dtype=np.float32)))
        for name, x in (("a", a), ("b", b)):
            if x.dim() != 2:
                raise ValueError(f"similarity: {name} must be one vector or a [n, d] matrix, got shape {list(x.shape)}")
        if a.shape[1] != b.shape[1]:
            raise ValueError(f"similarity: dimensions differ ({a.shape[1]} vs {b.shape[1]})")
        name = self.similarity_fn_name
        if name == "cosine":
            scores = F.normalize(a, dim=1) @ F.normalize(b, dim=1).T
        elif name == "dot":
            scores = a @ b.T
        else:
            scores = -torch.cdist(a, b, p=2.0 if name == "euclidean" else 1.0)
        return scores.numpy()

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Token count of each text after truncation, as the model sees it."""
        return [len(ids) for ids in self.tokenizer.encode(check_texts(texts)).ids]

    def resolve_prompt(self, prompt: str | None, prompt_name: str | None) -> str:
        return resolve_prompt(self.spec.prompts, self.spec.default_prompt_name, prompt, prompt_name)

    def resolve_truncate_dim(self, truncate_dim: int | None) -> int | None:
        truncate_dim = self.spec.truncate_dim if truncate_dim is None else truncate_dim
        if truncate_dim is None:
            return None
        if isinstance(truncate_dim, bool) or not isinstance(truncate_dim, int) or not 1 <= truncate_dim <= self.full_dimension:
            raise ValueError(f"truncate_dim must be an int in [1, {self.full_dimension}], got {truncate_dim!r}")
        return None if truncate_dim == self.full_dimension else truncate_dim


def resolve_prompt(prompts: dict[str, str], default_prompt_name: str | None, prompt: str | None,
                   prompt_name: str | None) -> str:  # fmt: skip
    """The prompt text to prepend: `prompt` itself, or the model's prompt named prompt_name (default: the model's
    default_prompt_name), or none."""
    if prompt is not None and prompt_name is not None:
        raise ValueError("pass either prompt or prompt_name, not both")
    if prompt is not None:
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
        return prompt
    name = prompt_name if prompt_name is not None else default_prompt_name
    if name is None:
        return ""
    if name not in prompts:
        known = ", ".join(sorted(prompts)) or "none"
        raise KeyError(f"prompt_name {name!r} is not among the model's prompts ({known})")
    return prompts[name]


def check_text(text, where: str) -> str:
    """`text` if it is a str the tokenizer can read, else an error naming it by `where` (e.g. texts[3])."""
    if not isinstance(text, str):
        hint = ": decode it first (e.g. .decode('utf-8'))" if isinstance(text, (bytes, bytearray)) else ""
        raise TypeError(f"{where} is {type(text).__name__}, expected str{hint}")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:  # a lone surrogate: the tokenizer would refuse it without saying which text
            raise ValueError(f"{where} is not valid Unicode: character {e.start} is a lone surrogate "
                             f"(U+{ord(text[e.start]):04X}), which no encoding can represent") from None  # fmt: skip
    return text


def check_texts(texts, name: str = "texts") -> list[str]:
    if isinstance(texts, (bytes, bytearray, memoryview)):
        raise TypeError(f"{name} is {type(texts).__name__}, expected str or a sequence of str: decode it first (e.g. .decode('utf-8'))")
    if not isinstance(texts, (list, tuple)):
        try:
            texts = list(texts)
        except TypeError:
            raise TypeError(f"{name} must be a string or a sequence of strings, got {type(texts).__name__}") from None
    return [check_text(text, f"{name}[{i}]") for i, text in enumerate(texts)]


def load(name_or_path: str | Path = "all-MiniLM-L6-v2", device: str | torch.device | None = None, dtype=None, *,
         revision: str | None = None):  # fmt: skip
    """Loads a local model directory (sentence-transformers or Hugging Face layout), a bundled model by name, or a
    model by its Hugging Face Hub id (`revision`: a branch, tag or commit), downloaded once into the Hub cache.
    An embedding model gives an Embedder; a cross-encoder checkpoint (*ForSequenceClassification, or a
    sentence-transformers CrossEncoder) gives a Reranker (fastembed_rt.load_reranker also takes LLM rerankers); a
    SPLADE model (a SpladePooling module, or a *ForMaskedLM checkpoint) gives a SparseEncoder
    (fastembed_rt.load_sparse also takes BGE-M3's sparse head); a ColBERT (Stanford's HF_ColBERT, or PyLate's
    layout) gives a ColBERT (token vectors, MaxSim)."""
    from .colbert import ColBERT, is_colbert_model, load_colbert_spec
    from .reranker import Reranker, is_cross_encoder, load_reranker_spec
    from .sparse_encoder import SparseEncoder, is_sparse_model, load_sparse_spec

    root, hub = resolve_model(name_or_path, revision)
    if is_colbert_model(root):
        return ColBERT(load_colbert_spec(root, hub=hub), device=device, dtype=dtype)
    if is_cross_encoder(root):
        return Reranker(load_reranker_spec(root, hub=hub), device=device, dtype=dtype)
    if is_sparse_model(root):
        return SparseEncoder(load_sparse_spec(root, hub=hub), device=device, dtype=dtype)
    spec = load_model_spec(root)
    spec.hub = hub
    return Embedder(spec, device=device, dtype=dtype)


def load_embedder(name_or_path: str | Path = "all-MiniLM-L6-v2", device: str | torch.device | None = None, dtype=None, *,
                  revision: str | None = None, sparse: bool = False, multivector: bool = False):  # fmt: skip
    """load(), where only an embedding model will do (an Embedder; with sparse=True, a SparseEncoder too; with
    multivector=True, a ColBERT too): a reranker, or an unwanted sparse or ColBERT model, is refused, saying where
    it goes instead."""
    from .colbert import ColBERT
    from .sparse_encoder import SparseEncoder

    model = load(name_or_path, device, dtype, revision=revision)
    if isinstance(model, SparseEncoder) and not sparse:
        raise ValueError(f"{name_or_path} is a sparse (SPLADE) model: it gives sparse vectors, not dense ones; use "
                         "fastembed_rt.load_sparse (or load), fastembed-rt embed --out DIRECTORY (sparse parquet shards), "
                         "eval, or serve's /embed_sparse")  # fmt: skip
    if isinstance(model, ColBERT) and not multivector:
        raise ValueError(f"{name_or_path} is a ColBERT (late-interaction) model: it gives a vector per token, not one "
                         "per text; use fastembed_rt.load_colbert (or load), fastembed-rt embed --out DIRECTORY "
                         "(multi-vector parquet shards), eval, rerank, or serve's /embed_all and /rerank")  # fmt: skip
    if not isinstance(model, (Embedder, SparseEncoder, ColBERT)):
        raise ValueError(f"{name_or_path} is a reranker (a cross-encoder): it scores (query, document) pairs rather than "
                         "embedding texts; use fastembed_rt.load_reranker, fastembed-rt rerank, or serve it")  # fmt: skip
    return model
