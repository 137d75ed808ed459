"""Models by their Hugging Face Hub id, through huggingface_hub's own client and cache.

Only what fastembed_rt reads is downloaded: JSON configs (the model's, the tokenizer's, sentence-transformers'
and its module folders'), and safetensors weights; PyTorch .bin weights only where a folder has no
safetensors. Never code: a repository's .py files are not fetched, and fastembed_rt runs its own forward for
every architecture. The cache is huggingface_hub's (HF_HOME / HF_HUB_CACHE), shared with sentence-transformers
and transformers; HF_TOKEN opens gated models; HF_HUB_OFFLINE=1, or no network, resolves from the cache."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

# What loading reads (loading.py, weights.py, pooling.py), at the top and one folder down (sentence-transformers
# modules such as 1_Pooling/ or 2_Dense/).
READ_PATTERNS = ["*.json", "*/*.json", "*.safetensors", "*/*.safetensors"]
PICKLE_WEIGHTS = ["pytorch_model.bin", "*/pytorch_model.bin"]

_COMMIT = re.compile(r"[0-9a-f]{40}")
# owner/name as the Hub spells repository ids.
_REPO_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*$")


@dataclass(frozen=True)
class HubModel:
    repo_id: str
    commit: str  # the revision resolved to a commit
    path: Path  # the snapshot folder (or the local_dir)


def looks_like_repo_id(name: str) -> bool:
    return bool(_REPO_ID.match(name)) and ".." not in name and not name.endswith((".json", ".safetensors"))


def fetch(repo_id: str, revision: str | None = None, local_dir: str | Path | None = None) -> HubModel:
    """The model's files, downloaded once (or found in the cache), and the commit they are from."""
    import huggingface_hub
    from huggingface_hub import constants, errors

    def download(patterns: list[str], cached_only: bool = False) -> Path:
        return Path(huggingface_hub.snapshot_download(repo_id, revision=revision, allow_patterns=patterns,
                                                      local_dir=local_dir, library_name="fastembed_rt",
                                                      local_files_only=cached_only))  # fmt: skip

    try:
        path = _cached_commit(download, revision) if local_dir is None else None
        if path is None:
            path = download(READ_PATTERNS)
            if _missing_weights(path):  # an older repository with pickled weights only (read with weights_only=True)
                path = download(READ_PATTERNS + PICKLE_WEIGHTS)
    except errors.GatedRepoError:
        raise PermissionError(
            f"{repo_id} is a gated model: accept its terms on https://huggingface.co/{repo_id} and set HF_TOKEN "
            "(or run `huggingface-cli login`)"
        ) from None
    except errors.RevisionNotFoundError:
        raise FileNotFoundError(f"{repo_id} has no revision {revision!r} (a branch, tag or commit)") from None
    except errors.RepositoryNotFoundError:
        raise FileNotFoundError(
            f"no model {repo_id!r} on the Hugging Face Hub (or it is private: set HF_TOKEN), and no such local directory"
        ) from None
    except errors.LocalEntryNotFoundError:
        raise FileNotFoundError(
            f"model {repo_id!r}{'' if revision is None else f' at revision {revision!r}'} is no local directory, is not "
            f"in the Hugging Face cache ({constants.HF_HUB_CACHE}) and cannot be downloaded here (HF_HUB_OFFLINE=1 or "
            f"no network). On a machine with network run `fastembed-rt download {repo_id}` (add --local-dir DIR to "
            "copy it elsewhere), then bring the cache (or DIR) here"
        ) from None
    return HubModel(repo_id, _commit(path, revision), path)


def _cached_commit(download, revision: str | None) -> Path | None:
    """A commit's complete snapshot from the cache, or None. A commit never changes, so its cached files need no
    word from the Hub, whose client, with the network unreachable, retries for ~25 s before it reads the cache."""
    from huggingface_hub import errors

    if revision is None or not _COMMIT.fullmatch(revision):
        return None
    try:
        path = download(READ_PATTERNS + PICKLE_WEIGHTS, cached_only=True)
    except errors.LocalEntryNotFoundError:
        return None
    return path if _weight_folders(path) and not _missing_weights(path, also=("pytorch_model.bin",)) else None


def _missing_weights(path: Path, also=()) -> list[Path]:
    """Weight folders with no safetensors file (nor one of the `also` names)."""
    return [d for d in _weight_folders(path) if not any(d.glob("*.safetensors")) and not any((d / n).is_file() for n in also)]


def _weight_folders(path: Path) -> list[Path]:
    """Folders whose config says they hold weights: the model's, and sentence-transformers Dense modules'."""
    folders = [path] if (path / "config.json").is_file() else []
    modules = path / "modules.json"
    if modules.is_file():
        for module in json.loads(modules.read_text()):
            kind, folder = str(module.get("type", "")), path / str(module.get("path", ""))
            if kind.endswith("Transformer") and (folder / "config.json").is_file():
                folders = [folder]
            elif kind.endswith("Dense"):
                folders.append(folder)
    return [f for f in folders if not (f / "model.safetensors.index.json").is_file()]


def _commit(path: Path, revision: str | None) -> str:
    """The commit a snapshot folder holds: its name in the cache; for a local_dir, what huggingface_hub noted
    of each file it downloaded there (.cache/huggingface/download/*.metadata: the commit on the first line)."""
    if _COMMIT.fullmatch(path.name) and path.parent.name == "snapshots":
        return path.name
    for metadata in sorted((path / ".cache" / "huggingface" / "download").rglob("*.metadata")):
        first = metadata.read_text().split("\n", 1)[0].strip()
        if _COMMIT.fullmatch(first):
            return first
    return revision or "unknown"
