"""Shared by the kernel tests: the device they run on, packed batches, and the error-bound rule."""

import pytest
import torch

GPU = torch.cuda.is_available()
DEVICE = torch.device("cuda" if GPU else "cpu")
# The interpreter has no bfloat16 arithmetic: bfloat16 is tested on the GPU only.
DTYPES = [torch.float32, torch.float16] + ([torch.bfloat16] if GPU else [])
needs_gpu = pytest.mark.skipif(not GPU, reason="needs a CUDA GPU (none on this machine)")


def cu_seqlens(lengths) -> torch.Tensor:
    cu = torch.zeros(len(lengths) + 1, dtype=torch.int32)
    cu[1:] = torch.tensor(lengths, dtype=torch.int32).cumsum(0)
    return cu.to(DEVICE)


def assert_within_twice_torch(ours: torch.Tensor, torch_own: torch.Tensor, exact: torch.Tensor, what: str = "") -> None:
    """Our error against the float64 oracle is at most twice torch's own in the same precision (plus one
    unit in the last place of the output dtype, so that a torch error of exactly 0 is no trap)."""
    ulp = torch.finfo(ours.dtype).eps * max(1.0, exact.abs().max().item()) if ours.numel() else 0.0
    ours_err = (ours.double() - exact).abs().max().item() if ours.numel() else 0.0
    torch_err = (torch_own.double() - exact).abs().max().item() if ours.numel() else 0.0
    assert ours_err <= 2 * torch_err + ulp, f"{what}: error {ours_err:.3g} vs torch's {torch_err:.3g}"
