"""The op layer: models call these functions, never a kernel directly.

Each op dispatches on its main tensor's device and dtype to the fastest registered implementation
(C++ on the CPU, Triton/CUDA on GPUs as they land), falling back to the pure-PyTorch reference.
`use_reference()` (or FASTEMBED_RT_REFERENCE=1) forces the reference everywhere.
"""

from __future__ import annotations

import torch

from . import cpu, gpu, reference
from .dispatch import (REFERENCE, forcing, implementations, ops, reference_only, register, select, set_reference_only,
                       use_implementation, use_reference)
from .linear import Linear, mkl_linear, mkl_on_cpu, onednn_available, onednn_linear, onednn_on_cpu, reference_linear
from .reference import POOL_MODES, SPLADE_ACTIVATIONS, SPLADE_POOLINGS


def _anywhere(device, dtype):
    return True


for _name in ("embed", "attention", "layer_norm", "rms_norm", "gelu", "pool", "int8_linear", "int8_feed_forward"):
    register(_name, REFERENCE, getattr(reference, _name), _anywhere)
register("linear", REFERENCE, reference_linear, _anywhere)
for _name in ("embed", "attention", "layer_norm", "rms_norm", "gelu", "pool"):
    register(_name, "cpp", getattr(cpu, _name), cpu.float_on_cpu)
register("int8_linear", "packed", cpu.packed_int8_linear, cpu.packed_int8_on_cpu)
register("int8_feed_forward", "packed", cpu.packed_int8_feed_forward, cpu.packed_int8_on_cpu)
register("int8_linear", "cpp", cpu.int8_linear, cpu.float32_on_cpu)
register("int8_feed_forward", "cpp", cpu.int8_feed_forward, cpu.float32_on_cpu)
register("linear", "packed", cpu.packed_linear, cpu.packed_float_on_cpu)
register("linear", "mkl", mkl_linear, mkl_on_cpu)
if onednn_available():
    register("linear", "onednn", onednn_linear, onednn_on_cpu)
register("linear", "cublas", gpu.linear, gpu.float_on_cuda)
register("splade_pool", REFERENCE, reference.splade_pool, _anywhere)
register("splade_pool", "packed", cpu.splade_pool, cpu.panels_on_cpu)
register("maxsim", REFERENCE, reference.maxsim, _anywhere)
register("maxsim", "packed", cpu.maxsim, cpu.panels_on_cpu)
register("int8_topk", REFERENCE, reference.int8_topk, _anywhere)
register("hamming_topk", REFERENCE, reference.hamming_topk, _anywhere)
register("int8_topk", "cpp", cpu.int8_topk, cpu.int8_on_cpu)
register("hamming_topk", "cpp", cpu.hamming_topk, cpu.uint8_on_cpu)
gpu.register_kernels(register)


def embed(word, position, token_type, input_ids, cu_seqlens, position_offset=0):
    """Token embeddings of a packed batch: word[ids] + position (restarting per sequence) + token_type."""
    return select("embed", word.device, word.dtype).fn(word, position, token_type, input_ids, cu_seqlens, position_offset)


def attention(q, k, v, cu_seqlens, max_seqlen, scale=None, causal=False, window=None, relative_bias=None,
              key_lengths=None):  # fmt: skip
    """Attention within each packed sequence (flash-attn varlen conventions). q: [T, Hq, D].
    window=(left, right) (sliding-window layers), relative_bias [Hq, 2R+1] (MPNet) and key_lengths [B] (keys are
    each sequence's first tokens: ColBERT's query expansion): see reference.attention.
    A window wider than every sequence changes nothing and is dropped."""
    if window is not None and window[0] >= max_seqlen - 1 and (causal or window[1] >= max_seqlen - 1):
        window = None
    return select("attention", q.device, q.dtype).fn(q, k, v, cu_seqlens, max_seqlen, scale, causal, window, relative_bias,
                                                     key_lengths)  # fmt: skip


def attention_one_query(q, k, v, cu_seqlens, scale=None):
    """attention's output at one row per sequence whose query sees all the sequence's keys (an encoder's first token,
    a causal model's last): q [B, Hq, D] those rows' queries, k / v [T, Hkv, D] every token's; -> [B, Hq, D]. For a
    last layer of which a head reads one row per sequence."""
    return reference.attention_one_query(q, k, v, cu_seqlens, scale)


def rotary(x, cos, sin):
    """Rotary position embedding of x [T, H, D] with per-token angles cos / sin [T, R/2] (rotate-half form)."""
    return reference.rotary(x, cos, sin)


def glu(gate_up, activation):
    """activation(gate) * up of a fused [T, 2I] gate|up projection: SwiGLU ("silu"), GeGLU ("gelu", "gelu_tanh")."""
    return reference.glu(gate_up, activation)


def layer_norm(x, weight, bias, eps, residual=None):
    """LayerNorm(x + residual)."""
    return select("layer_norm", x.device, x.dtype).fn(x, weight, bias, eps, residual)


def rms_norm(x, weight, eps, residual=None, return_sum=False):
    """RMSNorm(x + residual) (and, with return_sum, x + residual itself)."""
    return select("rms_norm", x.device, x.dtype).fn(x, weight, eps, residual, return_sum)


def gelu(x, bias=None, approximate="none"):
    """GELU(x + bias)."""
    return select("gelu", x.device, x.dtype).fn(x, bias, approximate)


def feed_forward(x, up: Linear, down: Linear, activation: str):
    """down(activation(up(x))); two int8 layers run fused (the activations between them stay int8)."""
    if up.int8 and down.int8:
        return select("int8_feed_forward", x.device, torch.float32).fn(x.float(), up, down, activation)
    return down(up(x, activation))


def pool(hidden, cu_seqlens, mode, normalize=False, skip=None):
    """Pools packed hidden states [T, H] into float32 [num_seqs, H]; see reference.pool for semantics."""
    if mode not in POOL_MODES:
        raise ValueError(f"unknown pooling mode {mode!r}; supported: {', '.join(POOL_MODES)}")
    return select("pool", hidden.device, hidden.dtype).fn(hidden, cu_seqlens, mode, normalize, skip)


def splade_pool(hidden, cu_seqlens, layer: Linear, pooling: str = "max", activation: str = "relu"):
    """SPLADE term weights float32 [num_seqs, vocab]: per packed sequence, the pooling ("max" or "sum") over its
    tokens of log1p(relu(layer(hidden))) (activation "relu"; "log1p_relu" takes log1p once more). The kernels
    reduce in their epilogue and never write the [T, vocab] logits; see reference.splade_pool."""
    if pooling not in SPLADE_POOLINGS:
        raise ValueError(f"unknown SPLADE pooling {pooling!r}; supported: {', '.join(SPLADE_POOLINGS)}")
    if activation not in SPLADE_ACTIVATIONS:
        raise ValueError(f"unknown SPLADE activation {activation!r}; supported: {', '.join(SPLADE_ACTIVATIONS)}")
    if hidden.shape[-1] != layer.in_features:
        raise ValueError(f"splade_pool: the projection takes {layer.in_features} features, hidden has {hidden.shape[-1]}")
    dtype = torch.float32 if layer.int8 else layer.dtype
    return select("splade_pool", hidden.device, dtype).fn(hidden, cu_seqlens, layer, pooling, activation)


def maxsim(queries, query_cu, documents, doc_cu, int8: bool = False):
    """Late-interaction (ColBERT) scores float32 [num_queries, num_docs]: query a's tokens
    queries[query_cu[a]:query_cu[a+1]] against document b's documents[doc_cu[b]:doc_cu[b+1]], the sum over the
    query's tokens of its largest dot product with the document's. The kernels never write the [query tokens x
    document tokens] matrix. int8: per-token int8 codes of both sides; documents may be given as their codes and
    scales (int8 [tokens, dim], float32 [tokens], as reference.quantize_rows makes them). See reference.maxsim."""
    if isinstance(documents, tuple):
        if not int8 or len(documents) != 2 or documents[0].dtype != torch.int8 or documents[1].dtype != torch.float32:
            raise ValueError("maxsim: documents as (codes, scales) are int8 codes and float32 scales, with int8=True")
        if documents[1].shape != (documents[0].shape[0],):
            raise ValueError(f"maxsim: {documents[0].shape[0]} document token codes but {tuple(documents[1].shape)} scales")
    tokens_of = {"queries": queries, "documents": documents[0] if isinstance(documents, tuple) else documents}
    for name, tokens, cu in (("queries", queries, query_cu), ("documents", tokens_of["documents"], doc_cu)):
        if tokens.dim() != 2:
            raise ValueError(f"maxsim: {name} must be token vectors [tokens, dim], got shape {tuple(tokens.shape)}")
        if cu.dim() != 1 or len(cu) < 1 or int(cu[0]) != 0 or int(cu[-1]) != tokens.shape[0] or bool((cu[1:] < cu[:-1]).any()):
            raise ValueError(f"maxsim: the {name}' offsets must rise from 0 to their {tokens.shape[0]} tokens")
    if queries.shape[1] != tokens_of["documents"].shape[1]:
        raise ValueError(f"maxsim: queries have dimension {queries.shape[1]}, documents {tokens_of['documents'].shape[1]}")
    dtype = torch.float32 if int8 else queries.dtype
    return select("maxsim", queries.device, dtype).fn(queries, query_cu, documents, doc_cu, int8)


def int8_topk(queries, corpus, k):
    """Exact top-k int8 dot products: (scores int32 [nq, k'], ids int64), ties to the lower id."""
    return select("int8_topk", queries.device, queries.dtype).fn(queries, corpus, k)


def hamming_topk(queries, corpus, k):
    """Exact top-k nearest packed binary codes: (Hamming distances int32 [nq, k'], ids int64)."""
    return select("hamming_topk", queries.device, queries.dtype).fn(queries, corpus, k)


def fast_bfloat16(device: torch.device | str = "cpu") -> bool:
    """Whether bfloat16 linear layers run about as fast as float32 ones here: always on a GPU; on the CPU only
    with oneDNN's native bfloat16 GEMMs (AVX512_BF16). Our packed ones (AVX2: weights widened to float32, inputs
    and outputs rounded) took 1.10-1.28x float32's time on MiniLM's QKV shape at 300-4,000 rows (one process,
    interleaved, under FASTEMBED_RT_ISA=avx2 on an Ice Lake Xeon)."""
    device = torch.device(device)
    return device.type != "cpu" or select("linear", device, torch.bfloat16).name == "onednn"


def widened_bfloat16(device: torch.device | str = "cpu") -> bool:
    """Whether bfloat16 layers run here on the panel kernels, which widen the weights to float32 in any case. A
    bfloat16 model then keeps its linear weights and embedding tables in bfloat16 (half the memory) and computes in
    float32: bfloat16 activations only added a rounding pass to every op (MiniLM, 800 real texts under
    FASTEMBED_RT_ISA=avx2, best of 5: 0.94x float32's speed, against 0.99x)."""
    device = torch.device(device)
    return device.type == "cpu" and select("linear", device, torch.bfloat16).name == "packed"


def precision_paths() -> dict[str, str]:
    """How the CPU computes the linear layers of each weight precision at the active ISA (and bfloat16's attention
    where it is native), in words."""
    from .. import _C, isa

    level = isa.active()
    packed = level != "scalar"
    if isa.onednn_bfloat16():
        attention = {"amx": "on AMX tiles (sequences of 64 tokens or more)", "dot": "in AVX512_BF16 dot products",
                     "widened": "in float32 arithmetic"}[_C.bf16_attention_products()]
        bf16 = f"oneDNN bfloat16 GEMMs (AVX512_BF16), attention {attention}"
    elif isa.float_panels_preferred():
        bf16 = ("bfloat16 weights and embedding tables, float32 activations: packed AVX2 FMA kernels widening the "
                "weights in registers, every batch size (no native bfloat16; AMD, where they beat MKL)")
    elif packed:
        bf16 = ("bfloat16 weights and embedding tables, float32 activations: the weights widened to float32 for MKL "
                "sgemm from 256 rows, packed AVX2 FMA kernels below (no native bfloat16)")
    else:
        bf16 = "reference (torch bfloat16 matmul: slow; no AVX2)"
    if isa.amx_int8():
        int8 = ("AMX tiles (AMX-INT8), exact: packed kernels quantizing each 32-row chunk in cache, AVX512_VNNI for "
                "rows short of a 16-row tile")
    elif isa.int_mm_fast():
        int8 = "torch._int_mm (oneDNN, AVX512_VNNI)"
    elif packed:
        int8 = (f"packed kernels ({'AVX-512 without VNNI: ' if level == 'avx512' else ''}AVX2), exact: vpmaddubsw on "
                "7-bit weights against 8-bit codes, or on 8-bit weights against 7-bit asymmetric codes (layers fed by "
                "GELU), else vpmaddwd")
    else:
        int8 = "exact int64 matmul (slow; no AVX2)"
    # the attention's input projections (models/bert.py: WeightReader.attention_inputs)
    int8 += "; QKV in bfloat16" if fast_bfloat16() else "; QKV in float32 (BERT family: queries and keys in int8)"
    if isa.float_panels_preferred():
        float32 = "packed AVX2 FMA kernels, bias and GELU in their epilogue (AMD, where they beat MKL sgemm)"
    elif mkl_on_cpu(torch.device("cpu"), torch.float32):
        float32 = f"MKL sgemm + C++ GELU ({level})"
    else:
        float32 = f"oneDNN float32 GEMMs ({level})"
    return {"float32": float32, "bfloat16": bf16, "int8": int8}


# The search ops take codes, whatever precision a model runs at.
_CODE_DTYPES = {"int8_topk": torch.int8, "hamming_topk": torch.uint8}


def implementation_table(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> dict[str, str]:
    """Which implementation each op uses for tensors on `device` with `dtype` (the search ops: for their codes)."""
    device = torch.device(device)
    return {op: select(op, device, _CODE_DTYPES.get(op, dtype)).name for op in ops()}


__all__ = [
    "POOL_MODES",
    "Linear",
    "attention",
    "attention_one_query",
    "embed",
    "fast_bfloat16",
    "feed_forward",
    "forcing",
    "gelu",
    "glu",
    "hamming_topk",
    "implementation_table",
    "implementations",
    "int8_topk",
    "layer_norm",
    "maxsim",
    "pool",
    "precision_paths",
    "reference_only",
    "rms_norm",
    "rotary",
    "set_reference_only",
    "splade_pool",
    "use_implementation",
    "use_reference",
    "widened_bfloat16",
]
