"""The HTTP server: OpenAI- and TEI-compatible routes over dynamic token-budget batching."""

from .config import ServerConfig
from .serve import serve

__all__ = ["ServerConfig", "serve"]
