"""The C++ CPU kernels of fastembed_rt._C behind the op signatures of reference.py.

numpy has no bfloat16, so bfloat16 tensors cross into C++ as their raw int16 bits and come back viewed
as bfloat16 again; the binding checks every shape, dtype and offset before a kernel runs.
"""

from __future__ import annotations

import math

import torch

from .. import _C, isa
from .linear import float32_gemm
from .reference import POOL_MODES, int8_matmul

# Activation codes of the C++ kernels (csrc/cpu/activations.h).
ACTIVATION_CODES = {None: 0, "gelu": 1, "gelu_tanh": 2}
_GELU = {"none": 1, "tanh": 2}
_NORMS = {"layer_norm": 0, "rms_norm": 1}


def _array(t: torch.Tensor):
    t = t.detach()
    return (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy()


def _tensor(a, dtype: torch.dtype) -> torch.Tensor:
    t = torch.from_numpy(a)
    return t.view(torch.bfloat16) if dtype == torch.bfloat16 else t


def _optional(t):
    return None if t is None else _array(t.contiguous())


def _rows(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(-1, x.shape[-1]).contiguous()


def _cu(cu_seqlens):
    return cu_seqlens.detach().to(torch.int32).contiguous().numpy()


def embed(word, position, token_type, input_ids, cu_seqlens, position_offset=0):
    out = _C.embed_tokens(_array(word), _array(position), _optional(token_type), input_ids.detach().long().contiguous().numpy(),
                          _cu(cu_seqlens), position_offset, torch.get_num_threads())  # fmt: skip
    return _tensor(out, word.dtype)


def attention(q, k, v, cu_seqlens, max_seqlen, scale=None, causal=False, window=None, relative_bias=None,
              key_lengths=None):  # fmt: skip
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    left, right = window if window is not None else (-1, -1)
    bias = None if relative_bias is None else relative_bias.detach().float().contiguous().numpy()
    keys = None if key_lengths is None else _cu(key_lengths)
    out = _C.attention_varlen(_array(q), _array(k), _array(v), _cu(cu_seqlens), scale, causal, torch.get_num_threads(),
                              left, right, bias, keys)  # fmt: skip
    return _tensor(out, q.dtype)


def _norm(kind, x, weight, bias, eps, residual, return_sum):
    rows = _rows(x)
    res = None if residual is None else _array(_rows(residual))
    result = _C.norm_rows(_array(rows), res, _array(weight.contiguous()), _optional(bias), eps, _NORMS[kind],
                          return_sum, None, torch.get_num_threads())  # fmt: skip
    if return_sum:
        return tuple(_tensor(a, x.dtype).view(x.shape) for a in result)
    return _tensor(result, x.dtype).view(x.shape)


def layer_norm(x, weight, bias, eps, residual=None):
    return _norm("layer_norm", x, weight, bias, eps, residual, False)


def rms_norm(x, weight, eps, residual=None, return_sum=False):
    return _norm("rms_norm", x, weight, None, eps, residual, return_sum)


def gelu(x, bias=None, approximate="none"):
    out = _C.bias_activation(_array(_rows(x)), _optional(bias), _GELU[approximate], None, torch.get_num_threads())
    return _tensor(out, x.dtype).view(x.shape)


def pool(hidden, cu_seqlens, mode, normalize=False, skip=None):
    """float32 vectors; bfloat16 hidden states are read in place (as their bits) and pooled in float32."""
    hidden = hidden.detach()
    hidden = hidden.contiguous() if hidden.dtype in (torch.float32, torch.bfloat16) else hidden.float().contiguous()
    skip_np = None if skip is None else skip.detach().to(torch.int32).contiguous().numpy()
    out = _C.pool_packed(_array(hidden), _cu(cu_seqlens), POOL_MODES.index(mode), normalize, skip_np, torch.get_num_threads())
    return torch.from_numpy(out)


def _int8_matmul(codes, qweight) -> torch.Tensor:
    """int8 [rows, in] codes (numpy) times int8 weights [out, in]^T, exactly, in int32: torch._int_mm where oneDNN
    runs it with VNNI; elsewhere in float64 (oneDNN's AVX2 int8 GEMM saturates int16 sums: not exact)."""
    codes = torch.from_numpy(codes)
    # torch._int_mm also answers wrongly for a single input feature on the CPU (torch 2.13)
    if qweight.shape[1] > 1 and isa.int_mm_fast():
        return torch._int_mm(codes, qweight.t())
    return int8_matmul(codes, qweight)


def int8_linear(x, layer, activation=None):
    """Per-token int8 quantization (C++), the int8 GEMM, dequantization + bias + GELU (C++)."""
    threads = torch.get_num_threads()
    codes, scales = _C.quantize_rows(_array(x.contiguous()), threads, layer.asymmetric_input)
    acc = _int8_matmul(codes, layer.qweight)
    out = _C.dequantize_rows(acc.numpy(), scales, _array(layer.weight_scales), _optional(layer.bias),
                             ACTIVATION_CODES[activation], threads)  # fmt: skip
    return torch.from_numpy(out)


def int8_feed_forward(x, up, down, activation):
    """The up projection's output goes from int32 straight back to int8 codes (with bias and GELU on the way):
    the float activations between the two GEMMs are never written out."""
    threads = torch.get_num_threads()
    codes, scales = _C.quantize_rows(_array(x.contiguous()), threads, up.asymmetric_input)
    acc = _int8_matmul(codes, up.qweight)
    codes, scales = _C.requantize_rows(acc.numpy(), scales, _array(up.weight_scales), _optional(up.bias),
                                       ACTIVATION_CODES[activation], threads, down.asymmetric_input)  # fmt: skip
    acc = _int8_matmul(codes, down.qweight)
    out = _C.dequantize_rows(acc.numpy(), scales, _array(down.weight_scales), _optional(down.bias), 0, threads)
    return torch.from_numpy(out)


def _on_panels(layer, x, activation):
    return layer.panels()(_rows(x).float().numpy(), ACTIVATION_CODES[activation], False, torch.get_num_threads())


# From this many rows, a bfloat16 layer without native bfloat16 runs as MKL float32 on its weights widened for
# the call (unless isa.float_panels_preferred): 1.3x the panel kernels at 1,024 rows of MiniLM's layers under AVX2
# (Intel); below ~200 rows the panels win.
WIDEN_MIN_ROWS = 256


def packed_linear(layer, x, activation=None):
    """A layer on the panel kernels: bfloat16 where oneDNN has no bfloat16 GEMM, and float32 or bfloat16 where they
    beat MKL (isa.float_panels_preferred). bfloat16 weights stay bfloat16 (half the memory); the result has x's
    dtype (bfloat16 x: rounded as a bfloat16 GEMM rounds; float32 x: a bfloat16 model's float32 activations).
    The panels widen bfloat16 weights to float32 in registers against x as it is (panel_input); large bfloat16
    batches run on MKL on the weights widened to float32 for the call, except where the panels beat it."""
    rows = _rows(x)
    if layer.dtype == torch.float32 or rows.shape[0] < WIDEN_MIN_ROWS or isa.float_panels_preferred():
        out = torch.from_numpy(_on_panels(layer, rows, activation))
    else:
        widened_t = torch.from_numpy(layer.panels().widened(torch.get_num_threads()))  # [in, out]
        out = float32_gemm(rows.float(), widened_t.T, None if layer.bias is None else layer.bias.float(), activation)
    return out.to(x.dtype).view(*x.shape[:-1], layer.out_features)


def panel_input(layer, x: torch.Tensor) -> torch.Tensor:
    """x as a float layer's panel kernels multiply it: rounded to bfloat16 for a bfloat16 layer packed for AVX-512
    (bfloat16 dot products), else as it is (on AVX2 the bfloat16 weights are widened to float32 instead)."""
    rounds = layer.dtype == torch.bfloat16 and isa.has("avx512_bf16")  # where bfloat16 layers are packed for AVX-512
    return x.bfloat16().float() if rounds else x


def _int8_rows(x):
    """x's rows as an int8 layer's panels take them: bfloat16 ones (a bfloat16 layer's output) as they are, quantized
    without a float32 copy; others as float32."""
    rows = _rows(x)
    return _array(rows if rows.dtype == torch.bfloat16 else rows.float())


def packed_int8_linear(x, layer, activation=None):
    """int8_linear on the panel kernels (AVX2: vpmaddubsw on 7-bit weights, exact; AVX-512: VNNI, AMX tiles), where
    torch._int_mm has no fast kernel or AMX beats it."""
    return torch.from_numpy(layer.panels()(_int8_rows(x), ACTIVATION_CODES[activation], False, torch.get_num_threads()))


def packed_int8_feed_forward(x, up, down, activation):
    """The two layers in one call: on AMX tiles, chunks of rows go through both with the activations between them
    in cache."""
    out = up.panels().feed_forward(down.panels(), _int8_rows(x), ACTIVATION_CODES[activation], torch.get_num_threads())
    return torch.from_numpy(out)


_SPLADE_POOLINGS = {"max": 0, "sum": 1}
_SPLADE_ACTIVATIONS = {"relu": 0, "log1p_relu": 1}


def splade_pool(hidden, cu_seqlens, layer, pooling="max", activation="relu"):
    """The vocabulary projection, activation and pooling in one pass of the panel kernels (float32, bfloat16 or
    int8 weights): the [T, vocab] logits never exist, only [num_seqs, vocab]."""
    out = layer.panels().pooled(_rows(hidden).float().numpy(), _cu(cu_seqlens), _SPLADE_POOLINGS[pooling],
                                _SPLADE_ACTIVATIONS[activation], torch.get_num_threads())  # fmt: skip
    return torch.from_numpy(out)


def maxsim(queries, query_cu, documents, doc_cu, int8: bool = False):
    """MaxSim on the panel kernels: the query tokens are the layer's weights (packed per call: a few KB), the
    documents' tokens its rows, each row reduced into its document by max in the epilogue (the [query tokens x
    document tokens] products are never written); then each query's maxima are summed. Float tokens run in float32:
    bfloat16 ones are widened exactly (documents chunk by chunk as they stream, so a bfloat16 corpus is read at half
    float32's bytes), their products exact and summed in float32 — on the Sapphire-Rapids-class Xeon we measured,
    vdpbf16ps ran MaxSim at half the FMA kernel's rate (51 against 106 GMAC/s per core in cache). int8 runs on
    per-token int8 codes of both sides, the documents' as given ((codes, scales): nothing to quantize per call) or
    quantized as they stream."""
    q = queries.detach().contiguous()
    nq, nd = len(query_cu) - 1, len(doc_cu) - 1
    if q.shape[0] == 0 or nd == 0:
        return torch.zeros(nq, nd)
    if int8:
        layer = _C.PackedLinear((*_C.quantize_rows(_array(q.float()), torch.get_num_threads()), None))
    else:
        layer = _C.PackedLinear((_array(q.float()), None, None))
    if isinstance(documents, tuple):
        rows, row_scales = (t.detach().contiguous().numpy() for t in documents)
    elif documents.dtype == torch.bfloat16 and not int8:
        rows, row_scales = _array(documents.contiguous()), None
    else:
        rows, row_scales = documents.detach().float().contiguous().numpy(), None
    maxima = torch.from_numpy(layer.max_pooled(rows, _cu(doc_cu), scales=row_scales, num_threads=torch.get_num_threads()))
    maxima[torch.isinf(maxima)] = 0.0  # an empty document: no evidence for any query token
    sums = torch.zeros(nd, nq)
    sums.index_add_(1, torch.repeat_interleave(torch.arange(nq), (query_cu[1:] - query_cu[:-1]).long()), maxima)
    return sums.t().contiguous()


def _topk(kernel, queries, corpus, k):
    """A C++ top-k search, with the reference's answer for an empty corpus (no columns)."""
    if corpus.shape[0] == 0:
        empty = torch.zeros(queries.shape[0], 0)
        return empty.to(torch.int32), empty.to(torch.int64)
    scores, ids = kernel(_array(queries.contiguous()), _array(corpus.contiguous()), k)
    return torch.from_numpy(scores), torch.from_numpy(ids)


def int8_topk(queries, corpus, k):
    return _topk(_C.topk_dot_i8, queries, corpus, k)


def hamming_topk(queries, corpus, k):
    return _topk(_C.topk_hamming, queries, corpus, k)


def int8_on_cpu(device: torch.device, dtype: torch.dtype) -> bool:
    return device.type == "cpu" and dtype == torch.int8


def uint8_on_cpu(device: torch.device, dtype: torch.dtype) -> bool:
    return device.type == "cpu" and dtype == torch.uint8


def packed_float_on_cpu(device: torch.device, dtype: torch.dtype) -> bool:
    """bfloat16 where oneDNN has no bfloat16 GEMM (from AVX2 up); float32 too where the panels beat MKL."""
    if device.type != "cpu" or isa.active() == "scalar":
        return False
    return (dtype == torch.bfloat16 and not isa.onednn_bfloat16()) or (dtype == torch.float32 and isa.float_panels_preferred())


def panels_on_cpu(device: torch.device, dtype: torch.dtype) -> bool:
    """The panel kernels take float32, bfloat16 and int8 (float32 activations) weights from AVX2 up."""
    return device.type == "cpu" and dtype in (torch.float32, torch.bfloat16) and isa.active() != "scalar"


def packed_int8_on_cpu(device: torch.device, dtype: torch.dtype) -> bool:
    """Where torch._int_mm has no fast kernel, and on AMX tiles, which beat it: 4,096 rows of MiniLM's layers took
    0.2-0.6x the time of its path (quantization and dequantization included) on the model-167 Xeon."""
    return float32_on_cpu(device, dtype) and isa.active() != "scalar" and (not isa.int_mm_fast() or isa.amx_int8())


def float_on_cpu(device: torch.device, dtype: torch.dtype) -> bool:
    return device.type == "cpu" and dtype in (torch.float32, torch.bfloat16)


def float32_on_cpu(device: torch.device, dtype: torch.dtype) -> bool:
    return device.type == "cpu" and dtype == torch.float32

