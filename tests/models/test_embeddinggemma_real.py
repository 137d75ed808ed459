"""The real EmbeddingGemma-300M (a Gemma3 decoder run bidirectionally: grouped-query attention with head_dim 256,
sliding-window layers of 512, q/k norms, GeGLU; mean pooling, two Dense layers, prompts) against
sentence-transformers on real texts, at every precision."""

import json

import numpy as np
import pytest

import fastembed_rt
from fastembed_rt.testing import row_cosines


@pytest.fixture(scope="module")
def texts(real_texts, data_dir) -> dict[str, list[str]]:
    """Short and long real texts, and two of ~1,500 tokens (ArguAna documents joined): past the 512-token window of
    the sliding layers, so that their windows hide keys."""
    rows = [json.loads(line)["text"] for line in open(data_dir / "arguana" / "corpus.jsonl", encoding="utf-8")][:16]
    return {"short": real_texts[:16], "long": [" ".join(rows[:8]), " ".join(rows[8:])]}


@pytest.fixture(scope="module")
def reference(embeddinggemma_path, texts) -> dict[str, np.ndarray]:
    """sentence-transformers' vectors: the short texts with the query and document prompts, the long ones one per
    batch (a batch pads every text to its longest)."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(embeddinggemma_path), device="cpu")
    return {"query": model.encode(texts["short"], prompt_name="query", batch_size=8),
            "document": model.encode(texts["short"], prompt_name="document", batch_size=8),
            "long": model.encode(texts["long"], prompt_name="document", batch_size=1)}  # fmt: skip


def test_embeddinggemma_matches_sentence_transformers(embeddinggemma_path, texts, reference):
    model = fastembed_rt.load(embeddinggemma_path)
    assert model.dimension == 768 and model.max_seq_length == 2048
    assert min(model.count_tokens(texts["long"])) > 1024
    got = {"query": model.encode(texts["short"], prompt_name="query"),
           "document": model.encode(texts["short"], prompt_name="document"),
           "long": model.encode(texts["long"], prompt_name="document")}  # fmt: skip
    for name, want in reference.items():
        assert row_cosines(got[name], want).min() >= 0.99999, name


@pytest.mark.parametrize("dtype, gate", [("bfloat16", 0.999), ("int8", 0.99)])
def test_embeddinggemma_quantized_precisions_keep_their_gates(embeddinggemma_path, texts, reference, dtype, gate):
    model = fastembed_rt.load(embeddinggemma_path, dtype=dtype)
    for name in ("short", "long"):
        got = model.encode(texts[name], prompt_name="document")
        assert row_cosines(got, reference["document" if name == "short" else "long"]).min() >= gate, name
