"""SparseEncoder: texts in, sparse lexical vectors out (SparseEmbeddings), as sentence-transformers' SparseEncoder
computes them, through token-budget batches of packed sequences.

Three kinds of checkpoint:
- SPLADE: a BertForMaskedLM / DistilBertForMaskedLM (plain Hugging Face folder, or sentence-transformers'
  MLMTransformer / fill-mask Transformer + SpladePooling), weights = pooled log1p(relu(MLM logits));
- inference-free SPLADE: a sentence-transformers Router whose query route is a SparseStaticEmbedding (queries are
  the tokenizer and a weight per token from the file: no model runs) and whose document route is SPLADE;
- BGE-M3's sparse head (sparse_linear.pt beside an XLM-R checkpoint): relu(linear(hidden)) per distinct token.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from .batching import DEFAULT_MAX_BATCH_SEQUENCES, iter_batches
from .engine import INT8, check_texts, resolve_device, resolve_dtype, resolve_prompt, warn_truncated
from .hub import HubModel
from .loading import max_sequence_length, read_json, read_tokenizer, resolve_model
from .models.registry import architecture, build_model
from .models.sparse_heads import masked_lm_head, token_weight_head
from .ops.reference import SPLADE_ACTIVATIONS, SPLADE_POOLINGS
from .sparse import SparseEmbeddings, check_max_active_dims
from .tokenization import TextTokenizer
from .weights import load_weights

_MLM_MODULES = ("MLMTransformer", "Transformer")
BGE_M3_SPARSE_FILE = "sparse_linear.pt"


@dataclass
class StaticQueryEncoder:
    """SparseStaticEmbedding: a query's vector is the weight of each distinct token it holds (no special tokens)."""

    tokenizer: TextTokenizer
    weights: np.ndarray  # float32 [vocab]

    def encode(self, texts: Sequence[str]) -> tuple[SparseEmbeddings, list[bool]]:
        """The texts' vectors, and per text whether it was longer than the limit (and cut at its end)."""
        encodings, _ = self.tokenizer.encodings(self.tokenizer.prepare(texts), add_special_tokens=False)
        rows = []
        for e in encodings:
            ids = np.unique(np.asarray(e.ids, dtype=np.int64))
            values = self.weights[ids]
            rows.append((ids[values != 0], values[values != 0]))
        return SparseEmbeddings.from_rows(rows, len(self.weights)), [bool(e.overflowing) for e in encodings]


@dataclass
class SparseSpec:
    path: Path
    config: dict
    tokenizer: object  # tokenizers.Tokenizer
    weights: dict[str, torch.Tensor]
    max_seq_length: int
    head: str  # "splade" or "bge-m3"
    pooling: str = "max"
    activation: str = "relu"
    do_lower_case: bool = False
    sparse_linear: dict | None = None  # BGE-M3's sparse_linear.pt state dict
    query: StaticQueryEncoder | None = None  # the inference-free query route
    default_route: str = "document"
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None
    max_active_dims: int | None = None
    hub: HubModel | None = None


def _module_kinds(modules: list) -> list[str]:
    return [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]


def _router(root: Path, modules: list) -> tuple[list[tuple[str, Path]], Path | None, str]:
    """A Router's document route as (kind, folder) pairs, its SparseStaticEmbedding query folder (or None), and
    its default route."""
    path = root / modules[0].get("path", "")
    config = read_json(path / "router_config.json")
    structure, types = config.get("structure") or {}, config.get("types") or {}
    kinds = {name: str(kind).rsplit(".", 1)[-1] for name, kind in types.items()}
    if "document" not in structure:
        raise ValueError(f"{path / 'router_config.json'}: a sparse Router needs a 'document' route; it has {sorted(structure)}")
    document = [(kinds.get(name, "?"), path / name) for name in structure["document"]]
    query = structure.get("query", structure["document"])
    static = None
    if query != structure["document"]:
        if [kinds.get(name) for name in query] != ["SparseStaticEmbedding"]:
            raise ValueError(f"{path / 'router_config.json'}: unsupported query route {query}: fastembed_rt runs a "
                             "SparseStaticEmbedding query route (inference-free SPLADE) or the document route itself")  # fmt: skip
        static = path / query[0]
    default = (config.get("parameters") or {}).get("default_route") or "document"
    return document, static, default


def _static_query(folder: Path, max_length: int) -> StaticQueryEncoder:
    weights = load_weights(folder).get("weight")
    if weights is None or weights.dim() != 1:
        raise ValueError(f"{folder}: SparseStaticEmbedding needs a 1-D 'weight' tensor in model.safetensors")
    tokenizer = read_tokenizer(folder)
    tokenizer.no_padding()
    tokenizer_config = read_json(folder / "tokenizer_config.json", required=False) or {}
    limit = tokenizer_config.get("model_max_length")
    limit = int(limit) if isinstance(limit, (int, float)) and 0 < limit < 1_000_000 else max_length
    tokenizer.enable_truncation(max_length=limit)
    if tokenizer.get_vocab_size(with_added_tokens=True) > weights.shape[0]:
        raise ValueError(f"{folder}: the tokenizer has {tokenizer.get_vocab_size(with_added_tokens=True)} tokens, "
                         f"the weights only {weights.shape[0]}")  # fmt: skip
    # no do_lower_case here: sentence-transformers reads this tokenizer as is (its normalizer lowercases if need be)
    return StaticQueryEncoder(TextTokenizer(tokenizer, limit), weights.float().numpy().copy())


def load_head_file(path: Path) -> dict:
    """A head's state dict from a .pt file (BGE-M3's sparse_linear.pt, colbert_linear.pt), read weights-only: no
    pickled code runs."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle and zip errors name neither the file nor the cause plainly
        raise ValueError(f"{path}: not a weights-only state dict ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    return state


def is_sparse_model(root: Path) -> bool:
    """Whether a model folder holds a SPLADE model that load() should return as a SparseEncoder: a SpladePooling
    module (directly or in a Router), or a plain *ForMaskedLM checkpoint."""
    modules = read_json(root / "modules.json", required=False) or []
    kinds = _module_kinds(modules)
    if kinds == ["Router"]:
        config = read_json(root / modules[0].get("path", "") / "router_config.json", required=False) or {}
        return any(str(t).endswith("SpladePooling") for t in (config.get("types") or {}).values())
    if modules:
        return "SpladePooling" in kinds
    config = read_json(root / "config.json", required=False) or {}
    return any(str(a).endswith("ForMaskedLM") for a in config.get("architectures") or [])


def load_sparse_spec(name_or_path: str | Path, revision: str | None = None, *, hub: HubModel | None = None) -> SparseSpec:
    root, resolved_hub = resolve_model(name_or_path, revision)
    modules = read_json(root / "modules.json", required=False) or []
    kinds = _module_kinds(modules)
    query_folder, default_route = None, "document"
    if kinds == ["Router"]:
        document, query_folder, default_route = _router(root, modules)
    else:
        document = [(kind, root / m.get("path", "")) for kind, m in zip(kinds, modules)]
    transformer = next((folder for kind, folder in document if kind in _MLM_MODULES), root)
    pooling_folder = next((folder for kind, folder in document if kind == "SpladePooling"), None)
    config = read_json(transformer / "config.json")
    architecture(config)  # an unsupported backbone is refused before anything heavy is read
    bge_m3 = pooling_folder is None and (root / BGE_M3_SPARSE_FILE).is_file()
    names = [str(a) for a in config.get("architectures") or []]
    if not bge_m3 and pooling_folder is None and not any(a.endswith("ForMaskedLM") for a in names):
        raise ValueError(f"{root}: not a sparse model: no SpladePooling module, no *ForMaskedLM checkpoint "
                         f"(architectures {names or 'not given'}) and no {BGE_M3_SPARSE_FILE}")  # fmt: skip
    pooling, activation = "max", "relu"
    if pooling_folder is not None:
        unsupported = [kind for kind, _ in document if kind not in (*_MLM_MODULES, "SpladePooling")]
        if unsupported:
            raise ValueError(f"{root}: unsupported modules {unsupported} in a SPLADE model; supported: "
                             f"{', '.join(_MLM_MODULES)} and SpladePooling")  # fmt: skip
        pooling_config = read_json(pooling_folder / "config.json")
        pooling = pooling_config.get("pooling_strategy", "max")
        activation = pooling_config.get("activation_function", "relu")
        where = pooling_folder / "config.json"
        if pooling not in SPLADE_POOLINGS:
            raise ValueError(f"{where}: unsupported pooling_strategy {pooling!r}; supported: {', '.join(SPLADE_POOLINGS)}")
        if activation not in SPLADE_ACTIVATIONS:
            raise ValueError(f"{where}: unsupported activation_function {activation!r}; supported: {', '.join(SPLADE_ACTIVATIONS)}")
        dimension = pooling_config.get("embedding_dimension", pooling_config.get("word_embedding_dimension"))
        if dimension is not None and dimension != config.get("vocab_size"):
            raise ValueError(f"{where}: embedding_dimension {dimension} differs from the vocabulary ({config.get('vocab_size')})")
    st_config = read_json(transformer / "sentence_bert_config.json", required=False) or {}
    st_model_config = read_json(root / "config_sentence_transformers.json", required=False) or {}
    tokenizer_config = read_json(transformer / "tokenizer_config.json", required=False) or {}
    max_length = max_sequence_length(config, st_config, tokenizer_config)
    tokenizer = read_tokenizer(transformer)
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_length)
    sparse_linear = load_head_file(root / BGE_M3_SPARSE_FILE) if bge_m3 else None
    max_active_dims = st_model_config.get("max_active_dims")
    if max_active_dims is not None:
        check_max_active_dims(max_active_dims)
    return SparseSpec(
        path=root, config=config, tokenizer=tokenizer, weights=load_weights(transformer), max_seq_length=max_length,
        head="bge-m3" if bge_m3 else "splade", pooling=pooling, activation=activation,
        do_lower_case=bool(st_config.get("do_lower_case", False)), sparse_linear=sparse_linear,
        query=_static_query(query_folder, max_length) if query_folder is not None else None, default_route=default_route,
        prompts=dict(st_model_config.get("prompts") or {}), default_prompt_name=st_model_config.get("default_prompt_name"),
        max_active_dims=max_active_dims, hub=hub or resolved_hub,
    )  # fmt: skip


class SparseEncoder:
    """A loaded sparse model. Build one with fastembed_rt.load() (SPLADE) or fastembed_rt.load_sparse()."""

    similarity_fn_name = "dot"

    def __init__(self, spec: SparseSpec, device: str | torch.device | None = None, dtype=None, *,
                 max_active_dims: int | None = None):  # fmt: skip
        self.spec = dataclasses.replace(spec, weights={}, sparse_linear=None)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype)
        self.int8 = dtype == INT8
        if max_active_dims is not None:
            check_max_active_dims(max_active_dims)
        self.max_active_dims = max_active_dims if max_active_dims is not None else spec.max_active_dims
        self.model = build_model(spec.config, spec.weights, self.device, self.dtype, int8=self.int8)
        self.max_seq_length = min(spec.max_seq_length, self.model.max_positions)
        spec.tokenizer.enable_truncation(max_length=self.max_seq_length)
        self.tokenizer = TextTokenizer(spec.tokenizer, self.max_seq_length, spec.do_lower_case)
        vocab = spec.config["vocab_size"]
        if spec.head == "bge-m3":
            special = [spec.tokenizer.token_to_id(t) for t in ("<s>", "</s>", "<pad>", "<unk>", "[CLS]", "[SEP]", "[PAD]", "[UNK]")]
            self.head = token_weight_head(spec.sparse_linear, self.model.config.hidden_size, vocab,
                                          [i for i in special if i is not None], self.device,
                                          str(spec.path / BGE_M3_SPARSE_FILE))  # fmt: skip
        else:
            self.head = masked_lm_head(spec.config, spec.weights, self.device, self.dtype, self.int8, spec.pooling, spec.activation)
        self.dimension = vocab

    @property
    def query_is_inference_free(self) -> bool:
        return self.spec.query is not None

    def encode(
        self,
        texts: str | Sequence[str],
        *,
        task: str | None = None,
        prompt: str | None = None,
        prompt_name: str | None = None,
        max_active_dims: int | None = None,
        batch_tokens: int | None = None,
        max_batch_sequences: int = DEFAULT_MAX_BATCH_SEQUENCES,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> SparseEmbeddings:
        """Sparse vectors of texts in input order (a single string gives one vector). task "query" or "document"
        picks the Router's route (default: the model's default route); max_active_dims keeps the largest weights
        of each vector (default: the model's); batch_tokens caps the packed tokens of a batch."""
        texts = check_texts([texts] if isinstance(texts, str) else texts)
        if task not in (None, "query", "document"):
            raise ValueError(f"task must be 'query' or 'document', got {task!r}")
        if max_active_dims is not None:
            check_max_active_dims(max_active_dims)
        keep = max_active_dims if max_active_dims is not None else self.max_active_dims
        prompt = self.resolve_prompt(prompt, prompt_name)
        if prompt:
            texts = [prompt + t for t in texts]
        if (task or self.spec.default_route) == "query" and self.spec.query is not None:
            out, overflowed = self.spec.query.encode(texts)
            warn_truncated(sum(overflowed), len(texts), self.max_seq_length)
            if on_batch is not None:
                on_batch(len(texts), 0)
            return out if keep is None else out.prune(keep)
        tokenized = self.tokenizer.encode(texts)
        warn_truncated(tokenized.truncated, len(texts), self.max_seq_length)
        return self.embed_token_ids(tokenized.ids, max_active_dims=keep, batch_tokens=batch_tokens,
                                    max_batch_sequences=max_batch_sequences, on_batch=on_batch)  # fmt: skip

    def encode_query(self, texts, **options) -> SparseEmbeddings:
        """encode() on the query route, with the model's "query" prompt where it has one (sentence-transformers)."""
        return self._encode_route("query", texts, options)

    def encode_document(self, texts, **options) -> SparseEmbeddings:
        """encode() on the document route, with the model's "document" prompt where it has one."""
        return self._encode_route("document", texts, options)

    def _encode_route(self, task: str, texts, options: dict) -> SparseEmbeddings:
        if options.get("prompt") is None and options.get("prompt_name") is None and task in self.spec.prompts:
            options["prompt_name"] = task
        return self.encode(texts, task=task, **options)

    def embed_token_ids(self, ids: Sequence[Sequence[int]], *, max_active_dims: int | None = None,
                        batch_tokens: int | None = None, max_batch_sequences: int = DEFAULT_MAX_BATCH_SEQUENCES,
                        on_batch: Callable[[int, int], None] | None = None) -> SparseEmbeddings:  # fmt: skip
        """The model on already tokenized texts: sparse vectors in input order."""
        parts, order = [], []
        for indices, batch in iter_batches(ids, self.device, batch_tokens=batch_tokens, max_batch_sequences=max_batch_sequences):
            parts.append(self.embed_batch(batch, max_active_dims=max_active_dims))
            order.append(indices)
            if on_batch is not None:
                on_batch(len(indices), batch.num_tokens)
        batched = SparseEmbeddings.concatenate(parts, self.dimension)
        return batched[np.argsort(np.concatenate(order), kind="stable")] if parts else batched  # back in input order

    def _term_weights(self, batch):
        """One packed batch through the model and the sparse head: SPLADE's dense [num_seqs, vocab] tensor, or
        BGE-M3's (row, token id, weight) triples (its 250,002-term vocabulary is never made dense)."""
        batch = batch.to(self.device)
        with torch.inference_mode():
            hidden = self.model.forward(batch.input_ids, batch.cu_seqlens, batch.max_seqlen)
            if self.spec.head == "bge-m3":
                return tuple(t.cpu() for t in self.head(hidden, batch.cu_seqlens, batch.input_ids))
            return self.head(hidden, batch.cu_seqlens).float().cpu()

    def embed_batch(self, batch, *, max_active_dims: int | None = None) -> SparseEmbeddings:
        """One packed batch's sparse vectors."""
        weights = self._term_weights(batch)
        if isinstance(weights, torch.Tensor):
            return SparseEmbeddings.from_dense(weights, max_active_dims)
        rows, cols, values = weights
        counts = torch.bincount(rows, minlength=len(batch.cu_seqlens) - 1).numpy()
        out = SparseEmbeddings(np.concatenate([[0], np.cumsum(counts)]), cols.numpy(), values.numpy(), self.dimension)
        return out if max_active_dims is None else out.prune(max_active_dims)

    def dense_batch(self, batch) -> np.ndarray:
        """One packed batch's term weights as rows float32 [num_seqs, vocab] (the server batcher's rows)."""
        weights = self._term_weights(batch)
        if isinstance(weights, torch.Tensor):
            return weights.numpy()
        rows, cols, values = weights
        out = np.zeros((len(batch.cu_seqlens) - 1, self.dimension), dtype=np.float32)
        out[rows.numpy(), cols.numpy()] = values.numpy()
        return out

    def prompt_skip(self, prompt: str) -> int:
        """0: SPLADE pools over every token, a prompt's included (as sentence-transformers does)."""
        return 0

    def decode(self, embeddings: SparseEmbeddings, top_k: int | None = None) -> list[list[tuple[str, float]]]:
        """Each vector as (token, weight) pairs, largest weight first (ties to the lower id), at most top_k."""
        if top_k is not None:
            check_max_active_dims(top_k)
        out = []
        for idx, val in embeddings:
            order = np.argsort(-val, kind="stable")[:top_k]
            out.append([(self.spec.tokenizer.id_to_token(int(idx[j])), float(val[j])) for j in order])
        return out

    def similarity(self, a: SparseEmbeddings, b: SparseEmbeddings) -> np.ndarray:
        """Dot products [len(a), len(b)]."""
        return a.dot(b)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(ids) for ids in self.tokenizer.encode(check_texts(texts)).ids]

    def resolve_prompt(self, prompt: str | None, prompt_name: str | None) -> str:
        return resolve_prompt(self.spec.prompts, self.spec.default_prompt_name, prompt, prompt_name)


def load_sparse(name_or_path: str | Path = "", device: str | torch.device | None = None, dtype=None, *,
                revision: str | None = None, max_active_dims: int | None = None) -> SparseEncoder:  # fmt: skip
    """A sparse model: SPLADE (plain *ForMaskedLM or sentence-transformers SparseEncoder folders, inference-free
    Routers included) or BGE-M3's sparse head (a folder with sparse_linear.pt)."""
    return SparseEncoder(load_sparse_spec(name_or_path, revision), device=device, dtype=dtype, max_active_dims=max_active_dims)
