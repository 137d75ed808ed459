"""Linear layers prepared once for their precision, so that each call is a single fast GEMM.

- float32 on the CPU: torch's MKL sgemm (F.linear), then our C++ bias + GELU. Best of 3 interleaved runs of
  MiniLM on 800 real texts in one process (Ice Lake Xeon, torch 2.13): 1.34x the oneDNN path below at AVX-512,
  1.73x under FASTEMBED_RT_ISA=avx2.
- bfloat16 on the CPU with AVX512_BF16: oneDNN with the weight reordered once into its blocked layout and the
  bias and GELU fused as post-ops (torch's own oneDNN ops). It also runs float32 (`use_implementation`).
- int8: weights quantized per output channel at load; activations per token at run time (ops.cpu).
- bfloat16 without oneDNN bfloat16 GEMMs, int8 without a fast torch._int_mm: our panel kernels (_C.PackedLinear),
  whose packed weights are then the layer's only copy (bfloat16: half a float32 layer's memory; int8: a quarter).
- the reference: F.linear, or exact integer arithmetic for int8.
"""

from __future__ import annotations

import torch

from .. import _C, isa
from . import reference
from .dispatch import reference_only, select


def mkl_on_cpu(device: torch.device, dtype: torch.dtype) -> bool:
    return device.type == "cpu" and dtype == torch.float32 and torch.backends.mkl.is_available()


def float32_gemm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, activation=None) -> torch.Tensor:
    """activation(x @ weight.T + bias) on torch's GEMM (MKL sgemm on the CPU), the activation by our gelu op."""
    if activation is None:
        return torch.nn.functional.linear(x, weight, bias)
    out = torch.nn.functional.linear(x, weight)
    return select("gelu", x.device, x.dtype).fn(out, bias, reference.GELU_APPROXIMATE[activation])


def mkl_linear(layer: Linear, x: torch.Tensor, activation=None) -> torch.Tensor:
    return float32_gemm(x, layer.weight, layer.bias, activation)


def onednn_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def onednn_on_cpu(device: torch.device, dtype: torch.dtype) -> bool:
    """float32 always; bfloat16 only where oneDNN has bfloat16 GEMMs (AVX-512: it refuses AVX2-only CPUs)."""
    return device.type == "cpu" and (dtype == torch.float32 or (dtype == torch.bfloat16 and isa.onednn_bfloat16()))


_ONEDNN_POST_OPS = {None: ("none", None), "gelu": ("gelu", "none"), "gelu_tanh": ("gelu", "tanh")}


# oneDNN compiles kernels for every new batch size and keeps them: with the token counts of real batches all
# different, that grew a 200,000-line job by 1 GB (~0.5 MB per new size, far more for sizes that are not a
# multiple of its 64-row blocks). So it only ever sees ROW_BLOCK rows, or fewer padded to one of 22 sizes.
# ROW_BLOCK is a whole CPU batch (4,096 tokens), taken in one call: in 1,024-row blocks, whose outputs were then
# concatenated (0.7 ms of 2.3 ms for 4,096 x 384 -> 1,536), the MiniLM cross-encoder reranked at 0.83x (int8) and
# 0.87x (bfloat16) the pairs/s on the model-167 Xeon (AMX). Batch sizes above 1,024 rows go up in steps of 1,024:
# in steps of 256, every size from 1 to 4,096 rows through MiniLM's four layer shapes grew the process by 253 MB,
# in these steps by 153 MB (1,024-row blocks: 97 MB).
ROW_BLOCK = 4096


def padded_rows(rows: int) -> int:
    """The rows oneDNN is given for a remainder of `rows` (< ROW_BLOCK): a multiple of 16 up to 64 (small
    batches stay cheap), of 64 up to 1,024, else of 1,024."""
    step = 16 if rows <= 64 else 64 if rows <= 1024 else 1024
    return -(-rows // step) * step


def onednn_linear(layer: Linear, x: torch.Tensor, activation=None) -> torch.Tensor:
    if layer.packed is None:
        layer.packed = torch.ops.mkldnn._reorder_linear_weight(layer.weight, ROW_BLOCK)
    attr, algorithm = _ONEDNN_POST_OPS[activation]

    def gemm(rows: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(rows, layer.packed, layer.bias, attr, [], algorithm)

    pieces = []
    for start in range(0, x.shape[0], ROW_BLOCK):
        block = x[start : start + ROW_BLOCK]
        if block.shape[0] == ROW_BLOCK:
            pieces.append(gemm(block))
        else:
            padded = torch.cat([block, block.new_zeros(padded_rows(block.shape[0]) - block.shape[0], block.shape[1])])
            pieces.append(gemm(padded)[: block.shape[0]])
    if not pieces:
        return gemm(x)
    return pieces[0] if len(pieces) == 1 else torch.cat(pieces)


def reference_linear(layer: Linear, x: torch.Tensor, activation=None) -> torch.Tensor:
    """bfloat16 weights given float32 x (float32_activations) are widened, as the panel kernels do."""
    bias = None if layer.bias is None else layer.bias.to(x.dtype)
    return reference.linear(x, layer.weight.to(x.dtype), bias, activation)


# The int8 weight range of the AVX2 panel kernels' fast path (csrc/cpu/small_gemm.h: kNarrowInt8).
NARROW_INT8 = 63


class Linear:
    """activation(x @ weight.T + bias) for x [rows, in]; activation None, "gelu" or "gelu_tanh".

    int8=True keeps only int8 weights (per-output-channel scales) and computes in int8 with per-token
    activation scales, returning float32. Where int8 runs on the AVX2 panel kernels (no VNNI), vpmaddubsw takes
    4 k per instruction against vpmaddwd's 2, if its int16 pair sums cannot saturate, which one of two choices
    ensures (csrc/cpu/small_gemm.h):
    - seven_bit=True: 7-bit weights (codes in [-63, 63], as ONNX Runtime's reduce_range) against 8-bit symmetric
      activation codes; for layers whose input has no large outliers (a LayerNorm output, attention's context).
      With VNNI the weights stay 8-bit (vpdpbusd and AMX take them at the same speed).
    - asymmetric_input=True: 8-bit weights against 7-bit activation codes over each row's [min, max] with a zero
      point; for a GELU output, almost all >= 0, where those are as fine as 8-bit symmetric codes.
    MiniLM on 2,000 real texts, min cosine to float32: 0.9932 with 7-bit output and up projections, 0.9894 with a
    7-bit down projection too (its input is GELU's output).
    Otherwise the weight's own dtype is the compute dtype, x is cast to it if needed, and the result is in that
    dtype.
    panels_only=True keeps, on a CPU with the panel kernels, only their packed copy whatever the precision: for a
    layer that runs through them alone (the vocabulary projection of ops.splade_pool).
    float32_activations=True: a bfloat16 layer on the panel kernels (ops.widened_bfloat16) takes float32 x as it is
    and returns float32; its weights are widened to float32 there in any case. Elsewhere (native bfloat16) x is
    cast to bfloat16 as usual.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None, int8: bool = False, seven_bit: bool = False,
                 asymmetric_input: bool = False, panels_only: bool = False, float32_activations: bool = False):  # fmt: skip
        if weight.dim() != 2:
            raise ValueError(f"linear weight must be [out, in], got shape {tuple(weight.shape)}")
        if bias is not None and bias.shape != (weight.shape[0],):
            raise ValueError(f"linear bias must have {weight.shape[0]} values, got shape {tuple(bias.shape)}")
        self.int8 = int8
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]
        self.device = weight.device
        self.packed = None  # oneDNN's reordered weight, made at the first oneDNN call
        self._panels = None  # (ISA, _C.PackedLinear): see panels()
        self._asymmetric_request = int8 and asymmetric_input
        self.dtype = torch.float32 if int8 else weight.dtype
        on_panels = self._runs_on_panels() or (panels_only and not reference_only() and self.device.type == "cpu"
                                                and isa.active() != "scalar")  # fmt: skip
        if int8:
            # 7-bit only where the AVX2 kernels run int8 (no VNNI): VNNI and AMX take 8-bit weights at the same speed
            levels = NARROW_INT8 if on_panels and seven_bit and not isa.has("avx512_vnni") else 127
            self._stored, self.weight_scales = reference.quantize_rows(weight.float().contiguous(), levels)
            self.bias = None if bias is None else bias.float().contiguous()
        else:
            self._stored, self.bias = weight.contiguous(), bias
        self.float32_activations = float32_activations and on_panels and self.dtype == torch.bfloat16
        if on_panels:
            self.panels()
            self._stored = None  # the panels are now the only copy of the weights

    def _runs_on_panels(self) -> bool:
        op, dtype = ("int8_linear", torch.float32) if self.int8 else ("linear", self.dtype)
        return select(op, self.device, dtype).name == "packed"

    def _weights(self) -> torch.Tensor:
        """The [out, in] weights as stored: float, or int8 codes; unpacked from the panels if they are the only copy."""
        if self._stored is not None:
            return self._stored
        unpacked = torch.from_numpy(self._panels[1].unpack())
        return unpacked.view(torch.bfloat16) if self.dtype == torch.bfloat16 else unpacked

    @property
    def weight(self) -> torch.Tensor | None:
        return None if self.int8 else self._weights()

    @property
    def qweight(self) -> torch.Tensor | None:
        return self._weights() if self.int8 else None

    def panels(self) -> _C.PackedLinear:
        """This layer packed for the panel kernels of the active ISA, once per ISA; the fused encoder shares it."""
        if self._panels is None or self._panels[0] != isa.active():
            self._panels = (isa.active(), _C.PackedLinear(self.arrays(), asymmetric_input=self._asymmetric_request))
        return self._panels[1]

    @property
    def asymmetric_input(self) -> bool:
        """Whether this int8 layer quantizes its input to asymmetric 7-bit codes: where its panels do (AVX2, 8-bit
        weights, asked for). Every implementation of the int8 ops and the reference twin follow it."""
        return self._panels is not None and self._panels[1].asymmetric_input

    def nbytes(self) -> int:
        """The memory this layer's weights take: the stored copy and every packed one."""
        tensors = [t for t in (self._stored, self.bias, self.packed, self.weight_scales if self.int8 else None) if t is not None]
        return sum(t.numel() * t.element_size() for t in tensors) + (self._panels[1].nbytes if self._panels else 0)

    def arrays(self):
        """(weight, scales, bias) as numpy for C++ consumers: weight float32, bfloat16 bits (int16) or int8
        codes [out, in]; scales [out] float32 for int8, else None; bias float32 or None."""
        weight = self._weights().detach()
        weight = weight.view(torch.int16) if weight.dtype == torch.bfloat16 else weight
        scales = self.weight_scales.numpy() if self.int8 else None
        bias = None if self.bias is None else self.bias.detach().float().contiguous().numpy()
        return weight.contiguous().numpy(), scales, bias

    @property
    def activation_dtype(self) -> torch.dtype:
        """The dtype of this layer's results in its model: float32 for bfloat16 weights with float32_activations,
        else self.dtype (float32 for int8 weights)."""
        return torch.float32 if self.float32_activations else self.dtype

    @property
    def kind(self) -> str:
        return "int8" if self.int8 else str(self.dtype).removeprefix("torch.")

    def __call__(self, x: torch.Tensor, activation: str | None = None) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"linear expects {self.in_features} input features, got {x.shape[-1]}")
        if self.int8:
            fn = select("int8_linear", x.device, torch.float32).fn
            # bfloat16 inputs (from a bfloat16 QKV projection's attention) are quantized as they are
            return fn(x if x.dtype in (torch.float32, torch.bfloat16) else x.float(), self, activation)
        if x.dtype != self.dtype and not (self.float32_activations and x.dtype == torch.float32):
            x = x.to(self.dtype)
        return select("linear", x.device, self.dtype).fn(self, x, activation)
