"""Same numbers as sentence-transformers on the real all-MiniLM-L6-v2 and real texts."""

import dataclasses

import numpy as np
import pytest
from scipy.stats import spearmanr

import fastembed_rt
from fastembed_rt.engine import Embedder
from fastembed_rt.loading import load_model_spec
from fastembed_rt.ops import POOL_MODES
from fastembed_rt.pooling import PoolingConfig
from fastembed_rt.testing import row_cosines

# sentence-transformers' batches (it sorts texts by length): 16 pad less than 64 (500 texts: 16.1-16.8 s against
# 19.1-22.4 s) and give the same vectors to 1.3e-7.
ST_BATCH = 16


@pytest.fixture(scope="module")
def st_transformer(minilm_path):
    from sentence_transformers import models

    return models.Transformer(str(minilm_path), max_seq_length=256)


def st_model(transformer, modes, include_prompt=True):
    from sentence_transformers import SentenceTransformer, models

    pooling = models.Pooling(transformer.get_embedding_dimension(), pooling_mode=modes, include_prompt=include_prompt)
    return SentenceTransformer(modules=[transformer, pooling], device="cpu")


def ours_with_pooling(minilm_path, modes, include_prompt=True):
    spec = load_model_spec(minilm_path)
    return Embedder(dataclasses.replace(spec, pooling=PoolingConfig(modes, include_prompt), normalize=False), "cpu")


def per_mode_min_cosine(got, want, modes):
    """Several modes concatenate (as in sentence-transformers); compare each mode's slice on its own."""
    dim = got.shape[1] // len(modes)
    return {m: row_cosines(got[:, i * dim : (i + 1) * dim], want[:, i * dim : (i + 1) * dim]).min() for i, m in enumerate(modes)}


def test_texts_cover_short_and_truncated(minilm, real_texts):
    lengths = minilm.count_tokens(real_texts)
    assert len(real_texts) >= 500
    assert min(lengths) < 20 and sum(n == 256 for n in lengths) >= 20


def test_every_pooling_mode_matches(minilm_path, st_transformer, real_texts):
    want = st_model(st_transformer, POOL_MODES).encode(real_texts, batch_size=ST_BATCH)
    got = ours_with_pooling(minilm_path, POOL_MODES).encode(real_texts)
    assert got.shape == want.shape == (len(real_texts), 384 * len(POOL_MODES))
    worst = per_mode_min_cosine(got, want, POOL_MODES)
    assert min(worst.values()) >= 0.99999, worst


def test_default_model_matches_normalized(minilm, minilm_path, real_texts):
    from sentence_transformers import SentenceTransformer

    want = SentenceTransformer(str(minilm_path), device="cpu").encode(real_texts[:200], batch_size=ST_BATCH)
    got = minilm.encode(real_texts[:200])
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)
    assert row_cosines(got, want).min() >= 0.99999
    np.testing.assert_allclose(got, want, atol=2e-5)


def test_prompt_excluded_from_pooling(minilm_path, st_transformer, real_texts):
    modes = ("mean", "cls", "weightedmean", "max")
    prompt = "query: represent this sentence for searching relevant passages: "
    texts = real_texts[:120]
    want = st_model(st_transformer, modes, include_prompt=False).encode(texts, prompt=prompt, batch_size=ST_BATCH)
    got = ours_with_pooling(minilm_path, modes, include_prompt=False).encode(texts, prompt=prompt)
    worst = per_mode_min_cosine(got, want, modes)
    assert min(worst.values()) >= 0.99999, worst
    with_prompt = ours_with_pooling(minilm_path, modes).encode(texts, prompt=prompt)
    assert max(per_mode_min_cosine(got, with_prompt, modes).values()) < 0.9999  # the prompt really was left out


@pytest.mark.parametrize("include_prompt", [True, False])
def test_cls_pooling_alone_runs_the_last_layer_on_those_rows(minilm_path, st_transformer, real_texts, include_prompt,
                                                             monkeypatch):  # fmt: skip
    """CLS pooling alone reads one row per text (the first after the prompt where that is left out), so the last
    layer computes that row only: the vectors are still sentence-transformers'."""
    prompt, texts = "query: represent this sentence for searching relevant passages: ", real_texts[:150]
    want = st_model(st_transformer, ("cls",), include_prompt).encode(texts, prompt=prompt, batch_size=ST_BATCH)
    ours = ours_with_pooling(minilm_path, ("cls",), include_prompt)
    model_class, seen = type(ours.model), []
    forward = model_class.forward
    monkeypatch.setattr(model_class, "forward", lambda self, *a, **kw: seen.append(kw.get("rows")) or forward(self, *a, **kw))
    got = ours.encode(texts, prompt=prompt)
    assert seen and all(rows is not None for rows in seen)
    assert row_cosines(got, want).min() >= 0.99999


def test_matryoshka_truncation_renormalizes(minilm, minilm_path, real_texts):
    from sentence_transformers import SentenceTransformer

    texts = real_texts[:100]
    want = SentenceTransformer(str(minilm_path), device="cpu", truncate_dim=128).encode(
        texts, normalize_embeddings=True, batch_size=ST_BATCH
    )
    got = minilm.encode(texts, truncate_dim=128)
    assert got.shape == (100, 128)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)
    assert row_cosines(got, want).min() >= 0.99999


def test_stsb_dev_spearman(minilm, data_dir):
    rows = [line.rstrip("\n").split("\t") for line in open(data_dir / "stsb" / "dev.tsv", encoding="utf-8")][1:]
    gold = np.array([float(r[0]) for r in rows])
    vectors = minilm.encode([r[1] for r in rows] + [r[2] for r in rows])
    a, b = vectors[: len(rows)], vectors[len(rows) :]
    spearman = 100 * spearmanr(gold, row_cosines(a, b)).statistic
    assert len(rows) == 1500
    assert abs(spearman - 86.72) <= 0.01, spearman


def test_bundled_name_loads_the_packaged_model(minilm_path):
    model = fastembed_rt.load("all-MiniLM-L6-v2")
    assert model.spec.path == minilm_path and model.dimension == 384 and model.spec.normalize
