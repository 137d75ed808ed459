"""Real `fastembed-rt serve` processes on free loopback ports, and a plain HTTP client for them."""

import http.client
import json
from urllib.parse import urlsplit

import pytest

from fastembed_rt.server.process import ServerProcess

API_KEY = "test-key-123"
MODEL_NAME = "all-MiniLM-L6-v2"  # the name the fixtures' servers serve it under


def request(url: str, method: str, path: str, body=None, headers: dict | None = None, raw: bytes | None = None):
    """(status, decoded JSON or text, headers) of one request on a fresh connection."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        payload = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        connection.request(method, path, body=payload, headers={"content-type": "application/json", **(headers or {})})
        response = connection.getresponse()
        data = response.read()
        kind = response.getheader("content-type", "")
        return response.status, json.loads(data) if "json" in kind else data.decode(), dict(response.getheaders())
    finally:
        connection.close()


def post(url, path, body=None, **kwargs):
    return request(url, "POST", path, body, **kwargs)


def get(url, path, **kwargs):
    return request(url, "GET", path, **kwargs)


def metric(url: str, name: str, headers: dict | None = None) -> float:
    """One sample's value from GET /metrics (0 when absent)."""
    _, text, _ = get(url, "/metrics", headers=headers)
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


@pytest.fixture(scope="module")
def server(minilm_path):
    """Default limits, no API key."""
    with ServerProcess(["--model", str(minilm_path), "--served-model-name", MODEL_NAME]) as process:
        yield process


@pytest.fixture(scope="module")
def limited_server(minilm_path):
    """Small limits, so that each one can be hit."""
    args = ["--model", str(minilm_path), "--served-model-name", MODEL_NAME, "--max-concurrent-requests", "2", "--max-client-batch-size", "8",
            "--max-request-bytes", "20000"]  # fmt: skip
    with ServerProcess(args) as process:
        yield process


@pytest.fixture(scope="module")
def auth_server(minilm_path):
    with ServerProcess(["--model", str(minilm_path), "--served-model-name", MODEL_NAME, "--api-key", API_KEY, "--auto-truncate"]) as process:
        yield process
