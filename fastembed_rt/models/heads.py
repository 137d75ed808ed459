"""Reranker heads over a backbone's packed hidden states [T, H] → logits [num_seqs, labels], in float32:

- sequence classification, as transformers' *ForSequenceClassification computes it for each family (one
  pooled token or the mean, then the family's dense / activation / norm steps, then the classifier);
- yes/no (LLM rerankers such as Qwen3-Reranker): logit("yes") - logit("no") at the last token, from those two
  rows of the LM head only, never the whole vocabulary.

Heads are small ([labels, H]), so they run in float32 whatever the backbone's precision.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from .. import ops
from ..weights import shape_problem

_ACTIVATIONS: dict[str, Callable] = {
    "tanh": torch.tanh, "relu": F.relu, "silu": F.silu, "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"), "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
}  # fmt: skip
_DECODERS = ("llama", "mistral", "qwen2", "qwen3", "gemma3_text")
# model_type → the *ForSequenceClassification head transformers puts on it
_POOLER = ("bert", "gte", "nomic_bert")
_CLASSIFICATION_HEAD = ("roberta", "xlm-roberta", "camembert", "mpnet", "jina_embeddings_v3")
HEADS = {
    **dict.fromkeys(_POOLER, "pooler (dense + tanh) on [CLS], classifier"),
    **dict.fromkeys(_CLASSIFICATION_HEAD, "dense + tanh on <s>, out_proj"),
    "distilbert": "pre_classifier + ReLU on [CLS], classifier",
    "modernbert": "cls or mean, dense + activation + norm, classifier",
    **dict.fromkeys(_DECODERS, "score on the last token; or yes/no logits (load_reranker)"),
}


@dataclass
class Head:
    """pool ("first", "last" or "mean" token of each sequence), then each step in turn."""

    pooling: str
    steps: list[Callable[[torch.Tensor], torch.Tensor]]
    num_labels: int

    def rows(self, cu_seqlens: torch.Tensor) -> torch.Tensor | None:
        """The one token of each sequence this head reads (its first or last), or None (mean: all of them)."""
        if self.pooling == "mean":
            return None
        return (cu_seqlens[:-1] if self.pooling == "first" else cu_seqlens[1:] - 1).long()

    def __call__(self, hidden: torch.Tensor, cu_seqlens: torch.Tensor, pooled: bool = False) -> torch.Tensor:
        """hidden: every token's states [T, H]; or, pooled, only those of rows() [B, H]."""
        if pooled:
            x = hidden.float()
        elif self.pooling == "mean":
            x = ops.pool(hidden, cu_seqlens, "mean").float()
        else:
            x = hidden[self.rows(cu_seqlens)].float()
        for step in self.steps:
            x = step(x)
        return x


class _Tensors:
    """Head tensors by name, or by the suffix after the backbone's prefix (`bert.pooler.dense`), shape-checked."""

    def __init__(self, weights: dict[str, torch.Tensor], device):
        self.weights, self.device = weights, device

    def find(self, name: str) -> str | None:
        if name in self.weights:
            return name
        matches = sorted((k for k in self.weights if k.endswith("." + name)), key=len)
        return matches[0] if matches else None

    def get(self, name: str, shape: tuple) -> torch.Tensor:
        key = self.find(name)
        if key is None:
            raise ValueError(f"checkpoint is missing the head tensor {name!r}")
        if (problem := shape_problem(key, self.weights[key], shape)) is not None:
            raise ValueError(problem)
        stored = self.weights[key]
        # Heads are small: copies, so that no view keeps a converted model's file mapped. A vocabulary table (tens of
        # MB, packed right away) stays a view.
        return stored.to(self.device, torch.float32, copy=stored.numel() < 1 << 20).contiguous()

    def linear(self, prefix: str, rows: int, cols: int, bias: bool = True) -> Callable:
        weight = self.get(prefix + ".weight", (rows, cols))
        b = self.get(prefix + ".bias", (rows,)) if bias else None
        return lambda x: F.linear(x, weight, b)


def num_labels(config: dict) -> int:
    """Labels of a classifier checkpoint: id2label's count, else num_labels, else 2 (transformers' default)."""
    id2label = config.get("id2label")
    if isinstance(id2label, dict) and id2label:
        return len(id2label)
    labels = config.get("num_labels", 2)
    if not isinstance(labels, int) or isinstance(labels, bool) or labels < 1:
        raise ValueError(f"config.json: num_labels must be a positive int, got {labels!r}")
    return labels


def classifier_head(config: dict, weights: dict[str, torch.Tensor], hidden: int, device) -> Head:
    """The sequence-classification head of config's model_type, read from the checkpoint's tensors."""
    model_type, labels, t = config.get("model_type"), num_labels(config), _Tensors(weights, device)
    if model_type in _POOLER:
        steps = [t.linear("pooler.dense", hidden, hidden), torch.tanh, t.linear("classifier", labels, hidden)]
        return Head("first", steps, labels)
    if model_type in _CLASSIFICATION_HEAD:
        steps = [t.linear("classifier.dense", hidden, hidden), torch.tanh, t.linear("classifier.out_proj", labels, hidden)]
        return Head("first", steps, labels)
    if model_type == "distilbert":
        steps = [t.linear("pre_classifier", hidden, hidden), F.relu, t.linear("classifier", labels, hidden)]
        return Head("first", steps, labels)
    if model_type == "modernbert":
        pooling = config.get("classifier_pooling", "cls")
        activation = config.get("classifier_activation", "gelu")
        if pooling not in ("cls", "mean"):
            raise ValueError(f"config.json: unsupported classifier_pooling {pooling!r}; supported: cls, mean")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"config.json: unsupported classifier_activation {activation!r}; supported: {', '.join(_ACTIVATIONS)}")
        norm_weight = t.get("head.norm.weight", (hidden,))
        norm_bias = t.get("head.norm.bias", (hidden,)) if config.get("norm_bias", False) else None
        eps = config.get("norm_eps", 1e-5)
        steps = [t.linear("head.dense", hidden, hidden, bias=config.get("classifier_bias", False)), _ACTIVATIONS[activation],
                 lambda x: F.layer_norm(x, (hidden,), norm_weight, norm_bias, eps), t.linear("classifier", labels, hidden)]  # fmt: skip
        return Head("first" if pooling == "cls" else "mean", steps, labels)
    if model_type in _DECODERS:  # the last token: its attention has seen the whole pair
        return Head("last", [t.linear("score", labels, hidden, bias=False)], labels)
    raise ValueError(f"no sequence-classification head for model_type {model_type!r}")


def yes_no_head(config: dict, weights: dict[str, torch.Tensor], hidden: int, yes_id: int, no_id: int, device) -> Head:
    """logit(yes) - logit(no) at the last token: one [H] vector, the difference of the LM head's two rows."""
    if config.get("model_type") not in _DECODERS:
        raise ValueError(f"a yes/no reranker needs a decoder LLM; model_type {config.get('model_type')!r} is not one")
    t = _Tensors(weights, device)
    vocab = config.get("vocab_size")
    name = "lm_head.weight" if t.find("lm_head.weight") else None
    if name is None:
        if not config.get("tie_word_embeddings", True):
            raise ValueError("checkpoint has no lm_head.weight and config.json says its word embeddings are not tied")
        name = "embed_tokens.weight"  # tied: the LM head is the input embedding table
    table = t.get(name, (vocab, hidden))
    difference = (table[yes_id] - table[no_id]).reshape(hidden, 1).contiguous()
    steps = [lambda x: x @ difference]
    if t.find("lm_head.bias"):
        bias = t.get("lm_head.bias", (vocab,))
        steps.append(lambda x, offset=float(bias[yes_id] - bias[no_id]): x + offset)
    return Head("last", steps, 1)
