"""Dynamic batching: the texts of concurrent requests share token-budget batches on one model worker.

    event loop ──submit(Job)──▶ queue ──batcher thread: cut + pack──▶ hand-off (1 slot) ──▶ model thread
        ▲                                                                                       │
        └─────────────────────────── call_soon_threadsafe(job's future) ◀──────────────────────┘

As in TEI, a batch is cut by a token budget (and a cap on texts). It takes one text of each waiting request in
turn, and is cut only when the model is done with the previous one (packing 4,096 tokens took 0.14 ms here),
so that a request that comes in while a batch runs rides the next one, even behind a request of
thousands of texts that holds the model for seconds. A partial batch waits at most `max_wait_ms`,
and only while requests are still being tokenized (announced): with nothing on its way, waiting would
only add latency. Texts of a request whose client went away are dropped before they take a batch slot.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections import deque

import numpy as np

from ..tokenization import pack
from .memory import release_free_memory
from .metrics import Metrics


class BatcherClosed(RuntimeError):
    """submit() after close(): the server is shutting down."""


class Job:
    """One request's token sequences on their way through the model; `future` gets float32 [n, width] (vectors,
    or a reranker's logits), or with width None a list of n per-sequence arrays (a late-interaction model's token
    vectors). token_types: the segment of each token of text pairs, or None; is_query: per sequence, whether a
    late-interaction model takes it as a query, or None."""

    def __init__(self, ids: list[list[int]], skip: list[int], dimension: int | None, loop: asyncio.AbstractEventLoop,
                 token_types: list[list[int]] | None = None, is_query: list[bool] | None = None):  # fmt: skip
        self.ids, self.skip, self.token_types, self.is_query = ids, skip, token_types, is_query
        self.loop = loop
        self.future: asyncio.Future = loop.create_future()
        self.vectors = [None] * len(ids) if dimension is None else np.empty((len(ids), dimension), dtype=np.float32)
        self.next = 0  # first sequence not yet cut into a batch
        self.remaining = len(ids)  # sequences not yet embedded
        self.cancelled = False
        self.enqueued = time.perf_counter()
        self.queue_seconds: float | None = None  # until its first batch started
        self.inference_seconds = 0.0  # model time of the batches it took part in

    @property
    def num_tokens(self) -> int:
        return sum(len(x) for x in self.ids)

    def cancel(self) -> None:
        """The client went away: its sequences not yet batched are dropped (set from the event loop)."""
        self.cancelled = True

    def _settle(self, result=None, error: BaseException | None = None) -> None:
        def settle():
            if self.future.done():  # cancelled: its handler has gone
                return
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(result)

        try:
            self.loop.call_soon_threadsafe(settle)
        except RuntimeError:  # the event loop is closed: nobody is waiting any more
            pass


class Batcher:
    def __init__(self, embed_batch, metrics: Metrics, *, max_batch_tokens: int, max_batch_texts: int, max_wait_ms: float):
        """embed_batch(PackedBatch) -> float32 [num_seqs, width] runs on the model thread (an embedder's vectors or a
        reranker's logits)."""
        self.embed_batch = embed_batch
        self.metrics = metrics
        self.max_batch_tokens, self.max_batch_texts = max_batch_tokens, max_batch_texts
        self.max_wait = max_wait_ms / 1000.0
        self._jobs: deque[Job] = deque()
        self._cond = threading.Condition()
        self._queued_texts = 0
        self._announced = 0  # requests being tokenized, whose texts will arrive soon
        self._closing = False
        self._handoff: queue.Queue = queue.Queue(maxsize=1)
        self._slot = threading.Semaphore(1)  # the next batch is cut when the model is done with the last one
        self._tokens_since_release = 0
        self._threads = [
            threading.Thread(target=self._cut_batches, name="fastembed-batcher", daemon=True),
            threading.Thread(target=self._run_model, name="fastembed-model", daemon=True),
        ]

    # --- event loop side -------------------------------------------------------------------------------
    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def alive(self) -> bool:
        return all(t.is_alive() for t in self._threads) and not self._closing

    @property
    def queued_texts(self) -> int:
        return self._queued_texts

    def announce(self) -> None:
        """A request is being tokenized: a partial batch may wait (max_wait_ms) for its texts."""
        with self._cond:
            self._announced += 1

    def withdraw(self) -> None:
        """An announced request will not submit (it failed validation or its client left)."""
        with self._cond:
            self._announced -= 1
            self._cond.notify()

    def submit(self, job: Job, announced: bool = True) -> None:
        with self._cond:
            if self._closing:
                raise BatcherClosed("the server is shutting down")
            if announced:
                self._announced -= 1
            if job.ids:
                self._jobs.append(job)
                self._queued_texts += len(job.ids)
            self._cond.notify()
        if not job.ids:
            job._settle(job.vectors)

    def close(self) -> None:
        """Embeds what is queued, then stops both threads."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        for thread in self._threads:
            thread.join()

    # --- batcher thread --------------------------------------------------------------------------------
    def _take(self, items: list, tokens: int) -> tuple[int, bool]:
        """Moves queued sequences into `items` while they fit; returns the tokens and whether it is full.
        One sequence per request in turn (round robin), so that a request of one sentence rides the next batch
        even behind a request of thousands of texts, which would otherwise hold the model for seconds."""
        while self._jobs:
            job = self._jobs[0]
            if job.cancelled:
                dropped = len(job.ids) - job.next
                job.next = len(job.ids)
                self._jobs.popleft()
                self._queued_texts -= dropped
                self.metrics.cancelled_texts.inc(dropped)
                continue
            length = len(job.ids[job.next])
            if items and (tokens + length > self.max_batch_tokens or len(items) >= self.max_batch_texts):
                return tokens, True
            items.append((job, job.next))
            tokens += length
            job.next += 1
            self._queued_texts -= 1
            if job.next == len(job.ids):
                self._jobs.popleft()
            else:
                self._jobs.rotate(-1)
        return tokens, False

    def _next_batch(self) -> list | None:
        with self._cond:
            while not self._jobs and not self._closing:
                self._cond.wait()
            items: list = []
            tokens, full = self._take(items, 0)
            deadline = time.perf_counter() + self.max_wait
            while not full and self._announced > 0 and not self._closing:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                self._cond.wait(left)
                tokens, full = self._take(items, tokens)
            if not items and self._closing and not self._jobs:
                return None
            return items

    def _cut_batches(self) -> None:
        try:
            while True:
                self._slot.acquire()  # as late as possible: requests that come in meanwhile ride it
                if (items := self._next_batch()) is None:
                    break
                if items:
                    ids = [job.ids[i] for job, i in items]
                    types = None
                    if any(job.token_types is not None for job, _ in items):
                        types = [job.token_types[i] if job.token_types else [0] * len(job.ids[i]) for job, i in items]
                    flags = None
                    if any(job.is_query is not None for job, _ in items):
                        flags = [bool(job.is_query and job.is_query[i]) for job, i in items]
                    batch = pack(ids, skip=[job.skip[i] for job, i in items], token_types=types, is_query=flags)
                    self._handoff.put((items, batch))
                else:
                    self._slot.release()
        finally:
            self._handoff.put(None)

    # --- model thread ----------------------------------------------------------------------------------
    def _run_model(self) -> None:
        while (work := self._handoff.get()) is not None:
            try:
                tokens = self._embed(*work)
            finally:
                self._slot.release()  # now cut the next batch, with the requests that came in meanwhile
            del work  # the batch's memory is free before the allocator is asked to give it back
            # Out of work after at least a full batch's worth of tokens: give back what the burst left
            # (about 5 ms after a burst; not after every single query).
            self._tokens_since_release += tokens
            if self._tokens_since_release >= self.max_batch_tokens and not self._jobs:
                self._tokens_since_release = 0
                release_free_memory()

    def _embed(self, items: list, batch) -> int:
        """Runs one batch and settles the requests it completes; returns its token count."""
        jobs = list({id(job): job for job, _ in items}.values())
        if all(job.cancelled for job in jobs):
            self.metrics.cancelled_texts.inc(len(items))
            return 0
        start = time.perf_counter()
        for job in jobs:
            if job.queue_seconds is None:
                job.queue_seconds = start - job.enqueued
        try:
            vectors = self.embed_batch(batch)
        except Exception as error:  # one bad batch fails its requests, not the server
            for job in jobs:
                job._settle(error=error)
            return 0
        elapsed = time.perf_counter() - start
        self.metrics.inference_seconds.observe(elapsed)
        self.metrics.batch_texts.observe(len(items))
        self.metrics.batch_tokens.observe(batch.num_tokens)
        self.metrics.embedded_texts.inc(len(items))
        for job in jobs:
            job.inference_seconds += elapsed
        for (job, i), vector in zip(items, vectors):
            job.vectors[i] = vector
            job.remaining -= 1
            if job.remaining == 0:
                job._settle(job.vectors)
        return batch.num_tokens
