"""Soak test of `fastembed-rt serve` under abuse, loopback only, bounded in time: valid clients keep sending
one-sentence requests while other clients stall bodies and headers, open silent connections, send 3.5 MB of
text to truncate, ask /tokenize for 35 KB texts, disconnect mid-request and send malformed or oversized
bodies. Reports the valid requests' p50 / p99 alone (baseline) and under abuse, statuses, and the server's RSS
before, at its peak and after.

    .venv/bin/python benchmarks/soak_server.py                       # 20 s baseline, then 120 s of abuse
    .venv/bin/python benchmarks/soak_server.py --seconds 30 --baseline-seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import sys
import time
from pathlib import Path

import aiohttp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_csv import append_rows  # noqa: E402

from fastembed_rt.server.process import ServerProcess  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("FASTEMBED_RT_DATA", ROOT.parent / "shared" / "data"))
HUGE = ("The quick brown fox jumps over the lazy dog. " * 800)[:35000]


def sentences() -> list[str]:
    lines = (DATA / "stsb" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return [s for line in lines for s in line.split("\t")[1:3]]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return int(f.read().split("VmRSS:")[1].split()[0]) / 1024


class Soak:
    def __init__(self, url: str, pid: int, deadline: float):
        self.url, self.pid, self.deadline = url, pid, deadline
        self.host, port = url.removeprefix("http://").split(":")
        self.port = int(port)
        self.latencies: list[float] = []
        self.valid = collections.Counter()
        self.abuse = collections.Counter()
        self.peak_rss = rss_mb(pid)

    def running(self) -> bool:
        return time.monotonic() < self.deadline

    async def valid_client(self, session: aiohttp.ClientSession, texts: list[str], offset: int) -> None:
        i = offset
        while self.running():
            start = time.perf_counter()
            try:
                async with session.post(self.url + "/embed", json={"inputs": texts[i % len(texts)]}) as response:
                    await response.read()
                    self.valid[response.status] += 1
                    if response.status == 200:
                        self.latencies.append((time.perf_counter() - start) * 1000)
            except aiohttp.ClientError as e:
                self.valid[type(e).__name__] += 1
            i += 7

    async def raw(self, name: str, payload: bytes) -> None:
        """Sends `payload` and holds the connection until the server answers or closes it."""
        while self.running():
            try:
                reader, writer = await asyncio.open_connection(self.host, self.port)
                writer.write(payload)
                await writer.drain()
                reply = await asyncio.wait_for(reader.read(), timeout=max(0.1, self.deadline - time.monotonic()))
                self.abuse[f"{name} {reply[9:12].decode() or 'closed'}"] += 1
                writer.close()
            except (TimeoutError, asyncio.TimeoutError):
                self.abuse[f"{name} held to the end"] += 1
            except OSError as e:
                self.abuse[f"{name} {type(e).__name__}"] += 1
                await asyncio.sleep(0.1)

    async def post_loop(self, session, name: str, path: str, body, pause: float, disconnect_after: float | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        while self.running():
            try:
                request = session.post(self.url + path, data=data, headers={"content-type": "application/json"})
                if disconnect_after is not None:
                    try:
                        async with asyncio.timeout(disconnect_after):
                            async with request as response:
                                await response.read()
                    except TimeoutError:
                        self.abuse[f"{name} disconnected"] += 1
                        continue
                    self.abuse[f"{name} {response.status}"] += 1
                else:
                    async with request as response:
                        await response.read()
                        self.abuse[f"{name} {response.status}"] += 1
            except aiohttp.ClientError as e:
                self.abuse[f"{name} {type(e).__name__}"] += 1
            await asyncio.sleep(pause)

    async def watch_memory(self) -> None:
        while self.running():
            self.peak_rss = max(self.peak_rss, rss_mb(self.pid))
            await asyncio.sleep(0.25)


async def run_phase(url: str, pid: int, seconds: float, texts: list[str], valid_clients: int, abusive: bool) -> Soak:
    soak = Soak(url, pid, time.monotonic() + seconds)
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as valid, \
               aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=True), timeout=timeout) as rogue:  # fmt: skip
        tasks = [soak.valid_client(valid, texts, i) for i in range(valid_clients)] + [soak.watch_memory()]
        if abusive:
            stalled_body = b"POST /embed HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 20\r\n\r\n{\"i"
            tasks += [soak.raw("stalled body", stalled_body) for _ in range(20)]
            tasks += [soak.raw("stalled headers", b"POST /embed HTTP/1.1\r\nhost: x\r\n") for _ in range(20)]
            tasks += [soak.raw("silent connection", b"") for _ in range(20)]
            tasks += [
                soak.post_loop(rogue, "3.5 MB truncated", "/embed", {"inputs": [HUGE] * 100, "truncate": True}, 1.0),
                soak.post_loop(rogue, "35 KB /tokenize", "/tokenize", {"inputs": [HUGE] * 100}, 0.2),
                soak.post_loop(rogue, "leaves mid-request", "/embed", {"inputs": [HUGE] * 64, "truncate": True}, 0.2, 0.05),
                soak.post_loop(rogue, "malformed JSON", "/embed", b'{"inputs": ["x"', 0.1),
                soak.post_loop(rogue, "5 MB body", "/embed", {"inputs": ["y" * (5 << 20)]}, 0.5),
            ]
        await asyncio.gather(*tasks)
    return soak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--seconds", type=float, default=120.0, help="length of the abusive phase")
    parser.add_argument("--baseline-seconds", type=float, default=20.0, help="length of the valid-only phase before it")
    parser.add_argument("--valid-clients", type=int, default=4)
    args = parser.parse_args()
    texts = sentences()
    with ServerProcess(["--model", args.model]) as server:
        pid = server.proc.pid
        rss_start = rss_mb(pid)
        base = asyncio.run(run_phase(server.url, pid, args.baseline_seconds, texts, args.valid_clients, abusive=False))
        rss_base = rss_mb(pid)
        soak = asyncio.run(run_phase(server.url, pid, args.seconds, texts, args.valid_clients, abusive=True))
        time.sleep(3.0)  # quiet: the server gives back what the burst left
        rss_after = rss_mb(pid)
        alive = server.proc.poll() is None
    rows, table = [], []
    for name, phase, seconds in (("baseline", base, args.baseline_seconds), ("abuse", soak, args.seconds)):
        p50, p99 = np.percentile(phase.latencies, [50, 99]) if phase.latencies else (float("nan"),) * 2
        failures = sum(v for k, v in phase.valid.items() if k != 200)
        abuse = ", ".join(f"{k}: {v}" for k, v in sorted(phase.abuse.items()))
        rows.append([name, seconds, args.valid_clients, len(phase.latencies), failures, round(p50, 2), round(p99, 2),
                     round(rss_start, 1), round(phase.peak_rss, 1), round(rss_base if name == "baseline" else rss_after, 1),
                     alive, abuse])  # fmt: skip
        table.append(f"| {name} | {len(phase.latencies):,} | {failures} | {p50:.2f} | {p99:.2f} | {phase.peak_rss:.0f} |")
    print(f"| phase | valid 200s | valid failures | p50 ms | p99 ms | peak RSS MB |\n|---|---|---|---|---|---|")
    print("\n".join(table))
    print(f"RSS: {rss_start:.0f} MB at start, {rss_base:.0f} MB after the baseline, {soak.peak_rss:.0f} MB at the peak of the "
          f"abuse, {rss_after:.0f} MB 3 s after it; server alive: {alive}")  # fmt: skip
    print("abuse:", ", ".join(f"{k}: {v}" for k, v in sorted(soak.abuse.items())))
    append_rows("soak.csv", ["phase", "seconds", "valid_clients", "valid_ok", "valid_failures", "p50_ms", "p99_ms",
                             "rss_start_mb", "rss_peak_mb", "rss_end_mb", "server_alive", "abuse"], rows)  # fmt: skip


if __name__ == "__main__":
    main()
