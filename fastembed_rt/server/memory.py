"""Handing memory the allocator keeps back to the system once a burst of requests is over.

glibc's malloc keeps freed memory in per-thread arenas: after a burst of large requests (bodies, parsed
texts, token lists, batches built on other threads) the server's RSS stayed hundreds of MB above its level
at rest. malloc_trim(0) returns the free pages; the batcher calls it when it runs out of work."""

from __future__ import annotations

import ctypes
import ctypes.util


def _malloc_trim():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim  # glibc only (musl and macOS have none: nothing to do there)
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_TRIM = _malloc_trim()


def release_free_memory() -> None:
    if _TRIM is not None:
        _TRIM(0)
