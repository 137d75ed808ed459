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

    def __len__(self) -> int:
        return len(self.texts if self.texts is not None else self.ids)


@dataclass
class EmbedRequest:
    inputs: Inputs
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


@dataclass
class TokenizeRequest:
    texts: list[str]
    single: bool  # inputs was one string
    add_special_tokens: bool = True
    prompt_name: str | None = None
    truncate: bool | None = None  # None: the server's --auto-truncate
    direction: str = "right"


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


def parse_openai(body: dict) -> EmbedRequest:
    """POST /v1/embeddings (OpenAI). `model` is checked for type only: the server serves one model."""
    inputs = parse_inputs(_required(body, "input"), "input")
    _optional(body, "model", (str,), what="a string")
    _optional(body, "user", (str,), what="a string")
    encoding = _optional(body, "encoding_format", (str,), "float", 'a string ("float" or "base64")')
    if encoding not in ("float", "base64"):
        raise RequestError(422, f'encoding_format must be "float" or "base64", got {encoding!r}', "encoding_format")
    dimensions = _optional(body, "dimensions", (int,), what="an integer")
    return EmbedRequest(inputs, dimensions=dimensions, encoding_format=encoding)


def parse_tei_embed(body: dict) -> EmbedRequest:
    """POST /embed (TEI)."""
    return EmbedRequest(
        parse_inputs(_required(body, "inputs"), "inputs"),
        normalize=_optional(body, "normalize", (bool,), True, "a boolean"),
        truncate=_optional(body, "truncate", (bool,), None, "a boolean"),
        direction=_direction(body),
        prompt_name=_optional(body, "prompt_name", (str,), None, "a string"),
        dimensions=_optional(body, "dimensions", (int,), None, "an integer"),
    )


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
    )  # fmt: skip
