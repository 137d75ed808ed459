"""The sentence-embedding head: pooling of packed states, optional Dense layers, Matryoshka truncation, L2 norm."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from . import ops

# sentence-transformers' older boolean keys, in the order its Pooling concatenates them.
_LEGACY_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}

_DENSE_ACTIVATIONS = {
    "Identity": lambda x: x,
    "Tanh": torch.tanh,
    "ReLU": F.relu,
    "GELU": F.gelu,
    "Sigmoid": torch.sigmoid,
    "SiLU": F.silu,
}


@dataclass(frozen=True)
class PoolingConfig:
    """Pooling modes (concatenated when several) and whether prompt tokens take part."""

    modes: tuple[str, ...]
    include_prompt: bool = True

    def __post_init__(self):
        if not self.modes:
            raise ValueError("pooling needs at least one mode")
        for mode in self.modes:
            if mode not in ops.POOL_MODES:
                raise ValueError(f"unknown pooling mode {mode!r}; supported: {', '.join(ops.POOL_MODES)}")

    @classmethod
    def from_json(cls, config: dict, source: Path | str = "pooling config") -> PoolingConfig:
        """Reads both the newer `pooling_mode` form and the older boolean `pooling_mode_*` form."""
        mode = config.get("pooling_mode")
        if mode is None:
            modes = tuple(m for key, m in _LEGACY_POOLING_KEYS.items() if config.get(key, False)) or ("mean",)
        else:
            modes = (mode,) if isinstance(mode, str) else tuple(mode)
        try:
            return cls(modes=modes, include_prompt=bool(config.get("include_prompt", True)))
        except ValueError as e:
            raise ValueError(f"{source}: {e}") from None


@dataclass
class Dense:
    """A sentence-transformers Dense module: activation(x @ W.T + b); PyLate's use_residual adds x to that (through
    residual_weight, x @ R.T, when the widths differ)."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    activation: str = "Identity"
    use_residual: bool = False
    residual_weight: torch.Tensor | None = None

    @classmethod
    def load(cls, directory: Path) -> Dense:
        from .weights import load_weights, shape_problem

        config_path = directory / "config.json"
        if not config_path.is_file():
            raise FileNotFoundError(f"{config_path} is missing")
        config = json.loads(config_path.read_text())
        activation = str(config.get("activation_function", "Identity")).rsplit(".", 1)[-1]
        if activation not in _DENSE_ACTIVATIONS:
            raise ValueError(f"{config_path}: unsupported activation_function {activation!r}; supported: {', '.join(_DENSE_ACTIVATIONS)}")
        weights = load_weights(directory)
        if "linear.weight" not in weights:
            raise ValueError(f"{directory}: Dense weights lack 'linear.weight'")
        weight, bias = weights["linear.weight"], weights.get("linear.bias")
        rows, cols = config.get("out_features"), config.get("in_features")
        use_residual = bool(config.get("use_residual", False))
        residual = None
        if use_residual and weight.shape[0] != weight.shape[1]:  # PyLate's own linear between the widths
            residual = weights.get("residual.weight")
            if residual is None:
                raise ValueError(f"{directory}: a use_residual Dense from {weight.shape[1]} to {weight.shape[0]} features needs 'residual.weight'")
        for name, tensor, shape in (("linear.weight", weight, (rows, cols)), ("linear.bias", bias, (rows,)),
                                    ("residual.weight", residual, tuple(weight.shape))):  # fmt: skip
            if tensor is not None and (problem := shape_problem(name, tensor, shape)) is not None:
                raise ValueError(f"{directory}: {problem}")
        return cls(weight, bias, activation, use_residual, residual)

    def to(self, device, dtype=torch.float32) -> Dense:
        """Copies (a few MB at most), so that no view keeps the weights file mapped (for ColBERT's projection, the
        model's own)."""
        weight, bias, residual = (None if t is None else t.to(device, dtype, copy=True)
                                  for t in (self.weight, self.bias, self.residual_weight))  # fmt: skip
        return Dense(weight, bias, self.activation, self.use_residual, residual)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = _DENSE_ACTIVATIONS[self.activation](F.linear(x, self.weight, self.bias))
        if self.use_residual:
            y = y + (x if self.residual_weight is None else F.linear(x, self.residual_weight))
        return y


def sentence_embeddings(
    hidden: torch.Tensor,
    cu_seqlens: torch.Tensor,
    pooling: PoolingConfig,
    *,
    skip: torch.Tensor | None = None,
    dense: list[Dense] = (),
    truncate_dim: int | None = None,
    normalize: bool = False,
) -> torch.Tensor:
    """Packed hidden states [T, H] → float32 sentence embeddings [num_seqs, d].

    Order as in sentence-transformers: pool, Dense, then Matryoshka truncation, then L2 normalization
    (so a truncated vector is re-normalized). With a single mode and nothing in between, the pooling
    kernel normalizes in the same pass.
    """
    skip = None if pooling.include_prompt else skip
    fuse_normalize = normalize and len(pooling.modes) == 1 and not dense and truncate_dim is None
    pooled = [ops.pool(hidden, cu_seqlens, mode, normalize=fuse_normalize, skip=skip) for mode in pooling.modes]
    out = pooled[0] if len(pooled) == 1 else torch.cat(pooled, dim=-1)
    for layer in dense:
        out = layer(out)
    if truncate_dim is not None:
        out = out[:, :truncate_dim]
    if normalize and not fuse_normalize:
        out = F.normalize(out, p=2, dim=-1)
    return out
