"""Serving benchmark: `fastembed-rt serve` against infinity-emb, the same model on the same machine, one run.

A bounded async client (aiohttp, keep-alive connections) sends a fixed number of OpenAI-style embedding
requests at concurrency 1, 8 and 64, with one sentence per request and with 32 texts per request, and
reports p50/p99 latency and texts/s. Texts are STS-B dev sentences from ../shared/data. Each server runs
alone while it is measured. infinity-emb lives in its own virtual environment (its pins clash with ours):
make it with benchmarks/setup_infinity.sh.

With --rerank: Cohere-style rerank requests (/v1/rerank, infinity's /rerank) of one ArguAna query against 20
ArguAna passages, at concurrency 1 and 16, on a MiniLM-L6 cross-encoder (the bundled all-MiniLM-L6-v2 encoder
under a random classifier, testing.cross_encoder_from); "texts" are then documents (query-document pairs).

    .venv/bin/python benchmarks/bench_server.py                  # ours (float32, bfloat16, int8) and infinity
    .venv/bin/python benchmarks/bench_server.py --systems ours   # ours alone
    .venv/bin/python benchmarks/bench_server.py --rerank
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_csv import append_rows  # noqa: E402

from fastembed_rt.loading import resolve_model_path  # noqa: E402
from fastembed_rt.server.process import ServerProcess  # noqa: E402
from fastembed_rt.testing import cross_encoder_from  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("FASTEMBED_RT_DATA", ROOT.parent / "shared" / "data"))
INFINITY = ROOT / ".venv-infinity" / "bin" / "infinity_emb"
# (concurrency, texts per request, requests); one-sentence requests are the latency case.
CASES = [(1, 1, 300), (8, 1, 800), (64, 1, 2000), (1, 32, 30), (8, 32, 64), (64, 32, 128)]
RERANK_CASES = [(1, 20, 12), (16, 20, 64)]  # one query against 20 passages per request


def sentences() -> list[str]:
    lines = (DATA / "stsb" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return [s for line in lines for s in line.split("\t")[1:3]]


def passages() -> tuple[list[str], list[str]]:
    """ArguAna queries (their first 40 words) and passages."""
    def texts(name, words=None):
        lines = (DATA / "arguana" / name).read_text(encoding="utf-8").splitlines()[:200]
        return [" ".join(json.loads(line)["text"].split()[:words]) for line in lines]

    return texts("queries.jsonl", 40), texts("corpus.jsonl")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Infinity:
    """infinity-emb v2 serving a local model directory, torch engine on the CPU."""

    def __init__(self, model: Path, timeout: float = 300.0):
        if not INFINITY.exists():
            raise SystemExit(f"{INFINITY} is missing: run benchmarks/setup_infinity.sh first")
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [str(INFINITY), "v2", "--model-id", str(model), "--served-model-name", "model", "--engine", "torch",
             "--device", "cpu", "--port", str(port), "--log-level", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit("infinity_emb exited while starting")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    pass
                asyncio.run(_get(self.url + "/health"))
                return
            except (OSError, aiohttp.ClientError):
                time.sleep(0.5)
        self.proc.kill()
        raise SystemExit("infinity_emb did not start in time")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(60)


async def _get(url: str) -> None:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        response.raise_for_status()


def request_body(texts: list[str], n: int, per_request: int, queries: list[str] | None) -> dict:
    """Request n: an embedding request of `per_request` texts, or (with queries) a rerank of that many passages."""
    start = n * per_request % (len(texts) - per_request)
    if queries is None:
        return {"input": texts[start : start + per_request], "model": "model"}
    return {"model": "model", "query": queries[n % len(queries)], "documents": texts[start : start + per_request]}


def answer(payload: dict, queries) -> list:
    """The vectors of an embedding answer, or the scores of a rerank answer in document order."""
    if queries is None:
        return [d["embedding"] for d in payload["data"]]
    return [r["relevance_score"] for r in sorted(payload["results"], key=lambda r: r["index"])]


async def load(url: str, texts: list[str], concurrency: int, per_request: int, requests: int, queries=None):
    """Latencies (s) of `requests` requests sent by `concurrency` workers, the wall time, and one response."""
    connector = aiohttp.TCPConnector(limit=concurrency)
    latencies: list[float] = []
    first: list = []
    counter = iter(range(requests))

    async def worker(session):
        for n in counter:
            body = request_body(texts, n, per_request, queries)
            began = time.perf_counter()
            async with session.post(url, json=body) as response:
                payload = await response.json()
                if response.status != 200 or len(answer(payload, queries)) != per_request:
                    raise RuntimeError(f"{url}: status {response.status}: {str(payload)[:300]}")
            latencies.append(time.perf_counter() - began)
            if not first:
                first.append((body, answer(payload, queries)))

    async with aiohttp.ClientSession(connector=connector) as session:
        for n in range(3):  # warm the connections and the server
            async with session.post(url, json=request_body(texts, n, per_request, queries)) as response:
                await response.read()
        began = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        wall = time.perf_counter() - began
    return np.array(latencies), wall, first[0]


def measure(system: str, url: str, texts: list[str], cases, queries=None) -> tuple[list[dict], tuple]:
    rows, sample = [], None
    for concurrency, per_request, requests in cases:
        latencies, wall, first = asyncio.run(load(url, texts, concurrency, per_request, requests, queries))
        sample = sample or first
        rows.append({
            "system": system, "concurrency": concurrency, "texts_per_request": per_request, "requests": requests,
            "p50_ms": 1000 * float(np.median(latencies)), "p99_ms": 1000 * float(np.percentile(latencies, 99)),
            "texts_per_s": requests * per_request / wall,
        })  # fmt: skip
        r = rows[-1]
        print(f"  {system:18} c={concurrency:<3} {per_request:>2} texts/request  p50 {r['p50_ms']:8.2f} ms  "
              f"p99 {r['p99_ms']:8.2f} ms  {r['texts_per_s']:8.1f} texts/s", flush=True)  # fmt: skip
    return rows, sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--systems", default="ours,ours-bfloat16,ours-int8,infinity",
                        help="comma-separated: ours (float32), ours-DTYPE (bfloat16, int8), infinity (float32)")
    parser.add_argument("--rerank", action="store_true", help="rerank requests on a MiniLM-L6 cross-encoder instead")
    args = parser.parse_args()
    model = resolve_model_path(args.model)
    if args.rerank:
        model = cross_encoder_from(model, Path(tempfile.mkdtemp(prefix="bench_server_ce_")))
        queries, texts = passages()
        cases, routes = RERANK_CASES, ("/v1/rerank", "/rerank")
    else:
        queries, texts, cases, routes = None, sentences(), CASES, ("/v1/embeddings", "/embeddings")
    results, samples = [], {}
    for system in args.systems.split(","):
        print(f"{system}:", flush=True)
        if system == "infinity":
            server = Infinity(model)
            url = server.url + routes[1]
        else:
            dtype = ["--dtype", system.removeprefix("ours-")] if system.startswith("ours-") else []
            server = ServerProcess(["--model", str(model), "--served-model-name", "model", *dtype])
            url = server.url + routes[0]
        try:
            rows, samples[system] = measure(system, url, texts, cases, queries)
            results += rows
        finally:
            server.stop()

    # The same numbers: every system's answer to the same first request, against the first system's.
    names = list(samples)
    reference = np.array(samples[names[0]][1])
    for name in names[1:]:
        other = np.array(samples[name][1])
        if queries is None:
            cos = (reference * other).sum(1) / np.linalg.norm(reference, axis=1) / np.linalg.norm(other, axis=1)
            print(f"min cosine {name} vs {names[0]}: {cos.min():.6f}")
        else:
            print(f"max score difference {name} vs {names[0]}: {np.abs(reference - other).max():.2e}")

    peer = {(r["concurrency"], r["texts_per_request"]): r for r in results if r["system"] == "infinity"}
    print(f"\n{'system':18}{'conc':>5}{'texts/req':>10}{'p50 ms':>10}{'p99 ms':>10}{'texts/s':>10}{'x thru':>8}{'p99 ratio':>10}")
    csv_rows = []
    for r in results:
        base = peer.get((r["concurrency"], r["texts_per_request"]))
        speed = r["texts_per_s"] / base["texts_per_s"] if base else float("nan")
        p99_ratio = r["p99_ms"] / base["p99_ms"] if base else float("nan")
        print(f"{r['system']:18}{r['concurrency']:>5}{r['texts_per_request']:>10}{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}"
              f"{r['texts_per_s']:>10.1f}{speed:>8.2f}{p99_ratio:>10.3f}")  # fmt: skip
        csv_rows.append([r["system"], r["concurrency"], r["texts_per_request"], r["requests"], round(r["p50_ms"], 3),
                         round(r["p99_ms"], 3), round(r["texts_per_s"], 1), round(speed, 3), round(p99_ratio, 4)])  # fmt: skip
    append_rows("server_rerank.csv" if args.rerank else "server.csv", ["system", "concurrency", "texts_per_request", "requests", "p50_ms", "p99_ms", "texts_per_s",
                               "throughput_vs_infinity", "p99_vs_infinity"], csv_rows)  # fmt: skip


if __name__ == "__main__":
    main()
