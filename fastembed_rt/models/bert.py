"""BERT-family encoders over packed sequences: BERT (MiniLM, BGE, E5, GTE v1) and RoBERTa / XLM-RoBERTa /
CamemBERT, which differ only in where position ids start. DistilBERT reuses the same encoder layer.

Post-LayerNorm transformer: x = LN(x + Attn(x)); x = LN(x + FFN(x)). Tokens of all sequences are one
[total_tokens, hidden] tensor; `cu_seqlens` keeps sequences apart inside attention, nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import ops
from ..weights import shape_problem

# hidden_act → the activation name the op layer's linear layers fuse.
GELU_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu_fast": "gelu_tanh"}


@dataclass
class EncoderConfig:
    hidden_size: int
    num_layers: int
    num_heads: int
    layer_norm_eps: float
    activation: str
    position_offset: int = 0  # RoBERTa: positions start at padding_idx + 1

    def __post_init__(self):
        if self.activation not in GELU_ACTIVATIONS:
            raise ValueError(f"unsupported hidden_act {self.activation!r}; supported: {', '.join(GELU_ACTIVATIONS)}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_attention_heads {self.num_heads}")


@dataclass
class EncoderLayer:
    # [3H, H]: one GEMM for queries, keys and values; or [2H, H], queries and keys only, with the values in `value`
    # (WeightReader.attention_inputs says when).
    qkv: ops.Linear
    out: ops.Linear
    attn_norm_weight: torch.Tensor
    attn_norm_bias: torch.Tensor
    up: ops.Linear
    down: ops.Linear
    ffn_norm_weight: torch.Tensor
    ffn_norm_bias: torch.Tensor
    value: ops.Linear | None = None

    def attention_inputs(self, x, config: EncoderConfig):
        """Queries, keys and values [tokens, heads, head_dim]: views into the projections' outputs."""
        heads = (x.shape[0], -1, config.num_heads, config.hidden_size // config.num_heads)
        projected = self.qkv(x).view(heads)
        values = projected[:, 2] if self.value is None else self.value(x).view(heads)[:, 0]
        return projected[:, 0], projected[:, 1], values

    def forward(self, x, cu_seqlens, max_seqlen, config: EncoderConfig, relative_bias=None, key_lengths=None,
                rows=None):  # fmt: skip
        """rows [B]: one token per sequence whose query sees every key (see Encoder.forward); the layer then returns
        only those rows, having computed the rest of the tokens as far as attention's keys and values."""
        q, k, v = self.attention_inputs(x, config)
        if rows is None:
            context = ops.attention(q, k, v, cu_seqlens, max_seqlen, relative_bias=relative_bias, key_lengths=key_lengths)
        else:
            context = ops.attention_one_query(q[rows], k, v, cu_seqlens)
            x = x[rows]
        attn_out = self.out(context.reshape(x.shape[0], config.hidden_size))
        x = ops.layer_norm(attn_out, self.attn_norm_weight, self.attn_norm_bias, config.layer_norm_eps, residual=x)
        ffn_out = ops.feed_forward(x, self.up, self.down, GELU_ACTIVATIONS[config.activation])
        return ops.layer_norm(ffn_out, self.ffn_norm_weight, self.ffn_norm_bias, config.layer_norm_eps, residual=x)


# Up to this many tokens a batch runs through the fused C++ encoder (one call, no Python between layers,
# its own small-batch GEMMs); larger batches go op by op, where oneDNN's GEMMs are faster.
FUSED_MAX_TOKENS = 48


class Encoder:
    """Embeddings + post-LN encoder layers; forward(input_ids [T], cu_seqlens [B+1]) -> [T, H]."""

    takes_rows = True  # forward(..., rows=) computes the last layer for those rows only

    def __init__(self, config: EncoderConfig, word, position, token_type, norm_weight, norm_bias, layers,
                 token_type_delta=None):  # fmt: skip
        self.config = config
        self.word_embeddings = word
        self.position_embeddings = position
        self.token_type_embedding = token_type  # row 0 of the token-type table, or None (DistilBERT)
        self.token_type_delta = token_type_delta  # row 1 - row 0, for the second text of a pair; None: one type
        self.norm_weight, self.norm_bias = norm_weight, norm_bias
        self.layers: list[EncoderLayer] = layers
        self._fused = None  # built at the first small batch; False where this CPU or model cannot use it

    def fused(self):
        """The fused C++ encoder (_C.FusedEncoder) over these weights, or None where it cannot run."""
        if self._fused is None:
            self._fused = self._build_fused() or False
        return self._fused or None

    def _build_fused(self):
        from .. import _C

        linears = [lin for layer in self.layers for lin in (layer.qkv, layer.value, layer.out, layer.up, layer.down) if lin]
        if self.word_embeddings.device.type != "cpu" or self.word_embeddings.dtype not in (torch.float32, torch.bfloat16):
            return None
        if not all(_C.fused_encoder_supported(kind) for kind in {lin.kind for lin in linears}):
            return None

        def f32(t):  # norms, widened: the fused encoder computes in float32
            return t.float().contiguous().numpy()

        def table(t):  # embedding tables read in place, bfloat16 ones as their bits
            return (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).contiguous().numpy()

        c = self.config
        token_type = None if self.token_type_embedding is None else table(self.token_type_embedding)
        fused = _C.FusedEncoder(table(self.word_embeddings), table(self.position_embeddings), token_type,
                                f32(self.norm_weight), f32(self.norm_bias), c.num_heads, c.layer_norm_eps,
                                ops.cpu.ACTIVATION_CODES[GELU_ACTIVATIONS[c.activation]], c.position_offset)  # fmt: skip
        for layer in self.layers:
            fused.add_layer(layer.qkv.panels(), layer.out.panels(), f32(layer.attn_norm_weight), f32(layer.attn_norm_bias),
                            layer.up.panels(), layer.down.panels(), f32(layer.ffn_norm_weight), f32(layer.ffn_norm_bias),
                            value=layer.value and layer.value.panels())  # fmt: skip
        return fused

    @property
    def max_positions(self) -> int:
        return self.position_embeddings.shape[0] - self.config.position_offset

    def forward(self, input_ids: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int,
                token_types: torch.Tensor | None = None, key_lengths: torch.Tensor | None = None,
                rows: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """token_types [T] (0 or 1): the segment of each token of text pairs; None: all 0. key_lengths [B]: attention
        keys are each sequence's first tokens (ColBERT's query expansion); None: all of them. rows [B]: the index
        of one token per sequence (its first, as a [CLS] head reads it; any token's query sees every key here), the
        only hidden states wanted: returns [B, H], the last layer run past its keys and values for those rows alone
        (a sixth of MiniLM's work)."""
        if rows is not None and key_lengths is not None:
            raise ValueError("rows and key_lengths cannot be combined: a row's query would not see every key")
        fusable = token_types is None and not (ops.reference_only() or ops.forcing())
        if input_ids.numel() <= FUSED_MAX_TOKENS and fusable and self.fused() is not None:
            keys = None if key_lengths is None else key_lengths.to(torch.int32).numpy()
            hidden = torch.from_numpy(self._fused.forward(input_ids.numpy(), cu_seqlens.to(torch.int32).numpy(),
                                                          torch.get_num_threads(), keys))  # fmt: skip
            return hidden if rows is None else hidden[rows]
        x = ops.embed(self.word_embeddings, self.position_embeddings, self.token_type_embedding, input_ids, cu_seqlens,
                      self.config.position_offset).to(self.norm_weight.dtype)  # fmt: skip
        x = add_token_types(x, token_types, self.token_type_delta)
        x = ops.layer_norm(x, self.norm_weight, self.norm_bias, self.config.layer_norm_eps)
        for i, layer in enumerate(self.layers):
            last = i == len(self.layers) - 1
            x = layer.forward(x, cu_seqlens, max_seqlen, self.config, key_lengths=key_lengths, rows=rows if last else None)
        return x if rows is None or self.layers else x[rows]


def add_token_types(x: torch.Tensor, token_types: torch.Tensor | None, delta: torch.Tensor | None) -> torch.Tensor:
    """x (embedded with token type 0) plus, for the tokens of type 1, the difference of the two types' rows."""
    if token_types is None:
        return x
    if delta is None:
        raise ValueError("this model has one token type; it cannot take the second text of a pair as type 1")
    if int(token_types.max()) > 1 or int(token_types.min()) < 0:
        raise ValueError(f"token type ids must be 0 or 1, got {int(token_types.min())}..{int(token_types.max())}")
    return x + token_types.to(x.dtype)[:, None] * delta


def token_type_rows(w: "WeightReader", name: str, types: int | None, hidden: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(row 0, row 1 - row 0 or None) of a token-type table: every text is type 0 unless it is a pair's second."""
    table = w.table(name, (types, hidden))
    return table[0], (table[1] - table[0]).contiguous() if table.shape[0] > 1 else None


class WeightReader:
    """Looks up checkpoint tensors whatever prefix the saving class added (`bert.`, `roberta.`, ...),
    converting them to the runtime's device and dtype, and names the missing tensor when one is absent.
    With int8=True, linear layers keep int8 weights (the rest stays in `dtype`); with float_ffn_up too, the
    feed-forward input projections stay in float (their builders ask `w.float_ffn_up`).
    `dtype` bfloat16 where ops.widened_bfloat16: linear weights and embedding tables (`table`) in bfloat16, the
    rest, and so the activations, in float32 (`self.dtype`)."""

    def __init__(self, weights: dict[str, torch.Tensor], anchor: str, device, dtype, int8: bool = False,
                 float_ffn_up: bool = False):  # fmt: skip
        prefixes = [name[: -len(anchor)] for name in weights if name.endswith(anchor)]
        if not prefixes:
            raise ValueError(f"checkpoint has no tensor named '*{anchor}'; is this the right architecture?")
        self.prefix = min(prefixes, key=len)
        self.weights, self.device, self.int8 = weights, device, int8
        self.weight_dtype = dtype
        self.dtype = torch.float32 if dtype == torch.bfloat16 and ops.widened_bfloat16(device) else dtype
        self.float_ffn_up = float_ffn_up

    def raw(self, name: str, shape: tuple) -> torch.Tensor:
        """The tensor as stored, after checking its shape against `shape` (from config.json; None: any size)."""
        tensor = self.weights.get(self.prefix + name)
        if tensor is None:
            raise ValueError(f"checkpoint is missing tensor {self.prefix + name!r}")
        if (problem := shape_problem(self.prefix + name, tensor, shape)) is not None:
            raise ValueError(problem)
        return tensor

    def __call__(self, name: str, shape: tuple) -> torch.Tensor:
        stored = self.raw(name, shape)
        # A model whose weights are converted keeps no view of the file: one float32 norm left as a view kept all
        # of a bfloat16 MiniLM's 90 MB file mapped and resident.
        return stored.to(self.device, self.dtype, copy=self.weight_dtype != stored.dtype).contiguous()

    def table(self, name: str, shape: tuple) -> torch.Tensor:
        """An embedding table, in the weights' precision: in a small model, most of its bytes."""
        return self.raw(name, shape).to(self.device, self.weight_dtype).contiguous()

    def linear(self, *prefixes: str, rows: int | tuple, cols: int, bias: bool = True, sensitive: bool = False,
               seven_bit: bool = False, gelu_input: bool = False) -> ops.Linear:  # fmt: skip
        """One linear layer from `prefix.weight` [rows, cols] (and `prefix.bias`), several prefixes stacked into one
        GEMM (`rows` per prefix, or one count for all). Under int8, a `sensitive` layer stays in float: bfloat16 where
        that runs about as fast as float32; a `seven_bit` one may take 7-bit weights, and one whose input is a GELU
        output 7-bit asymmetric input codes, where that is faster (ops.Linear)."""
        rows = rows if isinstance(rows, tuple) else (rows,) * len(prefixes)
        weight = torch.cat([self.table(p + ".weight", (r, cols)) for p, r in zip(prefixes, rows)])
        bias_tensor = torch.cat([self(p + ".bias", (r,)) for p, r in zip(prefixes, rows)]) if bias else None
        return self.as_linear(weight, bias_tensor, sensitive=sensitive, seven_bit=seven_bit, gelu_input=gelu_input)

    def attention_inputs(self, q: str, k: str, v: str, hidden: int, bias: bool = True) -> tuple[ops.Linear, ops.Linear | None]:
        """The attention's input projections `q`, `k`, `v` [hidden, hidden] as (qkv, value): one GEMM for all three
        and None; or, under int8 where a float layer would run in float32 (no fast bfloat16), queries and keys as
        one int8 GEMM and the values in float32. The values are what int8 errs on most: on 2,000 bench texts,
        MiniLM's min cosine to float32 was 0.9839 with all three in int8, 0.9933 with the values in float32 and
        0.9925 with all three in float32 (FASTEMBED_RT_ISA=avx2, where 1,000 texts took 9.02 s against 9.51 s with
        float32 QKV, best of 4 alternating in one process). Elsewhere QKV stays in bfloat16 (min cosine 0.994)."""
        if self.int8 and not ops.fast_bfloat16(self.device):
            return (self.linear(q, k, rows=hidden, cols=hidden, bias=bias, seven_bit=True),
                    self.linear(v, rows=hidden, cols=hidden, bias=bias, sensitive=True))  # fmt: skip
        return self.linear(q, k, v, rows=hidden, cols=hidden, bias=bias, sensitive=True), None

    def as_linear(self, weight: torch.Tensor, bias: torch.Tensor | None = None, sensitive: bool = False,
                  seven_bit: bool = False, gelu_input: bool = False) -> ops.Linear:  # fmt: skip
        """weight [out, in] (and bias), read from this checkpoint and perhaps reordered, as a linear layer in this
        reader's precision, as `linear` makes it."""
        if self.int8 and sensitive:
            dtype = torch.bfloat16 if ops.fast_bfloat16(self.device) else torch.float32
            return ops.Linear(weight.to(dtype), None if bias is None else bias.to(dtype))
        if self.int8:
            return ops.Linear(weight, bias, int8=True, seven_bit=seven_bit, asymmetric_input=gelu_input)
        return ops.Linear(weight.to(self.device, self.weight_dtype), bias, float32_activations=self.dtype != self.weight_dtype)


def build_bert(config: dict, weights, device, dtype, int8: bool = False, float_ffn_up: bool = False) -> Encoder:
    model_type = config.get("model_type", "bert")
    offset = config.get("pad_token_id", 1) + 1 if model_type in ("roberta", "xlm-roberta", "camembert") else 0
    cfg = EncoderConfig(
        hidden_size=config["hidden_size"],
        num_layers=config["num_hidden_layers"],
        num_heads=config["num_attention_heads"],
        layer_norm_eps=config.get("layer_norm_eps", 1e-12),
        activation=config.get("hidden_act", "gelu"),
        position_offset=offset,
    )
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"unsupported position_embedding_type {config['position_embedding_type']!r}; supported: absolute")
    w = WeightReader(weights, "embeddings.word_embeddings.weight", device, dtype, int8, float_ffn_up)
    H, inner = cfg.hidden_size, config.get("intermediate_size")
    layers = []
    for i in range(cfg.num_layers):
        p = f"encoder.layer.{i}."
        attn = p + "attention.self."
        qkv, value = w.attention_inputs(attn + "query", attn + "key", attn + "value", H)
        layers.append(
            EncoderLayer(
                qkv=qkv,
                value=value,
                out=w.linear(p + "attention.output.dense", rows=H, cols=H, seven_bit=True),
                attn_norm_weight=w(p + "attention.output.LayerNorm.weight", (H,)),
                attn_norm_bias=w(p + "attention.output.LayerNorm.bias", (H,)),
                up=w.linear(p + "intermediate.dense", rows=inner, cols=H, seven_bit=True, sensitive=w.float_ffn_up),
                down=w.linear(p + "output.dense", rows=H, cols=inner, gelu_input=True),
                ffn_norm_weight=w(p + "output.LayerNorm.weight", (H,)),
                ffn_norm_bias=w(p + "output.LayerNorm.bias", (H,)),
            )
        )
    token_type, token_type_delta = token_type_rows(w, "embeddings.token_type_embeddings.weight", config.get("type_vocab_size"), H)
    return Encoder(
        cfg,
        word=w.table("embeddings.word_embeddings.weight", (config.get("vocab_size"), H)),
        position=w.table("embeddings.position_embeddings.weight", (config.get("max_position_embeddings"), H)),
        token_type=token_type,
        norm_weight=w("embeddings.LayerNorm.weight", (H,)),
        norm_bias=w("embeddings.LayerNorm.bias", (H,)),
        layers=layers,
        token_type_delta=token_type_delta,
    )
