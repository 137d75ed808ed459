"""The server's limits and options (the flags of `fastembed-rt serve`)."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"  # loopback unless told otherwise
    port: int = 8080  # 0: any free port (the ready line says which)
    max_batch_tokens: int = 4096  # packed tokens per model batch
    max_batch_texts: int = 512  # texts per model batch
    max_wait_ms: float = 2.0  # longest a partial batch waits for texts still being tokenized
    max_concurrent_requests: int = 512  # requests in flight at once; more get 429
    max_client_batch_size: int = 512  # inputs per request; more get 413
    max_request_bytes: int = 4 * 1024 * 1024  # request body; larger gets 413
    max_connections: int = 1024  # open connections; a request on one more gets 503
    header_timeout: float = 10.0  # seconds from a request's first byte (or the connection) to its last header; then 408
    body_timeout: float = 30.0  # seconds from the last header to the end of the body; then 408
    auto_truncate: bool = False  # otherwise an over-long input gets 413
    api_key: str | None = None  # Bearer token required on every route but /health
    served_model_name: str | None = None  # the name /info and responses report (default: the model's)
    tokenizer_workers: int = 1  # threads tokenizing requests, off the event loop

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in ("int", "float") and f.name not in ("port", "max_wait_ms") and not value > 0:  # NaN too
                raise ValueError(f"{f.name.replace('_', '-')} must be positive, got {value}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in [0, 65535], got {self.port}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max-wait-ms must be >= 0, got {self.max_wait_ms}")
        if self.api_key is not None and not self.api_key:
            raise ValueError("api-key must not be empty")
