"""Request bodies of the OpenAI and TEI routes, checked field by field: a wrong one is a 422 that names it."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import RequestError

_JSON_TYPES = {str: "a string", bool: "a boolean", int: "an integer", float: "a number", list: "an array",
               dict: "an object", type(None): "null"}  # fmt: skip
INPUT_FORMS = "a string, a list of strings, a list of token ids or a list of lists of token ids"


def json_type(value) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _is_token(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class Inputs:
    """What a request asks to embed: texts, or token id sequences (exactly one of the two)."""

    field: str  # its name in the request, for error messages
    texts: list[str] | None = None
    ids: list[list[int]] | None = None
    lead: str | None = None  # the name of a first input that is not one of field's items (/similarity's source)

    def __len__(self) -> int:
        return len(self.texts if self.texts is not None else self.ids)

    @property
    def items(self) -> int:
        """How many inputs `field` itself holds (the lead is not one of them)."""
        return len(self) - (self.lead is not None)

    def name(self, i: int) -> str:
        """Input i as the request names it."""
        if self.lead is not None:
            if i == 0:
                return self.lead
            i -= 1
        return f"{self.field}[{i}]"


@dataclass
class EmbedRequest:
    inputs: Inputs
    model: str | None = None  # a loaded model's name; None: the first embedding model
    normalize: bool | None = None  # None: as the model does
    truncate: bool | None = None  # None: the server's --auto-truncate
    direction: str = "right"
    prompt_name: str | None = None
    dimensions: int | None = None
    encoding_format: str = "float"


@dataclass
class SimilarityRequest:
    source: str
    sentences: list[str]
    truncate: bool | None = None
    direction: str = "right"
    prompt_name: str | None = None
    model: str | None = None


@dataclass
class TokenizeRequest:
    texts: list[str]
    single: bool  # inputs was one string
    add_special_tokens: bool = True
    prompt_name: str | None = None
    truncate: bool | None = None  # None: the server's --auto-truncate
    direction: str = "right"
    model: str | None = None


def parse_inputs(value, field: str) -> Inputs:
    if isinstance(value, str):
        return Inputs(field, texts=[value])
    if not isinstance(value, list):
        raise RequestError(422, f"{field} must be {INPUT_FORMS}, got {json_type(value)}", field)
    if not value:
        raise RequestError(422, f"{field} must not be empty", field)
    first = value[0]
    if isinstance(first, str):
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise RequestError(422, f"{field}[{i}] is {json_type(item)}; a list of texts must hold only strings", field)
        return Inputs(field, texts=value)
    if _is_token(first):
        _check_token_ids(value, field)
        return Inputs(field, ids=[value])
    if isinstance(first, list):
        for i, item in enumerate(value):
            if not isinstance(item, list):
                raise RequestError(422, f"{field}[{i}] is {json_type(item)}; a list of token id lists must hold only lists", field)
            if not item:
                raise RequestError(422, f"{field}[{i}] is an empty list of token ids", field)
            _check_token_ids(item, f"{field}[{i}]")
        return Inputs(field, ids=value)
    raise RequestError(422, f"{field}[0] is {json_type(first)}; {field} must be {INPUT_FORMS}", field)


def _check_token_ids(ids: list, where: str) -> None:
    for j, token in enumerate(ids):
        if not _is_token(token):
            raise RequestError(422, f"{where}[{j}] is {json_type(token)}; token ids are integers", where)


def _optional(body: dict, field: str, kinds: tuple, default=None, what: str = ""):
    value = body.get(field)
    if value is None:
        return default
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise RequestError(422, f"{field} must be {what}, got {json_type(value)}", field)
    return value


def _direction(body: dict) -> str:
    value = _optional(body, "truncation_direction", (str,), "right", 'a string ("left" or "right")')
    if value.lower() not in ("left", "right"):
        raise RequestError(422, f'truncation_direction must be "left" or "right", got {value!r}', "truncation_direction")
    return value.lower()


def _required(body: dict, field: str):
    if field not in body:
        raise RequestError(422, f"{field} is required", field)
    return body[field]


def _model(body: dict) -> str | None:
    return _optional(body, "model", (str,), None, "a string")


def parse_openai(body: dict) -> EmbedRequest:
    """POST /v1/embeddings (OpenAI)."""
    inputs = parse_inputs(_required(body, "input"), "input")
    model = _model(body)
    _optional(body, "user", (str,), what="a string")
    encoding = _optional(body, "encoding_format", (str,), "float", 'a string ("float" or "base64")')
    if encoding not in ("float", "base64"):
        raise RequestError(422, f'encoding_format must be "float" or "base64", got {encoding!r}', "encoding_format")
    dimensions = _optional(body, "dimensions", (int,), what="an integer")
    truncate = _optional(body, "truncate", (bool,), None, "a boolean")  # not OpenAI's: TEI's, which the 413 advises
    return EmbedRequest(inputs, model, dimensions=dimensions, encoding_format=encoding, truncate=truncate)


def parse_tei_embed(body: dict) -> EmbedRequest:
    """POST /embed (TEI)."""
    return EmbedRequest(
        parse_inputs(_required(body, "inputs"), "inputs"),
        _model(body),
        normalize=_optional(body, "normalize", (bool,), True, "a boolean"),
        truncate=_optional(body, "truncate", (bool,), None, "a boolean"),
        direction=_direction(body),
        prompt_name=_optional(body, "prompt_name", (str,), None, "a string"),
        dimensions=_optional(body, "dimensions", (int,), None, "an integer"),
    )


def parse_task(body: dict) -> str | None:
    """/embed_sparse's `task` (our extension of TEI's route): "query" or "document", the sentence-transformers
    SparseEncoder route; None: the model's default."""
    task = _optional(body, "task", (str,), None, 'a string ("query" or "document")')
    if task not in (None, "query", "document"):
        raise RequestError(422, f'task must be "query" or "document", got {task!r}', "task")
    return task


def parse_similarity(body: dict) -> SimilarityRequest:
    """POST /similarity (TEI): {"inputs": {"source_sentence": str, "sentences": [str, ...]}}."""
    inputs = _required(body, "inputs")
    if not isinstance(inputs, dict):
        raise RequestError(422, f"inputs must be an object with source_sentence and sentences, got {json_type(inputs)}", "inputs")
    source = inputs.get("source_sentence")
    if not isinstance(source, str):
        raise RequestError(422, f"inputs.source_sentence must be a string, got {json_type(source)}", "inputs.source_sentence")
    sentences = parse_inputs(inputs.get("sentences"), "inputs.sentences")
    if sentences.texts is None:
        raise RequestError(422, "inputs.sentences must be a list of strings", "inputs.sentences")
    return SimilarityRequest(
        source, sentences.texts,
        truncate=_optional(body, "truncate", (bool,), None, "a boolean"),
        direction=_direction(body),
        prompt_name=_optional(body, "prompt_name", (str,), None, "a string"),
        model=_model(body),
    )  # fmt: skip


def parse_tokenize(body: dict) -> TokenizeRequest:
    """POST /tokenize (TEI)."""
    value = _required(body, "inputs")
    inputs = parse_inputs(value, "inputs")
    if inputs.texts is None:
        raise RequestError(422, "inputs must be a string or a list of strings", "inputs")
    return TokenizeRequest(
        inputs.texts, single=isinstance(value, str),
        add_special_tokens=_optional(body, "add_special_tokens", (bool,), True, "a boolean"),
        prompt_name=_optional(body, "prompt_name", (str,), None, "a string"),
        truncate=_optional(body, "truncate", (bool,), None, "a boolean"),
        direction=_direction(body),
        model=_model(body),
    )  # fmt: skip


@dataclass
class RerankRequest:
    """TEI's /rerank, Cohere's and Jina's /v1/rerank, vLLM's /score: a query against documents, or pairs."""

    queries: list[str]  # one per document (the same query repeated for a rerank)
    documents: list[str]
    field: str  # where the documents came from, for error messages
    model: str | None = None
    top_n: int | None = None
    return_documents: bool = False
    raw_scores: bool = False
    truncate: bool | None = None  # None: the server's --auto-truncate
    query_field: str = "query"  # where the queries came from
    queries_listed: bool = False  # the request gave a list of queries (vLLM's /score), not one

    def query_name(self, i: int) -> str:
        """Pair i's query as the request names it."""
        return f"{self.query_field}[{i}]" if self.queries_listed else self.query_field


def _texts(value, field: str, objects: bool = False) -> list[str]:
    """A non-empty list of strings (or, with objects, of {"text": str} objects, as Cohere and Jina accept)."""
    if not isinstance(value, list):
        raise RequestError(422, f"{field} must be a list of strings, got {json_type(value)}", field)
    if not value:
        raise RequestError(422, f"{field} must not be empty", field)
    texts = []
    for i, item in enumerate(value):
        if objects and isinstance(item, dict):
            item = item.get("text")
            if not isinstance(item, str):
                raise RequestError(422, f"{field}[{i}].text must be a string, got {json_type(item)}", field)
        if not isinstance(item, str):
            raise RequestError(422, f"{field}[{i}] is {json_type(item)}; {field} must hold only strings", field)
        texts.append(item)
    return texts


def _right_only(body: dict) -> None:
    if _direction(body) != "right":
        raise RequestError(422, 'rerankers cut the end of the document: truncation_direction must be "right"', "truncation_direction")


def _query(body: dict) -> str:
    query = _required(body, "query")
    if not isinstance(query, str):
        raise RequestError(422, f"query must be a string, got {json_type(query)}", "query")
    return query


def parse_tei_rerank(body: dict) -> RerankRequest:
    """POST /rerank (TEI): {query, texts, truncate, truncation_direction, raw_scores, return_text}."""
    _right_only(body)
    query, texts = _query(body), _texts(_required(body, "texts"), "texts")
    return RerankRequest(
        [query] * len(texts), texts, "texts", _model(body),
        return_documents=_optional(body, "return_text", (bool,), False, "a boolean"),
        raw_scores=_optional(body, "raw_scores", (bool,), False, "a boolean"),
        truncate=_optional(body, "truncate", (bool,), None, "a boolean"),
    )  # fmt: skip


def parse_cohere_rerank(body: dict) -> RerankRequest:
    """POST /v1/rerank (Cohere, Jina; /rerank with "documents"): {model, query, documents, top_n, return_documents}."""
    query, documents = _query(body), _texts(_required(body, "documents"), "documents", objects=True)
    top_n = _optional(body, "top_n", (int,), None, "an integer")
    if top_n is not None and not 1 <= top_n <= len(documents):
        raise RequestError(422, f"top_n must be in [1, {len(documents)}] (the number of documents), got {top_n}", "top_n")
    return RerankRequest(
        [query] * len(documents), documents, "documents", _model(body), top_n=top_n,
        return_documents=_optional(body, "return_documents", (bool,), False, "a boolean"),
        truncate=_optional(body, "truncate", (bool,), None, "a boolean"),
    )  # fmt: skip


def parse_score(body: dict) -> RerankRequest:
    """POST /score (vLLM): {model, text_1 | queries, text_2 | documents}: one query against every document, or
    lists of equal length scored pair by pair."""
    names = ("text_1", "text_2") if "text_1" in body or "text_2" in body else ("queries", "documents")
    first, second = (_required(body, name) for name in names)
    queries = [first] if isinstance(first, str) else _texts(first, names[0])
    documents = [second] if isinstance(second, str) else _texts(second, names[1])
    if len(queries) == 1:
        queries = queries * len(documents)
    elif len(queries) != len(documents):
        raise RequestError(422, f"{names[0]} holds {len(queries)} texts and {names[1]} {len(documents)}: give one "
                                f"{names[0]} or as many as {names[1]}", names[0])  # fmt: skip
    return RerankRequest(queries, documents, names[1], _model(body), truncate=_optional(body, "truncate", (bool,), None, "a boolean"),
                         query_field=names[0], queries_listed=not isinstance(first, str) and len(first) > 1)  # fmt: skip


@dataclass
class PredictRequest:
    """POST /predict (TEI): single texts or pairs through a classifier."""

    items: list[tuple[str, ...]]  # (text,) or (text_a, text_b)
    single: bool  # inputs was one item, not a batch
    model: str | None = None
    raw_scores: bool = False
    truncate: bool | None = None


def _predict_item(value, where: str) -> tuple[str, ...]:
    item = (value,) if isinstance(value, str) else value
    if not isinstance(item, (list, tuple)) or not 1 <= len(item) <= 2:
        raise RequestError(422, f"{where} must be a text or a [text, text] pair, got {json_type(value)}", "inputs")
    for j, text in enumerate(item):
        if not isinstance(text, str):
            raise RequestError(422, f"{where}[{j}] must be a string, got {json_type(text)}", "inputs")
    return tuple(item)


def parse_predict(body: dict) -> PredictRequest:
    """{inputs: "text" | ["a", "b"] (one pair) | [item, ...] (a batch; item: "text", ["text"] or ["a", "b"])}."""
    _right_only(body)
    value = _required(body, "inputs")
    single = isinstance(value, str) or (isinstance(value, list) and 1 <= len(value) <= 2 and all(isinstance(t, str) for t in value))
    if not single and (not isinstance(value, list) or not value):
        raise RequestError(422, f"inputs must be a text, a [text, text] pair or a non-empty list of them, got {json_type(value)}", "inputs")
    items = [_predict_item(value, "inputs")] if single else [_predict_item(v, f"inputs[{i}]") for i, v in enumerate(value)]
    return PredictRequest(
        items, single, _model(body),
        raw_scores=_optional(body, "raw_scores", (bool,), False, "a boolean"),
        truncate=_optional(body, "truncate", (bool,), None, "a boolean"),
    )  # fmt: skip
