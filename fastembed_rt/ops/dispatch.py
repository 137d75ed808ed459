"""Picks an implementation of each op per device and dtype, with one switch that forces the reference.

Implementations register themselves in preference order; the pure-PyTorch reference is registered
for every op and always supports everything, so it is the last resort and the oracle.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

REFERENCE = "reference"


@dataclass(frozen=True)
class Implementation:
    name: str
    fn: Callable
    supports: Callable[[torch.device, torch.dtype], bool]


_registry: dict[str, list[Implementation]] = {}
_reference_only = os.environ.get("FASTEMBED_RT_REFERENCE", "").lower() in ("1", "true", "yes")
_forced: dict[str, Implementation] = {}


def register(op: str, name: str, fn: Callable, supports: Callable[[torch.device, torch.dtype], bool]) -> None:
    """Adds an implementation of `op`; earlier registrations are preferred over later ones."""
    impls = _registry.setdefault(op, [])
    impls.insert(len([i for i in impls if i.name != REFERENCE]), Implementation(name, fn, supports))


def select(op: str, device: torch.device, dtype: torch.dtype) -> Implementation:
    if op in _forced:
        return _forced[op]
    for impl in _registry[op]:
        if (impl.name == REFERENCE or not _reference_only) and impl.supports(device, dtype):
            return impl
    raise RuntimeError(f"no implementation of op {op!r} supports device={device} dtype={dtype}")


def available(op: str, device: torch.device, dtype: torch.dtype) -> list[Implementation]:
    """Every implementation of `op` that runs on this device and dtype, the reference last (ignores the switch)."""
    return [impl for impl in _registry[op] if impl.supports(device, dtype)]


def ops() -> list[str]:
    return sorted(_registry)


def implementations(op: str) -> list[str]:
    return [impl.name for impl in _registry[op]]


def reference_only() -> bool:
    return _reference_only


def forcing() -> bool:
    """Whether use_implementation() is pinning some op (fused multi-op paths must then stand aside)."""
    return bool(_forced)


def set_reference_only(enabled: bool) -> None:
    """Forces every op onto its pure-PyTorch reference (also: FASTEMBED_RT_REFERENCE=1)."""
    global _reference_only
    _reference_only = bool(enabled)


@contextlib.contextmanager
def use_reference(enabled: bool = True) -> Iterator[None]:
    previous = _reference_only
    set_reference_only(enabled)
    try:
        yield
    finally:
        set_reference_only(previous)


@contextlib.contextmanager
def use_implementation(name: str, *op_names: str) -> Iterator[None]:
    """Runs `op_names` (default: every op that has one) on the implementation called `name`, whatever the
    device: to test kernels end to end where they would not be picked (Triton under TRITON_INTERPRET=1
    on the CPU), or to benchmark one implementation against another."""
    chosen = {op: impl for op in (op_names or _registry) for impl in _registry.get(op, []) if impl.name == name}
    if op_names and len(chosen) != len(op_names):
        missing = sorted(set(op_names) - set(chosen))
        raise KeyError(f"no implementation {name!r} of op(s) {', '.join(missing)}")
    previous = dict(_forced)
    _forced.update(chosen)
    try:
        yield
    finally:
        _forced.clear()
        _forced.update(previous)
