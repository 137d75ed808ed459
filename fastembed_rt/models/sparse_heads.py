"""Sparse (lexical) heads over a backbone's packed hidden states [T, H]:

- SPLADE: the masked-LM head (transform: dense + activation + LayerNorm; then the vocabulary projection, tied to
  the word embeddings when the checkpoint has no decoder weight, plus its bias), pooled over each sequence's
  tokens as log1p(relu(logits)) by ops.splade_pool, which never writes the [T, vocab] logits;
- BGE-M3's sparse head: relu(linear(hidden)) per token, kept per distinct token id by max, special tokens dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .. import ops
from .heads import _Tensors

# The masked-LM head's tensors per family: (transform dense, transform norm, decoder, decoder bias candidates).
_MLM_NAMES = {
    "bert": ("cls.predictions.transform.dense", "cls.predictions.transform.LayerNorm", "cls.predictions.decoder",
             ("cls.predictions.decoder.bias", "cls.predictions.bias")),
    "distilbert": ("vocab_transform", "vocab_layer_norm", "vocab_projector", ("vocab_projector.bias",)),
}  # fmt: skip
_TRANSFORM_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu"}


@dataclass
class MaskedLMHead:
    """log1p(relu(MLM logits)) pooled per sequence: [num_seqs, vocab] float32."""

    dense: ops.Linear
    activation: str
    norm_weight: torch.Tensor
    norm_bias: torch.Tensor
    eps: float
    decoder: ops.Linear
    pooling: str = "max"
    splade_activation: str = "relu"

    def __call__(self, hidden: torch.Tensor, cu_seqlens: torch.Tensor) -> torch.Tensor:
        x = self.dense(hidden.float(), None if self.activation == "relu" else self.activation)
        if self.activation == "relu":
            x = F.relu(x)
        x = ops.layer_norm(x, self.norm_weight, self.norm_bias, self.eps)
        return ops.splade_pool(x, cu_seqlens, self.decoder, self.pooling, self.splade_activation)


def masked_lm_head(config: dict, weights: dict[str, torch.Tensor], device, dtype: torch.dtype, int8: bool,
                   pooling: str = "max", activation: str = "relu") -> MaskedLMHead:  # fmt: skip
    """The masked-LM head of a BertForMaskedLM / DistilBertForMaskedLM checkpoint. The transform runs in float32
    (it is [H, H]); the vocabulary projection at the model's precision (int8: 7-bit where the AVX2 kernels want
    it, its input being a LayerNorm output)."""
    model_type = config.get("model_type")
    if model_type not in _MLM_NAMES:
        raise ValueError(f"no SPLADE (masked-LM) head for model_type {model_type!r}; supported: {', '.join(_MLM_NAMES)}")
    dense_name, norm_name, decoder_name, bias_names = _MLM_NAMES[model_type]
    hidden = config["dim"] if model_type == "distilbert" else config["hidden_size"]
    vocab = config["vocab_size"]
    act = config.get("activation" if model_type == "distilbert" else "hidden_act", "gelu")
    if act not in _TRANSFORM_ACTIVATIONS:
        raise ValueError(f"config.json: unsupported masked-LM head activation {act!r}; supported: {', '.join(_TRANSFORM_ACTIVATIONS)}")
    t = _Tensors(weights, device)
    dense = ops.Linear(t.get(dense_name + ".weight", (hidden, hidden)), t.get(dense_name + ".bias", (hidden,)))
    decoder_weight = decoder_name + ".weight"
    if t.find(decoder_weight) is None:  # tied: the decoder is the word-embedding table
        decoder_weight = "embeddings.word_embeddings.weight"
    table = t.get(decoder_weight, (vocab, hidden))
    bias_name = next((name for name in bias_names if t.find(name) is not None), None)
    bias = t.get(bias_name, (vocab,)) if bias_name else None
    if int8:
        decoder = ops.Linear(table, bias, int8=True, seven_bit=True, panels_only=True)
    else:
        decoder = ops.Linear(table.to(dtype), None if bias is None else bias.to(dtype), panels_only=True)
    eps = 1e-12 if model_type == "distilbert" else config.get("layer_norm_eps", 1e-12)
    return MaskedLMHead(dense, _TRANSFORM_ACTIVATIONS[act], t.get(norm_name + ".weight", (hidden,)),
                        t.get(norm_name + ".bias", (hidden,)), eps, decoder, pooling, activation)  # fmt: skip


@dataclass
class TokenWeightHead:
    """BGE-M3's sparse head: each token's weight relu(hidden . w + b); per sequence, the largest weight of each
    distinct token id, special tokens and zero weights left out."""

    weight: torch.Tensor  # [H] float32
    bias: float
    special_ids: torch.Tensor  # int64
    vocab_size: int

    def __call__(self, hidden: torch.Tensor, cu_seqlens: torch.Tensor, input_ids: torch.Tensor):
        """(row, token id, weight) of every kept (sequence, token id), sorted by row then id."""
        weights = torch.relu(hidden.float() @ self.weight + self.bias)
        lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).long()
        rows = torch.repeat_interleave(torch.arange(len(lengths), device=hidden.device), lengths)
        ids = input_ids.long()
        keep = (weights > 0) & ~torch.isin(ids, self.special_ids.to(ids.device))
        keys = rows[keep] * self.vocab_size + ids[keep]
        unique, inverse = torch.unique(keys, return_inverse=True)
        best = torch.zeros(len(unique), device=hidden.device).scatter_reduce(0, inverse, weights[keep], "amax", include_self=False)
        return unique // self.vocab_size, unique % self.vocab_size, best


def token_weight_head(state: dict[str, torch.Tensor], hidden: int, vocab: int, special_ids: list[int], device,
                      source: str) -> TokenWeightHead:  # fmt: skip
    """The head from sparse_linear.pt's state dict (a Linear(hidden, 1)); `source` names the file in errors."""
    weight, bias = state.get("weight"), state.get("bias")
    if not isinstance(weight, torch.Tensor) or tuple(weight.shape) != (1, hidden):
        raise ValueError(f"{source}: expected 'weight' [1, {hidden}], got "
                         f"{tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__}")  # fmt: skip
    if bias is not None and (not isinstance(bias, torch.Tensor) or bias.numel() != 1):
        raise ValueError(f"{source}: expected 'bias' [1]")
    return TokenWeightHead(weight.reshape(hidden).to(device, torch.float32).contiguous(),
                           0.0 if bias is None else float(bias.reshape(())), torch.tensor(sorted(set(special_ids))), vocab)  # fmt: skip
