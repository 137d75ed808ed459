"""Every limit and every bad input gets its status and a message naming the problem; the server serves on.
Also: API keys, a client that leaves mid-request, and SIGTERM with requests in flight."""

import asyncio
import signal
import socket
import time

import aiohttp
import openai
import pytest

from fastembed_rt import TruncationWarning
from fastembed_rt.server.process import ServerProcess
from fastembed_rt.testing import row_cosines

from .conftest import API_KEY, MODEL_NAME, get, metric, post

LONG = "word " * 300  # 302 tokens: over the model's 256
SLOW = "a " * 250  # 252 tokens, 500 bytes: slow to embed, small to send


def still_serves(url: str, headers: dict | None = None) -> None:
    assert get(url, "/health")[0] == 200
    status, body, _ = post(url, "/embed", {"inputs": ["still here"]}, headers=headers)
    assert status == 200 and len(body[0]) == 384


def test_too_many_concurrent_requests_get_429(limited_server, minilm):
    async def burst():
        async with aiohttp.ClientSession() as session:

            async def one():
                async with session.post(limited_server.url + "/embed", json={"inputs": [SLOW] * 8}) as response:
                    return response.status, await response.json()

            return await asyncio.gather(*(one() for _ in range(10)))

    answers = asyncio.run(burst())
    statuses = [status for status, _ in answers]
    assert statuses.count(429) >= 1 and statuses.count(200) >= 2, statuses
    refused = next(body for status, body in answers if status == 429)
    assert refused["error_type"] == "Overloaded"
    assert refused["error"].startswith("too many concurrent requests: the limit is 2 (--max-concurrent-requests)")
    expected = minilm.encode([SLOW])[0]
    for status, body in answers:
        if status == 200:
            assert row_cosines(body, [expected] * 8).min() >= 0.99999
    still_serves(limited_server.url)


def test_too_many_inputs_and_too_large_a_body_get_413(limited_server):
    status, body, _ = post(limited_server.url, "/v1/embeddings", {"input": ["x"] * 9})
    assert status == 413
    assert body["error"]["message"] == "input holds 9 inputs, more than the limit of 8 (--max-client-batch-size)"
    assert body["error"]["param"] == "input"
    status, body, _ = post(limited_server.url, "/embed", {"inputs": ["y" * 25000]})
    assert status == 413
    assert "more than the limit of 20000 (--max-request-bytes)" in body["error"]
    still_serves(limited_server.url)


def test_an_over_long_input_gets_413_naming_it_unless_truncation_is_asked_for(limited_server, minilm):
    status, body, _ = post(limited_server.url, "/embed", {"inputs": ["short", LONG]})
    length = len(minilm.spec.tokenizer.encode(LONG).ids)  # truncated at 256 by the model's tokenizer
    assert status == 413 and body["error_type"] == "Validation"
    assert body["error"].startswith("inputs[1] has 302 tokens, more than the model's maximum of 256")
    assert length == 256
    status, body, _ = post(limited_server.url, "/v1/embeddings", {"input": [[101] * 300]})
    assert status == 413 and body["error"]["message"].startswith("input[0] has 300 tokens")
    status, right, _ = post(limited_server.url, "/embed", {"inputs": [LONG + "end"], "truncate": True})
    with pytest.warns(TruncationWarning):
        expected = minilm.encode([LONG + "end"])
    assert status == 200 and row_cosines(right, expected).min() >= 0.99999
    status, left, _ = post(limited_server.url, "/embed", {"inputs": [LONG + "end"], "truncate": True,
                                                          "truncation_direction": "left"})  # fmt: skip
    assert status == 200 and row_cosines(left, right).min() < 0.9999  # the tail was kept instead of the head
    still_serves(limited_server.url)


@pytest.mark.parametrize(
    "path, raw, status, message",
    [
        ("/embed", b'{"inputs": ["a"', 422, "request body is not valid JSON"),
        ("/embed", b"[1, 2]", 422, "request body must be a JSON object, got an array"),
        ("/embed", b'{"inputs": 5}', 422, "inputs must be a string, a list of strings"),
        ("/embed", b'{"inputs": ["a", null]}', 422, "inputs[1] is null"),
        ("/embed", b'{"inputs": "a", "normalize": "yes"}', 422, "normalize must be a boolean, got a string"),
        ("/embed", b'{"inputs": "a", "dimensions": 385}', 422, "dimensions must be in [1, 384], got 385"),
        ("/similarity", b'{"inputs": {"source_sentence": 1, "sentences": ["a"]}}', 422, "inputs.source_sentence must be a string"),
        ("/tokenize", b'{"input": "a"}', 422, "inputs is required"),
        ("/embed", b'{"inputs": "a\xff\xfeb"}', 422, "request body is not valid UTF-8: byte 13"),  # was "surrogates not allowed"
        ("/embed", b'{"inputs": [[101, 102]], "prompt_name": "query"}', 422, "prompt_name does not apply to token ids"),
    ],
)
def test_malformed_requests_get_422_naming_the_field(limited_server, path, raw, status, message):
    got, body, _ = post(limited_server.url, path, raw=raw)
    assert got == status
    assert message in body["error"]
    still_serves(limited_server.url)


def test_similarity_names_the_source_sentence_and_counts_only_the_sentences(limited_server):
    """Before: the source sentence was sentences[0] in errors, sentences[i] was named sentences[i + 1], and
    --max-client-batch-size 8 let only 7 sentences through."""
    status, _, _ = post(limited_server.url, "/similarity", {"inputs": {"source_sentence": "a", "sentences": ["b"] * 8}})
    assert status == 200
    status, body, _ = post(limited_server.url, "/similarity", {"inputs": {"source_sentence": "a", "sentences": ["b"] * 9}})
    assert status == 413 and body["error"].startswith("inputs.sentences holds 9 inputs")
    for inputs, name in (({"source_sentence": LONG, "sentences": ["b"]}, "inputs.source_sentence has"),
                         ({"source_sentence": "a", "sentences": ["b", LONG]}, "inputs.sentences[1] has")):  # fmt: skip
        status, body, _ = post(limited_server.url, "/similarity", {"inputs": inputs})
        assert status == 413 and body["error"].startswith(name), body
    still_serves(limited_server.url)


def test_openai_route_takes_teis_truncate_which_its_413_advises(limited_server, minilm):
    status, body, _ = post(limited_server.url, "/v1/embeddings", {"input": LONG})
    assert status == 413 and "send truncate=true" in body["error"]["message"]
    status, body, _ = post(limited_server.url, "/v1/embeddings", {"input": LONG, "truncate": True})
    with pytest.warns(TruncationWarning):
        expected = minilm.encode([LONG])
    assert status == 200 and row_cosines([body["data"][0]["embedding"]], expected).min() >= 0.99999


def test_openai_route_errors_use_openai_error_objects(limited_server):
    status, body, _ = post(limited_server.url, "/v1/embeddings", {"input": "a", "encoding_format": "int8"})
    assert status == 422
    assert body == {"error": {"message": "encoding_format must be \"float\" or \"base64\", got 'int8'",
                              "type": "invalid_request_error", "param": "encoding_format", "code": 422}}  # fmt: skip


def test_api_key_guards_every_route_but_health(auth_server, minilm):
    url, good = auth_server.url, {"authorization": f"Bearer {API_KEY}"}
    assert get(url, "/health")[0] == 200
    for method, path in [(get, "/info"), (get, "/metrics"), (post, "/embed"), (post, "/v1/embeddings"), (post, "/tokenize")]:
        for headers in (None, {"authorization": "Bearer wrong"}, {"authorization": API_KEY}):
            status, body, response_headers = method(url, path, headers=headers)
            assert status == 401, (path, headers)
            assert response_headers["www-authenticate"] == "Bearer"
    assert get(url, "/info", headers=good)[0] == 200
    client = openai.OpenAI(base_url=url + "/v1", api_key=API_KEY, max_retries=0)
    vectors = [d.embedding for d in client.embeddings.create(input=["auth ok", LONG], model=MODEL_NAME).data]
    # This server runs with --auto-truncate: the over-long input is truncated, as encode() does.
    with pytest.warns(TruncationWarning):
        expected = minilm.encode(["auth ok", LONG])
    assert row_cosines(vectors, expected).min() >= 0.99999
    with pytest.raises(openai.AuthenticationError, match="missing or wrong API key"):
        openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0).embeddings.create(input="x", model=MODEL_NAME)
    still_serves(url, headers=good)


def test_a_client_that_leaves_does_not_take_batch_slots(server, minilm):
    url = server.url
    embedded = metric(url, "fastembed_rt_embedded_texts_total")
    cancelled = metric(url, "fastembed_rt_cancelled_texts_total")
    gone_before = metric(url, 'fastembed_rt_requests_total{route="/embed",status="499"}')

    async def scenario():
        async with aiohttp.ClientSession() as session:
            # A keeps the model busy for a while (64 texts of 256 tokens) ...
            busy = asyncio.ensure_future(session.post(url + "/embed", json={"inputs": [SLOW] * 64}))
            await asyncio.sleep(0.1)
            # ... while B sends 64 more and hangs up before they come back.
            host, port = url.removeprefix("http://").split(":")
            body = b'{"inputs": [' + b",".join([b'"' + SLOW.encode() + b'"'] * 64) + b"]}"
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(b"POST /embed HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                         b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)  # fmt: skip
            await writer.drain()
            await asyncio.sleep(0.1)
            writer.close()
            response = await busy
            return response.status, await response.json()

    status, vectors = asyncio.run(scenario())
    assert status == 200 and len(vectors) == 64
    deadline = time.monotonic() + 10
    while metric(url, 'fastembed_rt_requests_total{route="/embed",status="499"}') == gone_before:
        assert time.monotonic() < deadline, "the server never noticed the client leaving"
        time.sleep(0.05)
    assert metric(url, "fastembed_rt_queue_depth") == 0
    # At most one batch (4,096 tokens: 16 texts) of B was cut ahead before it left; the rest never ran.
    assert metric(url, "fastembed_rt_cancelled_texts_total") - cancelled >= 48
    assert metric(url, "fastembed_rt_embedded_texts_total") - embedded <= 64 + 16
    still_serves(url)


def test_sigterm_drains_requests_in_flight_then_exits(minilm_path, minilm):
    process = ServerProcess(["--model", str(minilm_path)])
    texts = [f"request {i}: " + SLOW for i in range(12)]
    try:

        async def scenario():
            async with aiohttp.ClientSession() as session:

                async def one(i):
                    async with session.post(process.url + "/embed", json={"inputs": [texts[i]] * 4}) as response:
                        return response.status, await response.json()

                requests = [asyncio.ensure_future(one(i)) for i in range(12)]
                deadline = time.monotonic() + 20
                while metric(process.url, "fastembed_rt_requests_in_flight") < 12:  # all accepted
                    assert time.monotonic() < deadline, "requests never arrived"
                    await asyncio.sleep(0.01)
                process.proc.send_signal(signal.SIGTERM)
                return await asyncio.gather(*requests)

        answers = asyncio.run(scenario())
        # uvicorn re-raises the signal once it has drained, so the parent sees "terminated by SIGTERM".
        assert process.proc.wait(60) in (0, -signal.SIGTERM)
    finally:
        process.stop()
    assert "Traceback" not in "".join(process.output)
    expected = minilm.encode(texts)
    for i, (status, body) in enumerate(answers):
        assert status == 200, body
        assert row_cosines(body, [expected[i]] * 4).min() >= 0.99999
    with pytest.raises(OSError):  # and it is gone
        socket.create_connection(process.url.removeprefix("http://").split(":"), timeout=2).close()
