"""`fastembed-rt serve`: load the model, warm it up, and run the API under uvicorn until SIGTERM/SIGINT.

On SIGTERM uvicorn stops accepting connections and waits for the requests in flight to be answered; the
batcher then embeds what is still queued and stops (ModelServer's lifespan shutdown)."""

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


def warm_up(model, max_batch_tokens: int) -> None:
    """One short input (the fused small-batch path) and one full batch, so that the first requests do not pay for
    oneDNN's kernel generation and buffer allocation."""
    from ..reranker import Reranker

    if isinstance(model, Reranker):
        model.predict([("warm", "up")])
        model.predict([("warm up", "warm up " * 60)] * max(1, max_batch_tokens // 128), batch_tokens=max_batch_tokens)
    else:
        model.encode(["warm up"])
        model.encode(["warm up " * 60] * max(1, max_batch_tokens // 128), batch_tokens=max_batch_tokens)


def load_models(models: list[str], rerankers: list[str], config: ServerConfig, *, device: str | None = None,
                dtype: str | None = None, revision: str | None = None) -> dict:  # fmt: skip
    """name → loaded model, in the order given: `models` through load() (an embedding model, or a cross-encoder
    checkpoint), `rerankers` through load_reranker() (LLM rerankers too). Names are Hub ids or folder names."""
    from ..engine import load
    from ..reranker import load_reranker

    if config.served_model_name is not None and len(models) + len(rerankers) != 1:
        raise ValueError("--served-model-name names a single model; with several, each is named by its Hub id or folder")
    loaded = {}
    for source, loader in [(m, load) for m in models] + [(r, load_reranker) for r in rerankers]:
        model = loader(source, device=device, dtype=dtype, revision=revision)
        name = config.served_model_name or (model.spec.hub.repo_id if model.spec.hub else Path(str(source)).name)
        if name in loaded:
            raise ValueError(f"two models are named {name!r}: serve them from folders of different names")
        warm_up(model, config.max_batch_tokens)
        loaded[name] = model
    return loaded


def serve(models: list[str], config: ServerConfig, *, rerankers: list[str] = (), device: str | None = None,
          dtype: str | None = None, revision: str | None = None, log_level: str = "warning") -> None:  # fmt: skip
    import uvicorn

    from .app import ModelServer

    sock = bind(config.host, config.port)
    host, port = sock.getsockname()[:2]
    loaded = load_models(list(models), list(rerankers), config, device=device, dtype=dtype, revision=revision)

    def ready():
        print(f"fastembed-rt: serving {', '.join(loaded)} on http://{host}:{port}", flush=True)

    app = ModelServer(loaded, config, on_ready=ready)
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
