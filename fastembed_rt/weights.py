"""Model weights from disk without pickle: safetensors memory-mapped, or torch.load(weights_only=True)."""

from __future__ import annotations

import json
import mmap
import struct
import warnings
from pathlib import Path

import torch

_SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def shape_problem(name: str, tensor: torch.Tensor, expected: tuple) -> str | None:
    """What is wrong with a tensor whose shape is not `expected` (from config.json; None: any size), or None."""
    found = tuple(tensor.shape)
    if len(found) == len(expected) and all(e is None or e == f for e, f in zip(expected, found)):
        return None
    wanted = ", ".join("any" if e is None else str(e) for e in expected)
    return (f"tensor {name!r} has shape [{', '.join(map(str, found))}], but config.json makes it [{wanted}]: "
            "the config does not describe these weights")  # fmt: skip


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors file as zero-copy views of a read-only memory map."""
    with open(path, "rb") as f:
        size = Path(path).stat().st_size
        if size < 8:
            raise ValueError(f"{path}: too short to be a safetensors file ({size} bytes)")
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    (header_len,) = struct.unpack("<Q", mapped[:8])
    if header_len > size - 8:
        raise ValueError(f"{path}: header length {header_len} runs past the end of the file")
    try:
        header = json.loads(mapped[8 : 8 + header_len])
    except ValueError as e:
        raise ValueError(f"{path}: header is not valid JSON ({e})") from None
    data_start = 8 + header_len
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _SAFETENSORS_DTYPES.get(info.get("dtype"))
        if dtype is None:
            raise ValueError(f"{path}: tensor {name!r} has unsupported dtype {info.get('dtype')!r}")
        begin, end = info["data_offsets"]
        shape = info["shape"]
        count = 1
        for dim in shape:
            count *= dim
        itemsize = torch.empty((), dtype=dtype).element_size()
        if end - begin != count * itemsize or data_start + end > size:
            raise ValueError(f"{path}: tensor {name!r} has offsets {begin}..{end} inconsistent with shape {shape}")
        with warnings.catch_warnings():
            # The map is read-only; the runtime never writes to weights in place.
            warnings.simplefilter("ignore", UserWarning)
            flat = torch.frombuffer(mapped, dtype=dtype, count=count, offset=data_start + begin) if count else torch.empty(0, dtype=dtype)
        tensors[name] = flat.reshape(shape)
    return tensors


def load_weights(directory: Path) -> dict[str, torch.Tensor]:
    """All weights of a model directory: model.safetensors, its sharded index, or pytorch_model.bin; norms saved
    under the old names (`LayerNorm.gamma` / `.beta`, as TensorFlow-era BERT checkpoints still ship) renamed to
    `.weight` / `.bias`, as transformers renames them."""
    return _with_current_norm_names(_read_weights(directory))


_OLD_NORM_NAMES = {"gamma": "weight", "beta": "bias"}


def _with_current_norm_names(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`tensors` with every norm's `gamma` / `beta` named `weight` / `bias`."""
    renamed = {}
    for name, tensor in tensors.items():
        owner, _, leaf = name.rpartition(".")
        if leaf in _OLD_NORM_NAMES and "norm" in owner.rpartition(".")[2].lower():
            name = f"{owner}.{_OLD_NORM_NAMES[leaf]}"
        renamed[name] = tensor
    return renamed


def _read_weights(directory: Path) -> dict[str, torch.Tensor]:
    single = directory / "model.safetensors"
    if single.is_file():
        return read_safetensors(single)
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        tensors = {}
        for shard in sorted(set(weight_map.values())):
            shard_path = directory / shard
            if not shard_path.is_file():
                raise FileNotFoundError(f"{shard_path} (listed in {index.name}) is missing")
            tensors.update(read_safetensors(shard_path))
        return tensors
    pickle_free = directory / "pytorch_model.bin"
    if pickle_free.is_file():
        return torch.load(pickle_free, map_location="cpu", weights_only=True, mmap=True)
    raise FileNotFoundError(
        f"no weights in {directory}: expected model.safetensors, model.safetensors.index.json or pytorch_model.bin"
    )
