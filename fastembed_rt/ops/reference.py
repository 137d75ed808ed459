"""The pure-PyTorch oracle: one clear implementation of every op, written for reading, not speed.

Every kernel is tested against these. Tensors use the packed layout: tokens of all sequences
concatenated along dim 0, with int32 `cu_seqlens` marking where each sequence starts and ends.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

POOL_MODES = ("cls", "mean", "max", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")


def int8_matmul(a, b):
    """int8 [m, k] times int8 [n, k]^T, exactly, as int32. In float64: every such sum (|sum| <= 128 * 128 * k)
    is exact below 2^53, and a float64 GEMM is ~40x faster than torch's int64 matmul."""
    return (a.double() @ b.double().t()).to(torch.int32)


def packed_positions(cu_seqlens, offset=0):
    """Position of every packed token within its own sequence (plus `offset`): 0..len-1 per sequence."""
    cu = cu_seqlens.long()
    lengths = cu[1:] - cu[:-1]
    total = int(cu[-1])
    starts = torch.repeat_interleave(cu[:-1], lengths, output_size=total)
    return torch.arange(total, device=cu.device) - starts + offset


def embed(word, position, token_type, input_ids, cu_seqlens, position_offset=0):
    """word[ids] + position[offset + index within the sequence] (+ token_type), summed in float32."""
    x = word[input_ids].float() + position[packed_positions(cu_seqlens, position_offset)].float()
    if token_type is not None:
        x = x + token_type.float()
    return x.to(word.dtype)


def attention(q, k, v, cu_seqlens, max_seqlen, scale=None, causal=False, window=None, relative_bias=None,
              key_lengths=None):  # fmt: skip
    """Softmax attention within each packed sequence. q: [T, Hq, D]; k, v: [T, Hkv, D], Hq % Hkv == 0.
    window=(left, right) keeps key j for query i only where i - left <= j <= i + right (flash-attn's
    window_size; sliding-window layers), on top of the causal mask when causal. relative_bias [Hq, 2R + 1]
    adds relative_bias[:, R + j - i] to the score of query i and key j (MPNet's relative position buckets).
    key_lengths [B]: only the first key_lengths[s] tokens of sequence s are keys, every token is a query
    (ColBERT's query expansion tokens: outputs, but attended by none)."""
    del max_seqlen  # the reference walks sequences one by one and needs no bound
    heads, head_dim = q.shape[1], q.shape[2]
    group = heads // k.shape[1]
    scale = 1.0 / math.sqrt(head_dim) if scale is None else scale
    compute = torch.promote_types(q.dtype, torch.float32)  # half precision is upcast, float64 kept
    out = torch.empty_like(q)
    bounds = cu_seqlens.tolist()
    for s, (start, end) in enumerate(zip(bounds[:-1], bounds[1:])):
        if end == start:
            continue
        qs = q[start:end].transpose(0, 1).to(compute)  # [H, L, D]
        ks = k[start:end].transpose(0, 1).to(compute).repeat_interleave(group, dim=0)
        vs = v[start:end].transpose(0, 1).to(compute).repeat_interleave(group, dim=0)
        scores = torch.matmul(qs, ks.transpose(1, 2)) * scale
        pos = torch.arange(end - start, device=q.device)
        offset = pos[None, :] - pos[:, None]  # key position minus query position
        if relative_bias is not None:
            scores = scores + relative_bias[:, relative_bias.shape[1] // 2 + offset].to(compute)
        if causal or window is not None or key_lengths is not None:
            hidden = offset > 0 if causal else torch.zeros_like(offset, dtype=torch.bool)
            if window is not None:
                hidden |= (offset < -window[0]) | (offset > window[1])
            if key_lengths is not None:
                hidden |= pos[None, :] >= int(key_lengths[s])
            scores = scores.masked_fill(hidden, float("-inf"))
        out[start:end] = torch.matmul(torch.softmax(scores, dim=-1), vs).transpose(0, 1).to(q.dtype)
    return out


def attention_one_query(q, k, v, cu_seqlens, scale=None):
    """Attention of one query per packed sequence over every key of its sequence (unmasked): q [B, Hq, D], k, v
    [T, Hkv, D] -> [B, Hq, D]. This is `attention`'s output at the row of that query where the query sees every key
    (a bidirectional encoder's first token; a causal model's last). Its cost is O(T * H * D): segment sums instead
    of a [L, L] score matrix per sequence."""
    sequences, heads, head_dim = q.shape
    lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).long()
    if len(lengths) != sequences:
        raise ValueError(f"attention_one_query: {sequences} queries for {len(lengths)} sequences")
    if sequences and int(lengths.min()) < 1:
        raise ValueError(f"attention_one_query: sequence {int(torch.argmin(lengths))} is empty; it has no query")
    group = heads // k.shape[1]
    scale = 1.0 / math.sqrt(head_dim) if scale is None else scale
    compute = torch.promote_types(q.dtype, torch.float32)
    of_token = torch.repeat_interleave(torch.arange(sequences, device=q.device), lengths)  # [T]
    keys = k.to(compute).repeat_interleave(group, dim=1)
    values = v.to(compute).repeat_interleave(group, dim=1)
    scores = (q.to(compute)[of_token] * keys).sum(-1) * scale  # [T, Hq]
    peak = scores.new_full((sequences, heads), float("-inf"))
    peak = peak.scatter_reduce(0, of_token[:, None].expand(-1, heads), scores, "amax")
    weights = torch.exp(scores - peak[of_token])
    total = scores.new_zeros(sequences, heads).index_add_(0, of_token, weights)
    context = values.new_zeros(sequences, heads, head_dim).index_add_(0, of_token, weights[..., None] * values)
    return (context / total[..., None]).to(q.dtype)


def rotary(x, cos, sin):
    """Rotary position embedding, rotate-half form (Llama, Qwen, Gemma, ModernBERT, GTE, NomicBERT): for
    x [T, H, D] and cos / sin [T, R/2] (R <= D rotated dims), pairs (x[i], x[i + R/2]) turn by each angle;
    dims past R pass through."""
    half = cos.shape[-1]
    compute = torch.promote_types(x.dtype, torch.float32)
    x1, x2, rest = x[..., :half].to(compute), x[..., half : 2 * half].to(compute), x[..., 2 * half :]
    c, s = cos[:, None, :].to(compute), sin[:, None, :].to(compute)
    return torch.cat([(x1 * c - x2 * s).to(x.dtype), (x2 * c + x1 * s).to(x.dtype), rest], dim=-1)


_GLU_ACTIVATIONS = {"silu": F.silu, "gelu": F.gelu, "gelu_tanh": lambda t: F.gelu(t, approximate="tanh")}


def glu(gate_up, activation):
    """activation(gate) * up for gate_up [T, 2I] holding gate then up (one fused projection): SwiGLU with
    silu, GeGLU with gelu / gelu_tanh, in at least float32. Returns [T, I], contiguous."""
    compute = torch.promote_types(gate_up.dtype, torch.float32)
    gate, up = gate_up.to(compute).chunk(2, dim=-1)
    return (_GLU_ACTIVATIONS[activation](gate) * up).to(gate_up.dtype).contiguous()


def layer_norm(x, weight, bias, eps, residual=None):
    """LayerNorm(x + residual) over the last dim; the sum and the norm computed in at least float32."""
    compute = torch.promote_types(x.dtype, torch.float32)
    total = x.to(compute) if residual is None else x.to(compute) + residual.to(compute)
    bias = None if bias is None else bias.to(compute)
    return F.layer_norm(total, (x.shape[-1],), weight.to(compute), bias, eps).to(x.dtype)


def rms_norm(x, weight, eps, residual=None, return_sum=False):
    """x' = x + residual; x' / sqrt(mean(x'^2) + eps) * weight over the last dim, in at least float32.
    With return_sum, also x' (in x's dtype): pre-norm models carry it as the next residual."""
    compute = torch.promote_types(x.dtype, torch.float32)
    total = x.to(compute) if residual is None else x.to(compute) + residual.to(compute)
    normed = total * torch.rsqrt(total.pow(2).mean(dim=-1, keepdim=True) + eps) * weight.to(compute)
    return (normed.to(x.dtype), total.to(x.dtype)) if return_sum else normed.to(x.dtype)


def gelu(x, bias=None, approximate="none"):
    """GELU(x + bias), computed in at least float32; approximate="tanh" for gelu_new / gelu_pytorch_tanh."""
    compute = torch.promote_types(x.dtype, torch.float32)
    total = x.to(compute) if bias is None else x.to(compute) + bias.to(compute)
    return F.gelu(total, approximate=approximate).to(x.dtype)


def linear(x, weight, bias=None, activation=None):
    """activation(x @ weight.T + bias); activation None, "gelu" or "gelu_tanh"."""
    out = F.linear(x, weight, bias)
    return out if activation is None else gelu(out, approximate=GELU_APPROXIMATE[activation])


GELU_APPROXIMATE = {"gelu": "none", "gelu_tanh": "tanh"}


def _levels_over(v, levels: int):
    """levels / v, rounded once (0 where v is 0), as the C++ kernels divide. torch computes `levels / v` as
    levels * (1 / v), rounded twice: one product in ~300 rows of 384 then fell on the other side of a .5 tie."""
    return torch.where(v > 0, torch.full_like(v, levels) / v, torch.zeros_like(v))


def quantize_rows(x, levels: int = 127):
    """Symmetric per-row int8: scale = max|row| / levels, codes = round_half_even(x * levels / max|row|) in
    [-levels, levels] (127; 63 for 7-bit weights). An all-zero row gets scale 0 and zero codes.
    x: [rows, cols] (computed in float32) -> (int8 codes, float32 [rows])."""
    x = x.float()
    absmax = x.abs().amax(dim=1) if x.shape[1] else x.new_zeros(x.shape[0])
    inverse = _levels_over(absmax, levels)
    codes = torch.round(x * inverse[:, None]).clamp(-levels, levels).to(torch.int8)
    return codes, absmax / levels


def quantize_rows_asymmetric(x):
    """Asymmetric per-row 7-bit codes (csrc/cpu/int8_linear.h): each row's range [min(x, 0), max(x, 0)] in 127
    steps, scale = range / 127, zero = round_half_even(-min * 127 / range), unsigned codes
    u = clamp(round_half_even(x * 127 / range) + zero, 0, 127); returned centered, u - zero in [-127, 127], so that
    x ~ codes * scale as for quantize_rows. x: [rows, cols] -> (int8 codes, float32 [rows])."""
    x = x.float()
    if x.shape[1] == 0:
        return torch.zeros(x.shape, dtype=torch.int8), x.new_zeros(x.shape[0])
    low, high = x.amin(dim=1).clamp(max=0), x.amax(dim=1).clamp(min=0)
    span = high - low
    inverse = _levels_over(span, 127)
    zero = torch.round(-low * inverse)[:, None]
    unsigned = (torch.round(x * inverse[:, None]) + zero).clamp(0, 127)
    return (unsigned - zero).to(torch.int8), span / 127


def layer_codes(x, layer):
    """x quantized per row as the int8 layer takes it: asymmetric 7-bit codes or symmetric 8-bit ones."""
    return quantize_rows_asymmetric(x) if layer.asymmetric_input else quantize_rows(x)


def int8_feed_forward(x, up, down, activation):
    """down(activation(up(x))) with both projections int8 (ops.Linear layers with int8=True)."""
    return int8_linear(int8_linear(x, up, activation), down)


def int8_linear(x, layer, activation=None):
    """A linear layer on int8 codes: x quantized per row (token), weights per output channel (an ops.Linear
    with int8=True: qweight [out, in] int8, weight_scales [out], bias); exact integer products, dequantized
    in float32."""
    codes, scales = layer_codes(x, layer)
    acc = int8_matmul(codes, layer.qweight)
    out = acc.float() * (scales[:, None] * layer.weight_scales[None, :])
    if layer.bias is not None:
        out = out + layer.bias
    return out if activation is None else gelu(out, approximate=GELU_APPROXIMATE[activation])


def pool(hidden, cu_seqlens, mode, normalize=False, skip=None):
    """One vector per packed sequence, as sentence-transformers' Pooling computes it.

    `skip[i]` leading tokens of sequence i (a prompt) are left out. Weighted mean weights a token by
    its 1-based position in the whole sequence. An all-skipped sequence pools to zeros, except max
    (-inf) and cls (its first token), matching sentence-transformers' masked arithmetic.
    """
    if mode not in POOL_MODES:
        raise ValueError(f"unknown pooling mode {mode!r}; supported: {', '.join(POOL_MODES)}")
    bounds = cu_seqlens.tolist()
    skips = [0] * (len(bounds) - 1) if skip is None else skip.tolist()
    zeros = torch.zeros(hidden.shape[1], dtype=torch.float32, device=hidden.device)
    rows = []
    for start, end, n_skip in zip(bounds[:-1], bounds[1:], skips):
        seq = hidden[start:end].float()
        valid = seq[min(n_skip, end - start):]
        if mode == "cls":
            row = valid[0] if len(valid) else (seq[0] if len(seq) else zeros)
        elif mode == "lasttoken":
            row = valid[-1] if len(valid) else zeros
        elif mode == "max":
            row = valid.max(dim=0).values if len(valid) else torch.full_like(zeros, float("-inf"))
        else:
            positions = torch.arange(end - start - len(valid) + 1, end - start + 1, device=hidden.device)
            weights = positions.float() if mode == "weightedmean" else torch.ones(len(valid), device=hidden.device)
            total = weights.sum().clamp(min=1e-9)
            row = (valid * weights[:, None]).sum(dim=0) / (total.sqrt() if mode == "mean_sqrt_len_tokens" else total)
        rows.append(row)
    out = torch.stack(rows) if rows else hidden.new_zeros((0, hidden.shape[1]), dtype=torch.float32)
    return F.normalize(out, p=2, dim=1) if normalize else out


SPLADE_POOLINGS = ("max", "sum")
SPLADE_ACTIVATIONS = ("relu", "log1p_relu")


# Bytes of float32 logits per step of splade_pool: a chunk of tokens at a time, so that where no kernel runs (a
# baseline x86-64 CPU) the [T, vocab] logits are never whole either (a 4,096-token batch onto BERT's 30,522 terms
# would be 500 MB).
SPLADE_CHUNK_BYTES = 8 << 20


def splade_pool(hidden, cu_seqlens, layer, pooling="max", activation="relu"):
    """SPLADE's term weights of each packed sequence: the pooling ("max" or "sum") over its tokens of
    log1p(relu(logits)) (activation "relu") or log1p(log1p(relu(logits))) ("log1p_relu"), logits = the
    vocabulary projection `layer` (an ops.Linear) of hidden [T, H]. Float32 [num_seqs, vocab]; an empty sequence
    gives zeros. Computes the logits a chunk of tokens at a time (SPLADE_CHUNK_BYTES); the kernels never write
    them at all."""
    bounds = cu_seqlens.to(torch.int64)
    sequence_of = torch.repeat_interleave(torch.arange(len(bounds) - 1, device=hidden.device), bounds.diff())
    out = torch.zeros((len(bounds) - 1, layer.out_features), device=hidden.device)
    chunk = max(1, SPLADE_CHUNK_BYTES // (4 * layer.out_features))
    for start in range(0, hidden.shape[0], chunk):
        rows = hidden[start : start + chunk]
        if layer.int8:
            logits = int8_linear(rows.float(), layer)
        else:
            logits = linear(rows.to(layer.dtype), layer.weight, None if layer.bias is None else layer.bias.to(layer.dtype))
        weights = logits.float().relu_().log1p_()
        if activation == "log1p_relu":
            weights.log1p_()
        # weights >= 0, so a maximum from the zeros it starts at is the tokens' maximum (and 0 for no tokens)
        if pooling == "max":
            out.index_reduce_(0, sequence_of[start : start + chunk], weights, "amax")
        else:
            out.index_add_(0, sequence_of[start : start + chunk], weights)
    return out


def maxsim(queries, query_cu, documents, doc_cu, int8: bool = False):
    """Late-interaction scores float32 [num_queries, num_docs]: for query a and document b (token vectors, packed
    with cu_seqlens-style offsets), the sum over a's tokens of the largest dot product with any token of b. A
    query or document without tokens scores 0. int8: both sides' tokens quantized per token (quantize_rows;
    documents may come as their (codes, scales) already), exact integer dot products, dequantized by the two
    scales before the max."""
    if int8:
        q_codes, q_scales = quantize_rows(queries)
        d_codes, d_scales = documents if isinstance(documents, tuple) else quantize_rows(documents)
        sims = int8_matmul(q_codes, d_codes).float() * (q_scales[:, None] * d_scales[None, :])
    else:
        sims = queries.float() @ documents.float().t()
    qb, db = query_cu.tolist(), doc_cu.tolist()
    out = torch.zeros(len(qb) - 1, len(db) - 1)
    for a, (q0, q1) in enumerate(zip(qb[:-1], qb[1:])):
        for b, (d0, d1) in enumerate(zip(db[:-1], db[1:])):
            if q1 > q0 and d1 > d0:
                out[a, b] = sims[q0:q1, d0:d1].amax(dim=1).sum()
    return out


def _topk_lower_id(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the k highest scores, equal scores to the lower column (a stable sort)."""
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]
    return scores.gather(1, order), order


def int8_topk(queries, corpus, k):
    """Top-k int8 dot products: (scores int32 [nq, k'], ids int64), k' = min(k, n), ties to the lower id.
    Summed in float64, exact for any realistic dimension (|score| < 2^53)."""
    scores = queries.double() @ corpus.double().T
    best, ids = _topk_lower_id(scores, min(k, corpus.shape[0]))
    return best.to(torch.int32), ids


def hamming_topk(queries, corpus, k):
    """Top-k nearest by Hamming distance over packed bits (uint8 [n, d/8]): (distances int32, ids int64),
    nearest first, equal distances to the lower id."""
    bits = torch.tensor([bin(i).count("1") for i in range(256)], dtype=torch.int32, device=queries.device)
    distance = bits[(queries[:, None, :] ^ corpus[None, :, :]).long()].sum(dim=2)
    best, ids = _topk_lower_id(-distance, min(k, corpus.shape[0]))
    return (-best).to(torch.int32), ids
