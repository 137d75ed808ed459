"""Triton GPU kernels, installed as fastembed_rt.kernels (one op per file, each with its reference twin
in fastembed_rt.ops.reference). They run on CUDA devices, and on the CPU under TRITON_INTERPRET=1 for tests.

    attention.py    varlen fused attention (flash-attn's varlen conventions), causal, GQA, ALiBi
    pooling.py      pooling of packed states + Matryoshka truncation + L2 norm, in one kernel
    norms.py        residual-add + LayerNorm / RMSNorm
    activations.py  bias + GELU (erf, tanh)
    similarity.py   int8 dot and binary Hamming top-k, no score matrix in memory
    splade.py       SPLADE vocabulary projection + activation + pooling, no [tokens, vocab] logits in memory
    maxsim.py       late-interaction MaxSim of packed query and document tokens, no similarity matrix in memory
"""

if __name__ == "kernels":
    # Python started in the repository root found this folder as the top-level package `kernels`, a name
    # PyPI's `kernels` owns (transformers imports it). Hand the name over to that package.
    from ._top_level import hand_over_to_installed_kernels

    hand_over_to_installed_kernels()
else:
    from .activations import gelu
    from .attention import attention, varlen_attention
    from .launch import interpreting
    from .maxsim import maxsim
    from .norms import layer_norm, rms_norm
    from .pooling import pool
    from .similarity import hamming_topk, int8_topk
    from .splade import splade_pool

    __all__ = ["attention", "gelu", "hamming_topk", "int8_topk", "interpreting", "layer_norm", "maxsim", "pool",
               "rms_norm", "splade_pool", "varlen_attention"]
