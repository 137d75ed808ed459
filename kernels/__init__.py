"""Triton GPU kernels, installed as fastembed_rt.kernels (one op per file, each with its reference twin
in fastembed_rt.ops.reference). They run on CUDA devices, and on the CPU under TRITON_INTERPRET=1 for tests."""
