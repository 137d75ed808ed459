"""Prompts through the server: prompt_name on /embed and /tokenize, pooling that leaves the prompt out, and
requests with and without a prompt sharing batches."""

import asyncio
import json

import aiohttp
import numpy as np
import pytest

import fastembed_rt
from fastembed_rt.server.process import ServerProcess
from fastembed_rt.testing import row_cosines

from .conftest import post

PROMPTS = {"query": "query: ", "passage": "passage: "}


@pytest.fixture(scope="module")
def prompt_model(tmp_path_factory, minilm_path):
    """all-MiniLM-L6-v2 with prompts, a default prompt, and pooling that leaves prompt tokens out."""
    root = tmp_path_factory.mktemp("prompt_model")
    for item in minilm_path.iterdir():
        if item.name not in ("config_sentence_transformers.json", "1_Pooling"):
            (root / item.name).symlink_to(item)
    config = json.loads((minilm_path / "config_sentence_transformers.json").read_text())
    config.update(prompts=PROMPTS, default_prompt_name="passage")
    (root / "config_sentence_transformers.json").write_text(json.dumps(config))
    pooling = json.loads((minilm_path / "1_Pooling" / "config.json").read_text())
    (root / "1_Pooling").mkdir()
    (root / "1_Pooling" / "config.json").write_text(json.dumps({**pooling, "include_prompt": False}))
    return root


def test_prompts_through_the_server(prompt_model):
    model = fastembed_rt.load(prompt_model)
    texts = ["how do vaccines work", "A man is playing a guitar.", "x"]
    with ServerProcess(["--model", str(prompt_model)]) as server:
        status, body, _ = post(server.url, "/embed", {"inputs": texts, "prompt_name": "query"})
        assert status == 200
        assert row_cosines(body, model.encode(texts, prompt_name="query")).min() >= 0.99999
        # No prompt_name: the model's default prompt, on both routes.
        default = model.encode(texts)
        assert row_cosines(post(server.url, "/embed", {"inputs": texts})[1], default).min() >= 0.99999
        status, body, _ = post(server.url, "/v1/embeddings", {"input": texts})
        assert row_cosines([d["embedding"] for d in body["data"]], default).min() >= 0.99999
        assert body["usage"]["prompt_tokens"] == sum(len(model.tokenizer.encode(["passage: " + t]).ids[0]) for t in texts)
        status, tokens, _ = post(server.url, "/tokenize", {"inputs": "hi", "prompt_name": "query"})
        assert [t["text"] for t in tokens[0]] == ["[CLS]", "query", ":", "hi", "[SEP]"]

        # Requests with different prompts (different pooled spans) sharing batches.
        async def mixed():
            async with aiohttp.ClientSession() as session:

                async def one(i):
                    name = ["query", "passage"][i % 2]
                    async with session.post(server.url + "/embed", json={"inputs": texts, "prompt_name": name}) as r:
                        return name, await r.json()

                return await asyncio.gather(*(one(i) for i in range(40)))

        expected = {name: model.encode(texts, prompt_name=name) for name in PROMPTS}
        for name, vectors in asyncio.run(mixed()):
            assert row_cosines(vectors, expected[name]).min() >= 0.99999
    assert not np.allclose(expected["query"], expected["passage"])
