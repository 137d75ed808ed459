"""The C++ CPU kernels of fastembed_rt._C behind the op signatures of reference.py."""

from __future__ import annotations

import torch

from .. import _C
from .reference import POOL_MODES


def pool(hidden, cu_seqlens, mode, normalize=False, skip=None):
    hidden = hidden.detach().contiguous()
    cu = cu_seqlens.detach().to(torch.int32).contiguous().numpy()
    skip_np = None if skip is None else skip.detach().to(torch.int32).contiguous().numpy()
    out = _C.pool_packed(hidden.numpy(), cu, POOL_MODES.index(mode), normalize, skip_np, torch.get_num_threads())
    return torch.from_numpy(out)


def float32_on_cpu(device: torch.device, dtype: torch.dtype) -> bool:
    return device.type == "cpu" and dtype == torch.float32
