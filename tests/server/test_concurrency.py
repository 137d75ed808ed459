"""200 concurrent requests from a bounded async client: every answer right, in order within its request."""

import asyncio
import random

import aiohttp

from fastembed_rt.testing import row_cosines

from .conftest import MODEL_NAME, metric


def test_200_concurrent_requests_each_get_their_own_vectors_in_order(server, minilm, data_dir):
    lines = (data_dir / "stsb" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    pool = [s for line in lines[:300] for s in line.split("\t")[1:3]]
    expected = minilm.encode(pool)
    rng = random.Random(7)
    requests = [rng.sample(range(len(pool)), rng.randint(1, 12)) for _ in range(200)]
    batches_before = metric(server.url, "fastembed_rt_batch_size_texts_count")

    async def run():
        limit = asyncio.Semaphore(64)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:

            async def one(i, picks):
                texts = [pool[j] for j in picks]
                async with limit:
                    if i % 2:  # half OpenAI, half TEI
                        async with session.post(server.url + "/v1/embeddings", json={"input": texts, "model": MODEL_NAME}) as r:
                            body = await r.json()
                            return r.status, [d["embedding"] for d in sorted(body["data"], key=lambda d: d["index"])], body
                    async with session.post(server.url + "/embed", json={"inputs": texts}) as r:
                        body = await r.json()
                        return r.status, body, body

            return await asyncio.gather(*(one(i, picks) for i, picks in enumerate(requests)))

    answers = asyncio.run(run())
    for i, ((status, vectors, body), picks) in enumerate(zip(answers, requests)):
        assert status == 200, body
        if i % 2:
            assert [d["index"] for d in body["data"]] == list(range(len(picks)))
        assert row_cosines(vectors, expected[picks]).min() >= 0.99999, f"request {i}"
    texts = sum(len(p) for p in requests)
    batches = metric(server.url, "fastembed_rt_batch_size_texts_count") - batches_before
    assert batches < len(requests), f"{texts} texts of {len(requests)} requests ran in {batches} batches: none shared"
