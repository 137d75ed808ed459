"""Request parsing: every accepted form, and a 422 naming the field for every wrong one."""

import pytest

from fastembed_rt.server.config import ServerConfig
from fastembed_rt.server.errors import RequestError
from fastembed_rt.server.metrics import Histogram, Metrics
from fastembed_rt.server.schemas import parse_inputs, parse_openai, parse_similarity, parse_tei_embed, parse_tokenize


@pytest.mark.parametrize(
    "value, texts, ids",
    [
        ("one text", ["one text"], None),
        (["a", "", "c"], ["a", "", "c"], None),
        ([101, 7592, 102], None, [[101, 7592, 102]]),
        ([[101, 102], [5]], None, [[101, 102], [5]]),
    ],
)
def test_every_input_form(value, texts, ids):
    inputs = parse_inputs(value, "input")
    assert (inputs.texts, inputs.ids) == (texts, ids)
    assert len(inputs) == len(texts or ids)


@pytest.mark.parametrize(
    "value, message",
    [
        (None, "input must be a string, a list of strings, a list of token ids or a list of lists of token ids, got null"),
        (3, "got an integer"),
        ({"text": "x"}, "got an object"),
        ([], "input must not be empty"),
        (["a", 3], r"input\[1\] is an integer"),
        ([1, "a"], r"input\[1\] is a string; token ids are integers"),
        ([1, True], r"input\[1\] is a boolean"),
        ([1, 2.5], r"input\[1\] is a number"),
        ([[1], "a"], r"input\[1\] is a string"),
        ([[1], []], r"input\[1\] is an empty list of token ids"),
        ([[1], [2, None]], r"input\[1\]\[1\] is null"),
        ([1.5], r"input\[0\] is a number"),
        ([None], r"input\[0\] is null"),
    ],
)
def test_wrong_inputs_name_the_item(value, message):
    with pytest.raises(RequestError, match=message) as info:
        parse_inputs(value, "input")
    assert info.value.status == 422


def test_openai_fields():
    request = parse_openai({"input": "x", "model": "m", "encoding_format": "base64", "dimensions": 64, "user": "u"})
    assert (request.encoding_format, request.dimensions) == ("base64", 64)
    assert parse_openai({"input": ["x"]}).encoding_format == "float"
    for body, field in [
        ({}, "input"),
        ({"input": "x", "model": 3}, "model"),
        ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"input": "x", "encoding_format": 1}, "encoding_format"),
        ({"input": "x", "dimensions": "64"}, "dimensions"),
        ({"input": "x", "dimensions": True}, "dimensions"),
        ({"input": "x", "dimensions": 1.5}, "dimensions"),
    ]:
        with pytest.raises(RequestError, match=field) as info:
            parse_openai(body)
        assert (info.value.status, info.value.field) == (422, field)


def test_tei_fields():
    request = parse_tei_embed({"inputs": ["a"], "normalize": False, "truncate": True, "truncation_direction": "Left",
                               "prompt_name": "query", "dimensions": 8})  # fmt: skip
    assert (request.normalize, request.truncate, request.direction, request.prompt_name, request.dimensions) == (
        False, True, "left", "query", 8)  # fmt: skip
    defaults = parse_tei_embed({"inputs": "a"})
    assert (defaults.normalize, defaults.truncate, defaults.direction) == (True, None, "right")
    for body, field in [
        ({"inputs": "a", "normalize": "yes"}, "normalize"),
        ({"inputs": "a", "truncate": 1}, "truncate"),
        ({"inputs": "a", "truncation_direction": "up"}, "truncation_direction"),
        ({"inputs": "a", "prompt_name": 5}, "prompt_name"),
        ({"input": "a"}, "inputs"),
    ]:
        with pytest.raises(RequestError, match=field) as info:
            parse_tei_embed(body)
        assert info.value.field == field


def test_similarity_and_tokenize_fields():
    request = parse_similarity({"inputs": {"source_sentence": "a", "sentences": ["b", "c"]}})
    assert (request.source, request.sentences) == ("a", ["b", "c"])
    for body, match in [
        ({"inputs": ["a"]}, "inputs must be an object"),
        ({"inputs": {"sentences": ["b"]}}, "inputs.source_sentence must be a string, got null"),
        ({"inputs": {"source_sentence": "a", "sentences": []}}, "inputs.sentences must not be empty"),
        ({"inputs": {"source_sentence": "a", "sentences": [[1, 2]]}}, "inputs.sentences must be a list of strings"),
    ]:
        with pytest.raises(RequestError, match=match):
            parse_similarity(body)
    tokenize = parse_tokenize({"inputs": "a b", "add_special_tokens": False})
    assert (tokenize.texts, tokenize.single, tokenize.add_special_tokens) == (["a b"], True, False)
    with pytest.raises(RequestError, match="add_special_tokens must be a boolean"):
        parse_tokenize({"inputs": "a", "add_special_tokens": "no"})
    with pytest.raises(RequestError, match="inputs must be a string or a list of strings"):
        parse_tokenize({"inputs": [1, 2]})


def test_server_config_checks_its_limits():
    assert ServerConfig(max_wait_ms=0).max_wait_ms == 0
    with pytest.raises(ValueError, match="max-batch-tokens must be positive, got 0"):
        ServerConfig(max_batch_tokens=0)
    with pytest.raises(ValueError, match="max-client-batch-size must be positive"):
        ServerConfig(max_client_batch_size=-1)
    with pytest.raises(ValueError, match="port must be in"):
        ServerConfig(port=70000)
    with pytest.raises(ValueError, match="api-key must not be empty"):
        ServerConfig(api_key="")


def test_histogram_renders_cumulative_prometheus_buckets():
    histogram = Histogram("x_seconds", "help text", (0.1, 1.0), ("route",))
    for value in (0.05, 0.1, 0.5, 3.0):
        histogram.observe(value, "/embed")
    lines = histogram.render()
    assert lines[:2] == ["# HELP x_seconds help text", "# TYPE x_seconds histogram"]
    assert 'x_seconds_bucket{route="/embed",le="0.1"} 2' in lines
    assert 'x_seconds_bucket{route="/embed",le="1"} 3' in lines
    assert 'x_seconds_bucket{route="/embed",le="+Inf"} 4' in lines
    assert 'x_seconds_count{route="/embed"} 4' in lines
    assert 'x_seconds_sum{route="/embed"} 3.65' in lines
    metrics = Metrics()
    metrics.requests.inc(1, "/embed", "200")
    metrics.add_gauge("queue_depth", "Texts waiting.", lambda: 7)
    text = metrics.render()
    assert 'fastembed_rt_requests_total{route="/embed",status="200"} 1' in text
    assert "fastembed_rt_queue_depth 7" in text
