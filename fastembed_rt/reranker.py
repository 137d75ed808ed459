"""Reranker: (query, document) pairs in, relevance scores out, through token-budget batches of packed pairs.

Two kinds, told apart by the checkpoint:
- cross-encoders, *ForSequenceClassification checkpoints of any backbone we run: each pair is packed as the
  tokenizer's pair template ("[CLS] q [SEP] d [SEP]" with token types, "<s> q </s></s> d </s>"), the document
  truncated first so that the query survives; scores from the family's classification head (models.heads).
- yes/no LLM rerankers (Qwen3-Reranker), *ForCausalLM checkpoints loaded with load_reranker: each pair is
  written into the model's chat template with an instruction, scored by logit("yes") - logit("no") at its last
  token; the token ids are looked up in the tokenizer.
Scores are sentence-transformers CrossEncoder's: its activation (sigmoid for one label, identity for several,
unless the checkpoint names one; sigmoid of the yes/no log-odds, which is Qwen3-Reranker's P(yes)), or the raw
logits on request.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from .batching import DEFAULT_MAX_BATCH_SEQUENCES, run_batches
from .engine import INT8, check_text, check_texts, resolve_device, resolve_dtype
from .hub import HubModel
from .loading import max_sequence_length, read_json, read_tokenizer, resolve_model
from .models.heads import Head, classifier_head, num_labels, yes_no_head
from .models.registry import architecture, build_model
from .tokenization import CHARS_PER_KEPT_TOKEN, PackedBatch, TextTokenizer, clone_tokenizer, cut_at_word, cut_text, cut_word_dropped
from .validation import positive_int
from .weights import load_weights

# Qwen3-Reranker's prompt, as its model card writes it.
YES_NO_PREFIX = ("<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the "
                 "Instruct provided. Note that the answer can only be \"yes\" or \"no\".<|im_end|>\n<|im_start|>user\n")  # fmt: skip
YES_NO_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
DEFAULT_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
YES_NO_MAX_LENGTH = 8192  # the model card's limit; the position table allows far more than a reranker needs

# sentence-transformers' activation_fn, by the class name at the end of its dotted path.
ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "Sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "Identity": lambda x: x,
    "Tanh": np.tanh,
    "ReLU": lambda x: np.maximum(x, 0.0),
    "Softmax": lambda x: softmax(x),
}


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def best_first(scores: np.ndarray, top_k: int | None = None) -> np.ndarray:
    """Indices of `scores`, highest first and ties to the lower index: the first top_k (all when None)."""
    return np.argsort(-np.asarray(scores), kind="stable")[:top_k]


@dataclass
class RerankerSpec:
    path: Path
    config: dict
    tokenizer: object  # tokenizers.Tokenizer
    weights: dict[str, torch.Tensor]
    max_length: int
    activation: str  # a key of ACTIVATIONS
    yes_no: bool  # an LLM reranker scored by its yes/no logits
    hub: HubModel | None = None


def _transformer_dir(root: Path) -> tuple[Path, list[str]]:
    """The folder of the backbone's config and weights, and the sentence-transformers module types."""
    modules = read_json(root / "modules.json", required=False) or []
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    transformer = next((root / m.get("path", "") for m, kind in zip(modules, kinds) if kind == "Transformer"), root)
    return transformer, kinds


def is_cross_encoder(root: Path) -> bool:
    """Whether a model folder holds a reranker that load() should return: a *ForSequenceClassification
    checkpoint, or a sentence-transformers CrossEncoder (a LogitScore module)."""
    transformer, kinds = _transformer_dir(root)
    config = read_json(transformer / "config.json", required=False) or {}
    architectures = config.get("architectures") or []
    return "LogitScore" in kinds or any(str(a).endswith("ForSequenceClassification") for a in architectures)


def _activation(config: dict, st_config: dict, labels: int, yes_no: bool) -> str:
    """sentence-transformers' choice: activation_fn where the checkpoint names one, else sigmoid for one label."""
    named = (st_config.get("activation_fn") or (config.get("sentence_transformers") or {}).get("activation_fn")
             or config.get("sbert_ce_default_activation_function"))  # fmt: skip
    if isinstance(named, str) and named.startswith("torch."):  # other paths would be code: sentence-transformers ignores them too
        name = named.rsplit(".", 1)[-1]
        if name not in ACTIVATIONS:
            raise ValueError(f"unsupported activation_fn {named!r}; supported: {', '.join(ACTIVATIONS)}")
        return name
    return "Sigmoid" if labels == 1 or yes_no else "Identity"


def load_reranker_spec(name_or_path: str | Path, revision: str | None = None, *, hub: HubModel | None = None) -> RerankerSpec:
    root, resolved_hub = resolve_model(name_or_path, revision)
    transformer, kinds = _transformer_dir(root)
    config = read_json(transformer / "config.json")
    architecture(config)  # an unsupported backbone is refused before anything heavy is read
    names = [str(a) for a in config.get("architectures") or []]
    classifier = any(a.endswith("ForSequenceClassification") for a in names)
    causal = any(a.endswith("ForCausalLM") for a in names) or "LogitScore" in kinds
    if not classifier and not causal:
        raise ValueError(f"{root}: not a reranker checkpoint (architectures {names or 'not given'}): a cross-encoder "
                         "is a *ForSequenceClassification checkpoint, an LLM reranker a *ForCausalLM one")  # fmt: skip
    st_config = read_json(root / "config_sentence_transformers.json", required=False) or {}
    tokenizer_config = read_json(transformer / "tokenizer_config.json", required=False) or {}
    max_length = max_sequence_length(config, read_json(transformer / "sentence_bert_config.json", required=False) or {},
                                     tokenizer_config)  # fmt: skip
    if not classifier:
        max_length = min(max_length, YES_NO_MAX_LENGTH)
    labels = num_labels(config) if classifier else 1
    tokenizer = read_tokenizer(transformer)
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return RerankerSpec(root, config, tokenizer, load_weights(transformer), max_length,
                        _activation(config, st_config, labels, not classifier), not classifier, hub or resolved_hub)  # fmt: skip


@dataclass
class EncodedPairs:
    ids: list[list[int]]
    token_types: list[list[int]]
    overflowed: list[bool]  # per pair: the document lost tokens


class QueryTooLong(ValueError):
    """A pair's query alone leaves no room for its document within the model's limit; `index`: the pair's."""

    def __init__(self, message: str, index: int):
        super().__init__(message)
        self.index = index


class Reranker:
    """A loaded reranker. Build one with fastembed_rt.load_reranker() (or load() for a cross-encoder checkpoint)."""

    def __init__(self, spec: RerankerSpec, device: str | torch.device | None = None, dtype=None, *,
                 instruction: str | None = None, max_length: int | None = None):  # fmt: skip
        self.spec = dataclasses.replace(spec, weights={})
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype)
        self.int8 = dtype == INT8
        self.yes_no = spec.yes_no
        # int8 keeps the feed-forward input projections in float: their input (a LayerNorm output with outlier channels)
        # loses the most to per-token int8, and a ranking of close scores shows it: the lowest per-query Spearman of
        # int8 against float32 (3 ArguAna queries x 60 passages) rose from 0.989 to 0.998 on an Ice Lake Xeon, and
        # from 0.991 to 0.997 under FASTEMBED_RT_ISA=avx2
        self.model = build_model(spec.config, spec.weights, self.device, self.dtype, int8=self.int8, float_ffn_up=True)
        hidden = self.model.config.hidden_size
        self.max_length = min(spec.max_length, self.model.max_positions, max_length or spec.max_length)
        tokenizer = spec.tokenizer
        if self.yes_no:
            yes, no = tokenizer.token_to_id("yes"), tokenizer.token_to_id("no")
            if yes is None or no is None:
                raise ValueError(f"{spec.path}: the tokenizer has no single token for {'yes' if yes is None else 'no'}")
            self.head: Head = yes_no_head(spec.config, spec.weights, hidden, yes, no, self.device)
            self.labels = ["yes"]
            self.prefix_ids = tokenizer.encode(YES_NO_PREFIX, add_special_tokens=False).ids
            self.suffix_ids = tokenizer.encode(YES_NO_SUFFIX, add_special_tokens=False).ids
            if len(self.prefix_ids) + len(self.suffix_ids) >= self.max_length:
                raise ValueError(f"max_length {self.max_length} leaves no room for a pair inside the prompt template")
        else:
            self.head = classifier_head(spec.config, spec.weights, hidden, self.device)
            id2label = spec.config.get("id2label") or {}
            self.labels = [str(id2label.get(str(i), id2label.get(i, f"LABEL_{i}"))) for i in range(self.head.num_labels)]
        self.instruction = DEFAULT_INSTRUCTION if instruction is None else instruction
        self.activation = spec.activation
        self._tokenizer = clone_tokenizer(tokenizer, self._budget(), strategy="only_second")
        self._fallback = clone_tokenizer(tokenizer, self._budget())
        self._singles = TextTokenizer(self._fallback, self._budget())  # /predict's single texts: long ones read in part

    @property
    def num_labels(self) -> int:
        return self.head.num_labels

    def _budget(self) -> int:
        """Tokens the tokenizer may produce per pair: the template's own tokens come on top for yes/no models."""
        return self.max_length - (len(self.prefix_ids) + len(self.suffix_ids) if self.yes_no else 0)

    # --- text in ---

    def _texts(self, queries: Sequence[str], documents: Sequence[str], instruction: str | None):
        """What the tokenizer reads per pair: (query, document) for a cross-encoder, one prompt text for yes/no."""
        if not self.yes_no:
            return list(zip(queries, documents))
        instruction = self.instruction if instruction is None else instruction
        return [f"<Instruct>: {instruction}\n<Query>: {q}\n<Document>: {d}" for q, d in zip(queries, documents)]

    def encode_pairs(self, queries: Sequence[str], documents: Sequence[str], *, truncate: bool = False,
                     instruction: str | None = None) -> EncodedPairs:  # fmt: skip
        """Token ids and types of each pair within max_length, the document cut first. A query that leaves no room
        for its document raises QueryTooLong naming the pair, unless truncate (then the query is cut too)."""
        for name, texts in (("queries", queries), ("documents", documents)):
            for i, text in enumerate(texts):
                check_text(text, f"{name}[{i}]")
        budget = self._budget()
        limit = budget * CHARS_PER_KEPT_TOKEN  # long documents are first cut between words (see tokenization)
        cut, inside_word = list(documents), set()
        for i, d in enumerate(documents):
            if len(d) > limit:
                cut[i], inside = cut_text(d, limit, "right")
                if inside:  # no whitespace (Chinese, a URL): checked below
                    inside_word.add(i)
        queries = self._capped_queries(queries, limit, budget, truncate)
        texts = self._texts(queries, cut, instruction)
        encodings = self._encode(texts, queries, truncate, instruction)
        document = 0 if self.yes_no else 1  # the document's sequence: the end of the one prompt text, or the pair's second
        whole = [i for i, e in enumerate(encodings) if cut[i] is not documents[i]
                 and (not e.overflowing or (i in inside_word and not cut_word_dropped(e, "right", document)))]  # fmt: skip
        if whole:  # the cut lost tokens the model would have read, or may keep part of the cut word: read whole
            redo = self._encode(self._texts([queries[i] for i in whole], [documents[i] for i in whole], instruction),
                                [queries[i] for i in whole], truncate, instruction)  # fmt: skip
            for i, e in zip(whole, redo):
                encodings[i] = e
        if self.yes_no:
            ids = [self.prefix_ids + e.ids + self.suffix_ids for e in encodings]
            types = [[0] * len(x) for x in ids]
        else:
            ids, types = [e.ids for e in encodings], [e.type_ids for e in encodings]
        return EncodedPairs(ids, types, [bool(e.overflowing) for e in encodings])

    def _capped_queries(self, queries: Sequence[str], limit: int, budget: int, truncate: bool) -> list[str]:
        """Queries of more than `limit` characters cut between words to `limit`, where the cut alone already takes
        the whole budget (then the query is too long either way, and a truncated pair keeps the same first tokens):
        a 4 MB query is then not tokenized once per document. Otherwise the whole query."""
        capped = {}
        for i, query in enumerate(queries):
            if len(query) <= limit or query in capped:
                continue
            part = cut_at_word(query, limit, "right")
            if part is not None and len(self._fallback.encode(part, add_special_tokens=False).ids) >= budget:
                if not truncate:
                    raise self._too_long(i)
                capped[query] = part
        return [capped.get(q, q) for q in queries] if capped else list(queries)

    def encode_inputs(self, items: Sequence[tuple[str, ...]], *, truncate: bool = False) -> EncodedPairs:
        """TEI /predict's inputs in order: (text,) through the tokenizer's single-text template, (a, b) as pairs. An
        over-long single text raises QueryTooLong with its index, unless truncate."""
        ids: list = [None] * len(items)
        types: list = [None] * len(items)
        overflowed = [False] * len(items)
        pairs = [i for i, item in enumerate(items) if len(item) == 2]
        singles = [i for i, item in enumerate(items) if len(item) == 1]
        if pairs:
            try:
                encoded = self.encode_pairs([items[i][0] for i in pairs], [items[i][1] for i in pairs], truncate=truncate)
            except QueryTooLong as e:
                raise QueryTooLong(str(e).replace(f"pair {e.index}", f"input {pairs[e.index]}"), pairs[e.index]) from None
            for k, i in enumerate(pairs):
                ids[i], types[i], overflowed[i] = encoded.ids[k], encoded.token_types[k], encoded.overflowed[k]
        for i, encoding in zip(singles, self._singles.encodings([items[i][0] for i in singles])[0]):
            if encoding.overflowing and not truncate:
                raise QueryTooLong(f"input {i} is longer than the model's {self.max_length} tokens; shorten it or pass truncate=True", i)
            ids[i], types[i], overflowed[i] = encoding.ids, encoding.type_ids, bool(encoding.overflowing)
        return EncodedPairs(ids, types, overflowed)

    def _encode(self, texts, queries, truncate, instruction):
        if self.yes_no:  # one text per pair, cut at its end (the document); the query must fit before it
            if not truncate:
                heads = self._texts(queries, [""] * len(queries), instruction)
                for i, e in enumerate(self._fallback.encode_batch(heads)):
                    if e.overflowing:
                        raise self._too_long(i)
            return self._fallback.encode_batch(texts)
        try:
            return self._tokenizer.encode_batch(texts)
        except Exception:  # tokenizers refuses a batch where one query leaves no room, without saying which
            encodings = []
            for i, pair in enumerate(texts):
                try:
                    encodings.append(self._tokenizer.encode(*pair))
                except Exception as e:
                    if "runcation" not in str(e):  # not tokenizers' "Truncation error: ... too short ..."
                        raise
                    if not truncate:
                        raise self._too_long(i) from None
                    encodings.append(self._fallback.encode(*pair))
            return encodings

    def _too_long(self, index: int) -> QueryTooLong:
        return QueryTooLong(f"pair {index}: the query leaves no room for the document within the model's "
                            f"{self.max_length} tokens; shorten it or pass truncate=True", index)  # fmt: skip

    # --- scores out ---

    def logits_batch(self, batch: PackedBatch) -> np.ndarray:
        """One packed batch of pairs through the model and its head: float32 logits [num_pairs, num_labels]."""
        batch = batch.to(self.device)
        # token types only where the model has a second one (BERT); RoBERTa-likes, ModernBERT and LLMs read none
        types = batch.token_types if getattr(self.model, "token_type_delta", None) is not None else None
        extra = {} if types is None else {"token_types": types}
        # a head that reads one row per pair ([CLS], or an LLM's last token): the last layer computes that row alone
        wanted = self.head.pooling in ("first", "last") and getattr(self.model, "takes_rows", False)
        rows = self.head.rows(batch.cu_seqlens) if wanted else None
        if rows is not None:
            extra["rows"] = rows
        with torch.inference_mode():
            hidden = self.model.forward(batch.input_ids, batch.cu_seqlens, batch.max_seqlen, **extra)
            return self.head(hidden, batch.cu_seqlens, pooled=rows is not None).cpu().numpy()

    def logits(self, pairs: EncodedPairs, *, batch_tokens: int | None = None,
               max_batch_sequences: int = DEFAULT_MAX_BATCH_SEQUENCES,
               on_batch: Callable[[int, int], None] | None = None) -> np.ndarray:  # fmt: skip
        """Logits [n, num_labels] of encoded pairs, in order, through token-budget batches."""
        return run_batches(pairs.ids, self.logits_batch, self.num_labels, self.device, token_types=pairs.token_types,
                           batch_tokens=batch_tokens, max_batch_sequences=max_batch_sequences, on_batch=on_batch)  # fmt: skip

    def scores(self, logits: np.ndarray, *, raw_scores: bool = False, apply_softmax: bool = False) -> np.ndarray:
        """Logits [n, labels] → scores as sentence-transformers' predict gives them: [n] for one label."""
        scores = logits if raw_scores else ACTIVATIONS[self.activation](logits.astype(np.float64)).astype(np.float32)
        if apply_softmax and scores.shape[1] > 1:
            scores = softmax(scores)
        return scores[:, 0] if self.num_labels == 1 else scores

    def predict(self, pairs: Sequence[tuple[str, str]], *, batch_tokens: int | None = None,
                max_batch_sequences: int = DEFAULT_MAX_BATCH_SEQUENCES, raw_scores: bool = False,
                apply_softmax: bool = False, truncate: bool = False, instruction: str | None = None,
                on_batch: Callable[[int, int], None] | None = None) -> np.ndarray:  # fmt: skip
        """Scores of (query, document) pairs, in order: float32 [n], or [n, num_labels] for several labels.

        raw_scores: the logits (for yes/no models, logit(yes) - logit(no)) instead of the activation's output.
        apply_softmax: softmax over the labels (several labels only), as sentence-transformers' option.
        truncate: cut a query that alone leaves no room for its document, instead of raising QueryTooLong.
        instruction: the yes/no models' task instruction (default: the model card's).
        """
        single = isinstance(pairs, tuple) and len(pairs) == 2 and all(isinstance(x, str) for x in pairs)
        queries, documents = _check_pairs([pairs] if single else pairs)
        encoded = self.encode_pairs(queries, documents, truncate=truncate, instruction=instruction)
        logits = self.logits(encoded, batch_tokens=batch_tokens, max_batch_sequences=max_batch_sequences, on_batch=on_batch)
        scores = self.scores(logits, raw_scores=raw_scores, apply_softmax=apply_softmax)
        return scores[0] if single else scores

    def rank(self, query: str, documents: Sequence[str], top_k: int | None = None, return_documents: bool = False, *,
             batch_tokens: int | None = None, raw_scores: bool = False, truncate: bool = False,
             instruction: str | None = None) -> list[dict]:  # fmt: skip
        """Documents by relevance to the query, best first, in sentence-transformers' CrossEncoder.rank shape:
        [{"corpus_id", "score", "text" (with return_documents)}]; ties keep the lower corpus_id first."""
        if self.num_labels != 1:
            raise ValueError(f"rank needs one score per pair; this model has {self.num_labels} labels ({', '.join(self.labels)}): use predict")
        if not isinstance(query, str):
            raise TypeError(f"query must be a str, got {type(query).__name__}")
        documents = check_texts(documents, "documents")
        top_k = None if top_k is None else positive_int(top_k, "top_k")
        scores = self.predict([(query, d) for d in documents], batch_tokens=batch_tokens, raw_scores=raw_scores,
                              truncate=truncate, instruction=instruction) if documents else np.empty(0, np.float32)  # fmt: skip
        return [{"corpus_id": int(i), "score": float(scores[i]), **({"text": documents[i]} if return_documents else {})}
                for i in best_first(scores, top_k)]  # fmt: skip


def _check_pairs(pairs) -> tuple[list[str], list[str]]:
    if isinstance(pairs, (str, bytes)) or not isinstance(pairs, Sequence):
        raise TypeError(f"pairs must be a sequence of (query, document) pairs, got {type(pairs).__name__}")
    queries, documents = [], []
    for i, pair in enumerate(pairs):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            length = f" of length {len(pair)}" if isinstance(pair, (tuple, list)) else ""
            raise TypeError(f"pairs[{i}] must be a (query, document) pair, got {type(pair).__name__}{length}")
        queries.append(check_text(pair[0], f"pairs[{i}][0]"))
        documents.append(check_text(pair[1], f"pairs[{i}][1]"))
    return queries, documents


def load_reranker(name_or_path: str | Path, device: str | torch.device | None = None, dtype=None, *,
                  revision: str | None = None, instruction: str | None = None, max_length: int | None = None) -> Reranker:  # fmt: skip
    """A reranker from a local folder or a Hugging Face Hub id: a cross-encoder (*ForSequenceClassification) or an
    LLM reranker scored by its yes/no logits (*ForCausalLM, e.g. Qwen3-Reranker; `instruction` is its task
    instruction). dtype: float32, bfloat16 or int8, as for embedders."""
    return Reranker(load_reranker_spec(name_or_path, revision), device, dtype, instruction=instruction, max_length=max_length)
