"""The dynamic batcher on its own (no HTTP): budgets, sharing, order, waiting, cancellation, failure, drain."""

import asyncio
import random
import threading
import time

import numpy as np
import pytest

from fastembed_rt.server.batcher import Batcher, BatcherClosed, Job
from fastembed_rt.server.metrics import Metrics

DIM = 3


class FakeModel:
    """Records each batch; a sequence's vector is (first token, length, skip), so answers can be checked."""

    def __init__(self, gate: threading.Event | None = None, fail_on: int | None = None):
        self.batches: list[list[list[int]]] = []
        self.gate, self.fail_on = gate, fail_on

    def __call__(self, batch):
        if self.gate is not None:
            self.gate.wait(10)
        cu = batch.cu_seqlens.tolist()
        ids = batch.input_ids.tolist()
        seqs = [ids[a:b] for a, b in zip(cu, cu[1:])]
        self.batches.append(seqs)
        if self.fail_on is not None and any(s and s[0] == self.fail_on for s in seqs):
            raise ValueError("model failure")
        skip = batch.skip.tolist() if batch.skip is not None else [0] * len(seqs)
        return np.array([[s[0], len(s), k] for s, k in zip(seqs, skip)], dtype=np.float32).reshape(-1, DIM)


def expected(ids, skip):
    return np.array([[s[0], len(s), k] for s, k in zip(ids, skip)], dtype=np.float32).reshape(-1, DIM)


def make_batcher(model, **limits):
    options = {"max_batch_tokens": 64, "max_batch_texts": 8, "max_wait_ms": 0.0, **limits}
    return Batcher(model, Metrics(), **options)


def random_job(rng, loop, first_token):
    n = rng.randint(1, 6)
    ids = [[first_token + i] + [7] * rng.randint(0, 30) for i in range(n)]
    return Job(ids, [rng.randint(0, 2) for _ in range(n)], DIM, loop)


def test_concurrent_jobs_share_budgeted_batches_and_get_their_own_rows_in_order():
    rng = random.Random(0)

    async def main():
        model = FakeModel()
        batcher = make_batcher(model)
        loop = asyncio.get_running_loop()
        jobs = [random_job(rng, loop, 100 * j) for j in range(20)]
        for job in jobs:  # all queued before the worker starts: batches are cut from many requests
            batcher.submit(job, announced=False)
        batcher.start()
        results = await asyncio.wait_for(asyncio.gather(*(job.future for job in jobs)), 10)
        batcher.close()
        return model, jobs, results, batcher

    model, jobs, results, batcher = asyncio.run(main())
    for job, result in zip(jobs, results):
        np.testing.assert_array_equal(result, expected(job.ids, job.skip))
    for seqs in model.batches:
        assert len(seqs) <= 8
        assert len(seqs) == 1 or sum(map(len, seqs)) <= 64
    owners = [{s[0] // 100 for s in seqs} for seqs in model.batches]
    assert max(len(o) for o in owners) >= 2, "texts of different requests never shared a batch"
    assert sum(len(s) for s in model.batches) == sum(len(j.ids) for j in jobs)
    assert batcher.metrics.embedded_texts.value() == sum(len(j.ids) for j in jobs)
    assert batcher.queued_texts == 0


def test_a_sequence_longer_than_the_budget_travels_alone():
    async def main():
        model = FakeModel()
        batcher = make_batcher(model, max_batch_tokens=10)
        loop = asyncio.get_running_loop()
        job = Job([[1, 2], [3] * 25, [4, 5]], [0, 0, 0], DIM, loop)
        batcher.submit(job, announced=False)
        batcher.start()
        result = await asyncio.wait_for(job.future, 10)
        batcher.close()
        return model, result

    model, result = asyncio.run(main())
    assert [[len(s) for s in b] for b in model.batches] == [[2], [25], [2]]
    np.testing.assert_array_equal(result[:, 1], [2, 25, 2])


def test_a_cancelled_job_never_takes_a_batch_slot():
    async def main():
        gate = threading.Event()
        model = FakeModel(gate)
        batcher = make_batcher(model, max_batch_texts=1)
        loop = asyncio.get_running_loop()
        busy = Job([[1]], [0], DIM, loop)
        batcher.submit(busy, announced=False)
        batcher.start()
        gone = Job([[200], [201], [202], [203]], [0] * 4, DIM, loop)
        batcher.submit(gone, announced=False)
        gone.cancel()
        after = Job([[300]], [0], DIM, loop)
        batcher.submit(after, announced=False)
        gate.set()
        await asyncio.wait_for(asyncio.gather(busy.future, after.future), 10)
        batcher.close()
        return model, batcher

    model, batcher = asyncio.run(main())
    embedded = [s[0] for seqs in model.batches for s in seqs]
    # One of the cancelled texts may already have been cut (prepared ahead) before the cancel; no more.
    assert sum(200 <= t < 300 for t in embedded) <= 1
    assert 300 in embedded
    assert batcher.metrics.cancelled_texts.value() >= 3


def test_a_partial_batch_waits_for_announced_requests_and_no_longer_than_max_wait():
    async def main():
        model = FakeModel()
        batcher = make_batcher(model, max_wait_ms=300.0)
        batcher.start()
        loop = asyncio.get_running_loop()
        # Two requests are being tokenized; the first arrives, the second 50 ms later: one batch.
        batcher.announce()
        batcher.announce()
        a, b = Job([[1]], [0], DIM, loop), Job([[2]], [0], DIM, loop)
        batcher.submit(a)
        await asyncio.sleep(0.05)
        batcher.submit(b)
        await asyncio.wait_for(asyncio.gather(a.future, b.future), 10)
        shared = list(model.batches)
        # Nothing announced: a lone request runs at once.
        start = time.perf_counter()
        c = Job([[3]], [0], DIM, loop)
        batcher.submit(c, announced=False)
        await asyncio.wait_for(c.future, 10)
        alone = time.perf_counter() - start
        # Announced but never submitted: the batch goes after max_wait_ms.
        batcher.announce()
        start = time.perf_counter()
        d = Job([[4]], [0], DIM, loop)
        batcher.submit(d, announced=False)
        await asyncio.wait_for(d.future, 10)
        waited = time.perf_counter() - start
        batcher.withdraw()
        batcher.close()
        return shared, alone, waited

    shared, alone, waited = asyncio.run(main())
    assert shared == [[[1], [2]]]
    assert alone < 0.2
    assert 0.25 <= waited < 5


def test_a_failing_batch_fails_its_requests_and_the_batcher_keeps_serving():
    async def main():
        batcher = make_batcher(FakeModel(fail_on=666), max_batch_texts=1)
        batcher.start()
        loop = asyncio.get_running_loop()
        bad = Job([[666]], [0], DIM, loop)
        batcher.submit(bad, announced=False)
        with pytest.raises(ValueError, match="model failure"):
            await asyncio.wait_for(bad.future, 10)
        good = Job([[5, 5]], [1], DIM, loop)
        batcher.submit(good, announced=False)
        result = await asyncio.wait_for(good.future, 10)
        batcher.close()
        return result

    np.testing.assert_array_equal(asyncio.run(main()), [[5, 2, 1]])


def test_close_embeds_what_is_queued_then_refuses_more():
    async def main():
        gate = threading.Event()
        batcher = make_batcher(FakeModel(gate), max_batch_texts=2)
        loop = asyncio.get_running_loop()
        jobs = [Job([[10 * i], [10 * i + 1], [10 * i + 2]], [0, 0, 0], DIM, loop) for i in range(1, 6)]
        for job in jobs:
            batcher.submit(job, announced=False)
        batcher.start()
        closing = loop.run_in_executor(None, batcher.close)
        await asyncio.sleep(0.05)
        gate.set()
        results = await asyncio.wait_for(asyncio.gather(*(j.future for j in jobs)), 10)
        await closing
        with pytest.raises(BatcherClosed):
            batcher.submit(Job([[1]], [0], DIM, loop), announced=False)
        return jobs, results, batcher

    jobs, results, batcher = asyncio.run(main())
    for job, result in zip(jobs, results):
        np.testing.assert_array_equal(result, expected(job.ids, job.skip))
    assert not batcher.alive()


def test_an_empty_job_resolves_at_once():
    async def main():
        batcher = make_batcher(FakeModel())
        batcher.start()
        job = Job([], [], DIM, asyncio.get_running_loop())
        batcher.submit(job, announced=False)
        result = await asyncio.wait_for(job.future, 5)
        batcher.close()
        return result

    assert asyncio.run(main()).shape == (0, DIM)


def test_a_one_text_request_rides_the_next_batch_behind_a_huge_one():
    """Round robin between requests: a request of thousands of texts does not hold the model for all of them
    while a one-sentence request waits behind it (before: FIFO, the sentence waited for every batch)."""

    async def main():
        gate = threading.Event()
        model = FakeModel(gate)
        batcher = make_batcher(model)  # 8 texts or 64 tokens a batch
        loop = asyncio.get_running_loop()
        huge = Job([[1000 + i, 7, 7] for i in range(200)], [0] * 200, DIM, loop)
        small = Job([[5]], [0], DIM, loop)
        batcher.submit(huge, announced=False)
        batcher.start()
        await asyncio.sleep(0.2)  # the first batch runs (held by the gate) and the next one is cut ahead
        batcher.submit(small, announced=False)
        gate.set()
        np.testing.assert_array_equal(await small.future, expected([[5]], [0]))
        await huge.future
        batcher.close()
        # Batch 0 was running when the sentence came; it rode batch 1 (0 if the threads had not started yet),
        # not batch 25 after the 200 texts.
        position = next(i for i, batch in enumerate(model.batches) if [5] in batch)
        assert position <= 1 and len(model.batches) == 26, [len(b) for b in model.batches]

    asyncio.run(main())
