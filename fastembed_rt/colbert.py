"""ColBERT: texts in, one L2-normalized vector per token out (MultiVectorEmbeddings), as PyLate computes them, and
late-interaction (MaxSim) scores between queries and documents.

Two checkpoint layouts:
- Stanford's HF_ColBERT (colbert-ir/colbertv2.0, answerai-colbert-small-v1): a BERT with `linear` (no bias) in the
  same file, settings in artifact.metadata, markers [unused0] / [unused1];
- PyLate's sentence-transformers layout: Transformer + pylate Dense module(s), settings in
  config_sentence_transformers.json (query_prefix, document_prefix, query_length, document_length,
  attend_to_expansion_tokens, skiplist_words, do_query_expansion).

Texts are tokenized to length - 1, the marker goes after the first token ([CLS]); queries are expanded to
query_length with the mask token, and expansion tokens have outputs but are keys of no query unless the model
attends to them (ops.attention's key_lengths: a query's keys end at its last token that is not an expansion token,
its [SEP]). Documents drop skiplist tokens (punctuation) from their outputs.
"""

from __future__ import annotations

import dataclasses
import inspect
import string
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import ops
from .batching import DEFAULT_MAX_BATCH_SEQUENCES, iter_batches
from .engine import INT8, TruncationWarning, check_texts, resolve_device, resolve_dtype, resolve_prompt
from .hub import HubModel
from .loading import max_sequence_length, read_json, read_tokenizer, resolve_model
from .models.registry import architecture, build_model
from .multivector import MultiVectorEmbeddings
from .pooling import Dense
from .tokenization import PackedBatch, TextTokenizer, clone_tokenizer
from .validation import positive_int
from .weights import load_weights, shape_problem

# PyLate's defaults where a checkpoint says nothing.
DEFAULT_QUERY_LENGTH, DEFAULT_DOCUMENT_LENGTH = 32, 180
STANFORD_MARKERS = ("[unused0]", "[unused1]")
PYLATE_MARKERS = ("[Q] ", "[D] ")


@dataclass
class ColBERTSpec:
    path: Path
    config: dict
    tokenizer: object  # tokenizers.Tokenizer
    weights: dict[str, torch.Tensor]
    projection: list[Dense]
    max_seq_length: int  # the backbone's limit
    query_prefix_id: int | None
    document_prefix_id: int | None
    query_length: int
    document_length: int
    expansion_id: int | None  # the token queries are expanded with (mask, else EOS, else pad)
    do_query_expansion: bool = True
    attend_to_expansion_tokens: bool = False
    skiplist: frozenset[int] = frozenset()
    do_lower_case: bool = False
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None
    hub: HubModel | None = None


def is_colbert_model(root: Path) -> bool:
    """A Stanford HF_ColBERT checkpoint, or a PyLate folder (a pylate Dense module, or model_type ColBERT)."""
    config = read_json(root / "config.json", required=False) or {}
    if "HF_ColBERT" in (config.get("architectures") or []):
        return True
    modules = read_json(root / "modules.json", required=False) or []
    if any(str(m.get("type", "")).startswith("pylate.") for m in modules):
        return True
    st_config = read_json(root / "config_sentence_transformers.json", required=False) or {}
    return st_config.get("model_type") == "ColBERT"


def _token_id(tokenizer, token: str, where: str) -> int:
    token_id = tokenizer.token_to_id(token)
    if token_id is None:
        raise ValueError(f"{where}: the tokenizer has no token {token!r}")
    return token_id


def _special_token(tokenizer_config: dict, name: str, tokenizer, fallbacks: Sequence[str]) -> int | None:
    """The id of tokenizer_config's `name` (mask_token, eos_token, ...), else of the first fallback in the vocabulary."""
    value = tokenizer_config.get(name)
    value = value.get("content") if isinstance(value, dict) else value
    for token in ([value] if isinstance(value, str) else []) + list(fallbacks):
        if (token_id := tokenizer.token_to_id(token)) is not None:
            return token_id
    return None


def _stanford_projection(root: Path, weights: dict, hidden: int) -> Dense:
    weight = weights.get("linear.weight")
    if weight is None:
        raise ValueError(f"{root}: an HF_ColBERT checkpoint needs its projection 'linear.weight'")
    if (problem := shape_problem("linear.weight", weight, (None, hidden))) is not None:
        raise ValueError(f"{root}: {problem}")
    return Dense(weight, weights.get("linear.bias"))


def load_colbert_spec(name_or_path: str | Path, revision: str | None = None, *, hub: HubModel | None = None) -> ColBERTSpec:
    root, resolved_hub = resolve_model(name_or_path, revision)
    modules = read_json(root / "modules.json", required=False) or []
    transformer, projection_folders = root, []
    for m in modules:
        kind = str(m.get("type", "")).rsplit(".", 1)[-1]
        folder = root / m.get("path", "")
        if kind == "Transformer":
            transformer = folder
        elif kind == "Dense":
            projection_folders.append(folder)
        else:
            raise ValueError(f"{root / 'modules.json'}: unsupported module {m.get('type')!r} in a ColBERT model; "
                             "supported: Transformer and Dense")  # fmt: skip
    config = read_json(transformer / "config.json")
    stanford = "HF_ColBERT" in (config.get("architectures") or [])
    architecture(config)  # an unsupported backbone is refused before anything heavy is read
    weights = load_weights(transformer)
    hidden = config.get("hidden_size") or config.get("dim")
    if stanford:
        projection = [_stanford_projection(transformer, weights, hidden)]
        settings = read_json(root / "artifact.metadata", required=False) or {}
        settings = {"query_prefix": settings.get("query_token_id", STANFORD_MARKERS[0]),
                    "document_prefix": settings.get("doc_token_id", STANFORD_MARKERS[1]),
                    "query_length": settings.get("query_maxlen"), "document_length": settings.get("doc_maxlen"),
                    "attend_to_expansion_tokens": settings.get("attend_to_mask_tokens")}  # fmt: skip
    else:
        projection = [Dense.load(folder) for folder in projection_folders]
        if not projection:
            raise ValueError(f"{root}: a ColBERT model needs a projection (a Dense module, or HF_ColBERT's linear)")
        settings = read_json(root / "config_sentence_transformers.json", required=False) or {}
    st_model_config = read_json(root / "config_sentence_transformers.json", required=False) or {}
    st_config = read_json(transformer / "sentence_bert_config.json", required=False) or {}
    tokenizer_config = read_json(transformer / "tokenizer_config.json", required=False) or {}
    tokenizer = read_tokenizer(transformer)
    tokenizer.no_padding()
    # PyLate sets the transformer's max_seq_length per call (query_length or document_length): only the position
    # table limits it.
    max_length = max_sequence_length(config, {}, {})
    where = root / ("artifact.metadata" if stanford else "config_sentence_transformers.json")

    def prefix_id(key: str, default: str) -> int | None:
        prefix = settings.get(key)
        prefix = default if prefix is None else prefix
        return _token_id(tokenizer, prefix, f"{where}: {key}") if prefix != "" else None

    def length(key: str, default: int) -> int:
        value = settings.get(key)
        value = default if value is None else value
        if not isinstance(value, int) or value < 2:
            raise ValueError(f"{where}: {key} must be an int >= 2, got {value!r}")
        return value

    defaults = STANFORD_MARKERS if stanford else PYLATE_MARKERS
    unk = _special_token(tokenizer_config, "unk_token", tokenizer, ("[UNK]", "<unk>"))
    words = settings.get("skiplist_words")
    words = list(string.punctuation) if words is None else words
    # PyLate looks each word up as one token; a word the vocabulary lacks becomes the unknown token's id.
    skiplist = frozenset(i for i in (tokenizer.token_to_id(w) for w in words) if i is not None)
    if unk is not None and any(tokenizer.token_to_id(w) is None for w in words):
        skiplist |= {unk}
    expansion = settings.get("do_query_expansion")
    attend = settings.get("attend_to_expansion_tokens")
    return ColBERTSpec(
        path=root, config=config, tokenizer=tokenizer, weights=weights, projection=projection, max_seq_length=max_length,
        query_prefix_id=prefix_id("query_prefix", defaults[0]), document_prefix_id=prefix_id("document_prefix", defaults[1]),
        query_length=length("query_length", DEFAULT_QUERY_LENGTH), document_length=length("document_length", DEFAULT_DOCUMENT_LENGTH),
        expansion_id=next((i for i in (_special_token(tokenizer_config, "mask_token", tokenizer, ("[MASK]", "<mask>")),
                                        _special_token(tokenizer_config, "eos_token", tokenizer, ()),
                                        _special_token(tokenizer_config, "pad_token", tokenizer, ())) if i is not None), None),
        do_query_expansion=True if expansion is None else bool(expansion),
        attend_to_expansion_tokens=bool(attend) and (expansion is None or bool(expansion)),
        skiplist=skiplist, do_lower_case=bool(st_config.get("do_lower_case", False)),
        prompts=dict(st_model_config.get("prompts") or {}), default_prompt_name=st_model_config.get("default_prompt_name"),
        hub=hub or resolved_hub,
    )  # fmt: skip


@dataclass
class _Tokenized:
    ids: list[list[int]]
    overflowed: list[bool]  # per text: longer than the query or document length, so it lost tokens

    @property
    def truncated(self) -> int:
        return sum(self.overflowed)


class ColBERT:
    """A loaded late-interaction model. Build one with fastembed_rt.load() or fastembed_rt.load_colbert()."""

    similarity_fn_name = "MaxSim"

    def __init__(self, spec: ColBERTSpec, device: str | torch.device | None = None, dtype=None):
        self.spec = dataclasses.replace(spec, weights={}, projection=[])  # the model holds what it uses (copies)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype)
        self.int8 = dtype == INT8
        self.model = build_model(spec.config, spec.weights, self.device, self.dtype, int8=self.int8)
        self.max_seq_length = min(spec.max_seq_length, self.model.max_positions)
        # PyLate tokenizes to these lengths whatever the position table holds (and fails on longer texts): capped here
        self.query_length = min(spec.query_length, self.max_seq_length)
        self.document_length = min(spec.document_length, self.max_seq_length)
        if spec.do_query_expansion and spec.expansion_id is None:
            raise ValueError(f"{spec.path}: query expansion needs a mask, EOS or pad token, and the tokenizer has none")
        needs_key_lengths = spec.do_query_expansion and not spec.attend_to_expansion_tokens
        if needs_key_lengths and "key_lengths" not in inspect.signature(self.model.forward).parameters:
            raise ValueError(f"{spec.path}: queries expanded without attention to the expansion tokens need a backbone "
                             f"whose attention takes key lengths (BERT family, ModernBERT); "
                             f"{spec.config.get('model_type')!r} has none")  # fmt: skip
        self.projection = [layer.to(self.device) for layer in spec.projection]
        width = self.model.config.hidden_size
        for i, layer in enumerate(self.projection):
            if layer.weight.shape[1] != width:
                raise ValueError(f"{spec.path}: projection {i} takes {layer.weight.shape[1]} features, but gets {width}")
            width = layer.weight.shape[0]
        self.dimension = width
        # One tokenizer per side, each with its own fixed truncation, so that threads may tokenize both at once.
        self._tokenizers = {is_query: TextTokenizer(clone_tokenizer(spec.tokenizer, self._limit(is_query)), self._limit(is_query))
                            for is_query in (True, False)}  # fmt: skip
        self._skiplist = torch.tensor(sorted(spec.skiplist), dtype=torch.int64)

    # -- tokenization, as PyLate's ColBERT.tokenize -------------------------------------------------------------

    def _limit(self, is_query: bool) -> int:
        """Tokens a text keeps before its marker is inserted."""
        length = self.query_length if is_query else self.document_length
        return length - 1 if (self.spec.query_prefix_id if is_query else self.spec.document_prefix_id) is not None else length

    def tokenize(self, texts: Sequence[str], is_query: bool) -> _Tokenized:
        s = self.spec
        length = self.query_length if is_query else self.document_length
        prefix = s.query_prefix_id if is_query else s.document_prefix_id
        prepared = [t.lower() for t in texts] if s.do_lower_case else list(texts)
        encodings, _ = self._tokenizers[is_query].encodings(prepared)  # a long text's head only, as for embeddings
        ids = []
        expand = is_query and s.do_query_expansion
        for e in encodings:
            seq = list(e.ids)
            if prefix is not None:
                seq.insert(min(1, len(seq)), prefix)
            if expand and len(seq) < length:
                seq.extend([s.expansion_id] * (length - len(seq)))
            ids.append(seq)
        return _Tokenized(ids, [bool(e.overflowing) for e in encodings])

    # -- encoding ----------------------------------------------------------------------------------------------

    def encode(
        self,
        texts: str | Sequence[str],
        *,
        is_query: bool = False,
        prompt: str | None = None,
        prompt_name: str | None = None,
        batch_tokens: int | None = None,
        max_batch_sequences: int = DEFAULT_MAX_BATCH_SEQUENCES,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> MultiVectorEmbeddings:
        """Token vectors of texts in input order, each text's [tokens, dim] (L2-normalized per token, as PyLate's
        normalize_embeddings=True): queries (is_query=True) padded to query_length with expansion tokens,
        documents without their skiplist (punctuation) tokens. A single string gives a one-text result."""
        texts = check_texts([texts] if isinstance(texts, str) else texts)
        prompt = self.resolve_prompt(prompt, prompt_name)
        if prompt:
            texts = [prompt + t for t in texts]
        tokenized = self.tokenize(texts, is_query)
        if tokenized.truncated and not is_query:
            warnings.warn(f"{tokenized.truncated} of {len(texts)} documents exceeded document_length="
                          f"{self.document_length} tokens and were truncated", TruncationWarning, stacklevel=2)  # fmt: skip
        return self.embed_token_ids(tokenized.ids, is_query=is_query, batch_tokens=batch_tokens,
                                    max_batch_sequences=max_batch_sequences, on_batch=on_batch)  # fmt: skip

    def encode_query(self, texts, **options) -> MultiVectorEmbeddings:
        return self.encode(texts, is_query=True, **options)

    def encode_document(self, texts, **options) -> MultiVectorEmbeddings:
        return self.encode(texts, is_query=False, **options)

    def embed_token_ids(self, ids: Sequence[Sequence[int]], *, is_query: bool, batch_tokens: int | None = None,
                        max_batch_sequences: int = DEFAULT_MAX_BATCH_SEQUENCES,
                        on_batch: Callable[[int, int], None] | None = None) -> MultiVectorEmbeddings:  # fmt: skip
        """The model on tokenized texts (as tokenize gives them), batches put back in input order."""
        parts, order = [], []
        for indices, batch in iter_batches(ids, self.device, batch_tokens=batch_tokens, max_batch_sequences=max_batch_sequences):
            parts.append(self.embed_batch(batch, is_query))
            order.append(indices)
            if on_batch is not None:
                on_batch(len(indices), batch.num_tokens)
        if not parts:
            return MultiVectorEmbeddings(np.zeros((0, self.dimension), np.float32), np.zeros(1, np.int64))
        packed = MultiVectorEmbeddings.concatenate(parts)
        return packed.take(np.argsort(np.concatenate(order), kind="stable"))

    def key_lengths(self, batch: PackedBatch, is_query: torch.Tensor) -> torch.Tensor | None:
        """Attention keys per sequence: a query expanded without attention to its expansion tokens keys up to its
        last other token; every other sequence keys all its tokens. None where all tokens are keys."""
        s = self.spec
        if not s.do_query_expansion or s.attend_to_expansion_tokens or not bool(is_query.any()):
            return None
        ids, cu = batch.input_ids.cpu(), batch.cu_seqlens.cpu().long()
        lengths = cu[1:] - cu[:-1]
        owner = torch.repeat_interleave(torch.arange(len(lengths)), lengths)
        position = torch.arange(len(ids)) - cu[:-1][owner]
        real = (ids != s.expansion_id) | ~is_query[owner]
        keys = torch.zeros(len(lengths), dtype=torch.int64).scatter_reduce(0, owner, torch.where(real, position + 1, 0), "amax")
        keys = torch.where(lengths > 0, keys.clamp(min=1), 0)  # a query of expansion tokens alone keys its first
        return None if bool((keys == lengths).all()) else keys.to(torch.int32)

    def embed_batch(self, batch: PackedBatch, is_query: bool | torch.Tensor) -> MultiVectorEmbeddings:
        """One packed batch, whose sequences are queries or documents (one flag, or one per sequence): the backbone
        (an expanded query's keys end before its expansion tokens), the projection, the skiplist for documents,
        and per-token L2 normalization."""
        batch = batch.to(self.device)
        lengths = (batch.cu_seqlens[1:] - batch.cu_seqlens[:-1]).cpu().long()
        if not isinstance(is_query, torch.Tensor):
            is_query = torch.full((len(lengths),), bool(is_query))
        is_query = is_query.cpu().bool()
        key_lengths = self.key_lengths(batch, is_query)
        with torch.inference_mode():
            if key_lengths is None:
                hidden = self.model.forward(batch.input_ids, batch.cu_seqlens, batch.max_seqlen)
            else:
                hidden = self.model.forward(batch.input_ids, batch.cu_seqlens, batch.max_seqlen,
                                            key_lengths=key_lengths.to(self.device))  # fmt: skip
            x = hidden.float()
            for layer in self.projection:
                x = layer(x)
            if not bool(is_query.all()) and len(self._skiplist):
                owner = torch.repeat_interleave(torch.arange(len(lengths)), lengths)
                keep = ~torch.isin(batch.input_ids.cpu(), self._skiplist) | is_query[owner]
                x = x[keep.to(x.device)]
                lengths = torch.zeros(len(lengths), dtype=torch.int64).index_add_(0, owner, keep.long())
            x = F.normalize(x, p=2, dim=1)
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths.numpy(), out=offsets[1:])
        return MultiVectorEmbeddings(np.ascontiguousarray(x.cpu().numpy(), dtype=np.float32), offsets)

    # -- scoring -----------------------------------------------------------------------------------------------

    def similarity(self, queries, documents, int8: bool = False) -> np.ndarray:
        """MaxSim scores float32 [len(queries), len(documents)] of token vectors (MultiVectorEmbeddings, or lists of
        [tokens, dim] arrays as PyLate gives them)."""
        return maxsim_scores(queries, documents, int8=int8)

    def rank(self, query: str, documents: Sequence[str], top_k: int | None = None, return_documents: bool = False,
             batch_tokens: int | None = None) -> list[dict]:  # fmt: skip
        """Documents reranked for a query by MaxSim: [{corpus_id, score, text?}] best first (ties to the lower id),
        the shape of sentence-transformers' CrossEncoder.rank."""
        documents = check_texts(documents, "documents")
        top_k = None if top_k is None else positive_int(top_k, "top_k")
        if not documents:
            return []
        q = self.encode(check_texts([query], "query"), is_query=True, batch_tokens=batch_tokens)
        scores = self.similarity(q, self.encode(documents, batch_tokens=batch_tokens))[0]
        order = np.argsort(-scores, kind="stable")[:top_k]
        return [{"corpus_id": int(i), "score": float(scores[i]), **({"text": documents[i]} if return_documents else {})}
                for i in order]  # fmt: skip

    def count_tokens(self, texts: Sequence[str], is_query: bool = False) -> list[int]:
        return [len(ids) for ids in self.tokenize(check_texts(texts), is_query).ids]

    def resolve_prompt(self, prompt: str | None, prompt_name: str | None) -> str:
        return resolve_prompt(self.spec.prompts, self.spec.default_prompt_name, prompt, prompt_name)


def as_multivectors(x, name: str) -> MultiVectorEmbeddings:
    if isinstance(x, MultiVectorEmbeddings):
        return x
    if isinstance(x, np.ndarray) and x.ndim == 2:
        raise TypeError(f"{name}: a single [tokens, dim] array is one text; pass a list of them")
    try:
        return MultiVectorEmbeddings.from_arrays([np.asarray(a, dtype=np.float32) for a in x])
    except (TypeError, ValueError) as e:
        raise type(e)(f"{name}: {e}") from None


def maxsim_scores(queries, documents, int8: bool = False) -> np.ndarray:
    """MaxSim float32 [n queries, n documents] of two sets of token vectors (see ColBERT.similarity)."""
    q, d = as_multivectors(queries, "queries"), as_multivectors(documents, "documents")
    if q.dim != d.dim and len(q.vectors) and len(d.vectors):
        raise ValueError(f"queries have dimension {q.dim}, documents {d.dim}")
    q_tokens = torch.from_numpy(q.float_vectors())
    docs = (torch.from_numpy(d.vectors), torch.from_numpy(d.scales)) if d.scales is not None else torch.from_numpy(d.vectors)
    return ops.maxsim(q_tokens, torch.from_numpy(q.offsets), docs, torch.from_numpy(d.offsets),
                      int8=int8 or d.scales is not None).numpy()  # fmt: skip


def paired_maxsim_scores(queries, documents, query_of) -> np.ndarray:
    """MaxSim of each document with its own query, query_of[j] the index of document j's query: float32 [n documents].
    Each query meets only its own documents, not every document as maxsim_scores' grid would."""
    q, d = as_multivectors(queries, "queries"), as_multivectors(documents, "documents")
    query_of = np.asarray(query_of, dtype=np.int64)
    scores = np.zeros(len(d), np.float32)
    for i in np.unique(query_of):
        mine = np.flatnonzero(query_of == i)
        scores[mine] = maxsim_scores(q.take([i]), d.take(mine))[0]
    return scores


def load_colbert(name_or_path: str | Path, device: str | torch.device | None = None, dtype=None, *,
                 revision: str | None = None) -> ColBERT:  # fmt: skip
    """A ColBERT model: Stanford's HF_ColBERT checkpoints or PyLate's sentence-transformers folders."""
    return ColBERT(load_colbert_spec(name_or_path, revision), device=device, dtype=dtype)
