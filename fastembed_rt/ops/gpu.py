"""The op layer on CUDA devices: Triton kernels (fastembed_rt.kernels), flash-attn where it is installed,
and cuBLAS GEMMs with the bias + GELU epilogue as a Triton kernel.

Triton is imported only where it can run (a CUDA device, or TRITON_INTERPRET=1), so a CPU-only install
never needs it."""

from __future__ import annotations

import importlib.util
import os

import torch
import torch.nn.functional as F

GPU_FLOATS = (torch.float16, torch.bfloat16, torch.float32)


def float_on_cuda(device: torch.device, dtype: torch.dtype) -> bool:
    return device.type == "cuda" and dtype in GPU_FLOATS


def half_on_cuda(device: torch.device, dtype: torch.dtype) -> bool:
    return device.type == "cuda" and dtype in (torch.float16, torch.bfloat16)


def int8_on_cuda(device: torch.device, dtype: torch.dtype) -> bool:
    return device.type == "cuda" and dtype == torch.int8


def uint8_on_cuda(device: torch.device, dtype: torch.dtype) -> bool:
    return device.type == "cuda" and dtype == torch.uint8


def triton_usable() -> bool:
    if importlib.util.find_spec("triton") is None:
        return False
    return torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET", "") == "1"


_GELU_APPROXIMATIONS = {"gelu": "none", "gelu_tanh": "tanh"}


def linear(layer, x: torch.Tensor, activation=None) -> torch.Tensor:
    """x @ W.T on cuBLAS; with an activation, the bias and GELU run as one Triton epilogue kernel."""
    if activation is None:
        return F.linear(x, layer.weight, layer.bias)
    from .. import ops

    return ops.gelu(F.linear(x, layer.weight), layer.bias, _GELU_APPROXIMATIONS[activation])


def flash_attn_attention(q, k, v, cu_seqlens, max_seqlen, scale=None, causal=False, window=None, relative_bias=None,
                         key_lengths=None):  # fmt: skip
    """flash-attn's varlen kernel (it takes sliding windows; a relative position bias and key lengths it has not:
    our Triton kernel)."""
    if relative_bias is not None or key_lengths is not None:
        from .. import kernels

        return kernels.attention(q, k, v, cu_seqlens, max_seqlen, scale, causal, window, relative_bias, key_lengths)
    from flash_attn import flash_attn_varlen_func

    return flash_attn_varlen_func(q, k, v, cu_seqlens, cu_seqlens, max_seqlen, max_seqlen, softmax_scale=scale, causal=causal,
                                  window_size=window if window is not None else (-1, -1))  # fmt: skip


def register_kernels(register) -> None:
    """Registers the Triton kernels (and flash-attn) where they can run; preferred over the reference."""
    if not triton_usable():
        return
    from .. import kernels

    register("attention", "triton", kernels.attention, float_on_cuda)
    register("layer_norm", "triton", kernels.layer_norm, float_on_cuda)
    register("rms_norm", "triton", kernels.rms_norm, float_on_cuda)
    register("gelu", "triton", kernels.gelu, float_on_cuda)
    register("pool", "triton", kernels.pool, float_on_cuda)
    register("splade_pool", "triton", kernels.splade_pool, float_on_cuda)
    register("maxsim", "triton", kernels.maxsim, float_on_cuda)
    register("int8_topk", "triton", kernels.int8_topk, int8_on_cuda)
    register("hamming_topk", "triton", kernels.hamming_topk, uint8_on_cuda)
    if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None:
        register("attention", "flash_attn", flash_attn_attention, half_on_cuda)
