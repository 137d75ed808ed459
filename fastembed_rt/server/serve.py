"""`fastembed-rt serve`: load the model, warm it up, and run the API under uvicorn until SIGTERM/SIGINT.

On SIGTERM uvicorn stops accepting connections and waits for the requests in flight to be answered; the
batcher then embeds what is still queued and stops (EmbeddingServer's lifespan shutdown)."""

from __future__ import annotations

import importlib.util
import socket
import sys
from pathlib import Path

from .config import ServerConfig
from .protocol import with_header_timeout


def bind(host: str, port: int) -> socket.socket:
    """A listening socket; port 0 takes a free one. Listening before the model loads means early clients
    wait in the backlog instead of being refused."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def warm_up(embedder, max_batch_tokens: int) -> None:
    """One short query (the fused small-batch path) and one full batch, so that the first requests do not
    pay for oneDNN's kernel generation and buffer allocation."""
    embedder.encode(["warm up"])
    embedder.encode(["warm up " * 60] * max(1, max_batch_tokens // 128), batch_tokens=max_batch_tokens)


def serve(model: str, config: ServerConfig, *, device: str | None = None, dtype: str | None = None,
          revision: str | None = None, log_level: str = "warning") -> None:  # fmt: skip
    import uvicorn

    from ..engine import load
    from .app import EmbeddingServer

    sock = bind(config.host, config.port)
    host, port = sock.getsockname()[:2]
    embedder = load(model, device=device, dtype=dtype, revision=revision)
    warm_up(embedder, config.max_batch_tokens)
    name = config.served_model_name or (embedder.spec.hub.repo_id if embedder.spec.hub else Path(str(model)).name)

    def ready():
        print(f"fastembed-rt: serving {name} on http://{host}:{port}", flush=True)

    app = EmbeddingServer(embedder, config, name, on_ready=ready)
    uvicorn_config = uvicorn.Config(
        app,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http=with_header_timeout(config.header_timeout),
        limit_concurrency=config.max_connections + 1,  # uvicorn counts the new connection too; beyond: 503
        lifespan="on",
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=None,  # drain: wait for every request in flight
    )  # fmt: skip
    server = uvicorn.Server(uvicorn_config)
    server.run(sockets=[sock])
    if not server.started:
        sys.exit(1)
