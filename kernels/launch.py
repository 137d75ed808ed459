"""What every kernel wrapper shares: input checks on packed batches, and block sizes per device."""

from __future__ import annotations

import os
import weakref

import torch


def interpreting() -> bool:
    """TRITON_INTERPRET=1: kernels run on the CPU through Triton's numpy interpreter (tests)."""
    return os.environ.get("TRITON_INTERPRET", "") == "1"


def block_sizes(device: torch.device, head_dim: int) -> tuple[int, int]:
    """(queries, keys) per attention tile. The interpreter runs tiles one numpy op at a time, where fewer,
    larger tiles are faster; on a GPU, 128 x 64 keeps a head_dim <= 128 tile in registers."""
    if device.type != "cuda":
        return 32, 32
    return (128, 64) if head_dim <= 64 else (64, 64)


def launch_options(device: torch.device, head_dim: int) -> dict:
    """Warps and software-pipelining stages of an attention tile (FlashAttention-2's Triton settings)."""
    if device.type != "cuda":
        return {}
    return {"num_warps": 4 if head_dim <= 64 else 8, "num_stages": 3 if head_dim <= 64 else 2}


# A model passes one cu_seqlens tensor to every layer's kernels: its summary is read from the device once per
# tensor (and version), not once per call, since each read is a sync that stalls the queue of launches.
# (Keyed by id, with a weak reference that drops the entry with the tensor: tensors compare elementwise.)
_summaries: dict[int, tuple] = {}


def _offset_summary(cu_seqlens: torch.Tensor) -> tuple[int, int, int, int]:
    """(first offset, last offset, shortest length, longest length) of cu_seqlens."""
    key = id(cu_seqlens)
    cached = _summaries.get(key)
    if cached is not None and cached[0]() is cu_seqlens and cached[1] == cu_seqlens._version:
        return cached[2]
    lengths = cu_seqlens[1:] - cu_seqlens[:-1]
    first, last = cu_seqlens[0], cu_seqlens[-1]
    shortest = lengths.min() if lengths.numel() else first
    longest = lengths.max() if lengths.numel() else first
    summary = tuple(torch.stack([first, last, shortest, longest]).tolist())
    _summaries[key] = (weakref.ref(cu_seqlens, lambda _: _summaries.pop(key, None)), cu_seqlens._version, summary)
    return summary


def check_packed(cu_seqlens: torch.Tensor, tokens: int, name: str, device: torch.device, max_seqlen: int | None = None) -> int:
    """Checks int32 cu_seqlens against the packed tensor (one small device sync) and returns the batch size:
    a bad offset would otherwise read out of bounds on the GPU."""
    if not isinstance(cu_seqlens, torch.Tensor) or cu_seqlens.dtype != torch.int32 or cu_seqlens.dim() != 1:
        raise ValueError(f"{name} must be a 1-D int32 tensor")
    if cu_seqlens.device != device:
        raise ValueError(f"{name} is on {cu_seqlens.device}, the data on {device}")
    if cu_seqlens.numel() < 1:
        raise ValueError(f"{name} must hold at least one offset (0)")
    if not cu_seqlens.is_contiguous():
        raise ValueError(f"{name} must be contiguous")
    first, last, shortest, longest = _offset_summary(cu_seqlens)
    if first != 0 or last != tokens or shortest < 0:
        raise ValueError(f"{name} must rise from 0 to the token count {tokens}; got first {first}, last {last}, "
                         f"shortest sequence {shortest}")  # fmt: skip
    if max_seqlen is not None and max_seqlen < longest:
        raise ValueError(f"max_seqlen {max_seqlen} is shorter than the longest sequence ({longest})")
    return cu_seqlens.numel() - 1
