"""TEI's /embed_sparse on a real server holding a SPLADE model beside a dense embedding model: the same weights
as the Python API, truncation and prompts, the errors of the other routes, /info and metrics."""

import numpy as np
import pytest

import fastembed_rt
from fastembed_rt import TruncationWarning
from fastembed_rt.server.process import ServerProcess
from fastembed_rt.testing import synthetic_texts
from models.test_sparse_encoder import VOCAB, masked_lm, sentence_transformers_splade

from .conftest import get, metric, post

TEXTS = synthetic_texts(10, 1, 50, VOCAB, seed=2)


@pytest.fixture(scope="module")
def splade_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("splade")
    source, _ = masked_lm(root / "mlm", seed=3)
    sentence_transformers_splade(source, root / "st")
    return root / "st"


@pytest.fixture(scope="module")
def server(splade_dir, minilm_path):
    with ServerProcess(["--model", str(minilm_path), "--model", str(splade_dir), "--max-client-batch-size", "8"]) as process:
        yield process


def test_embed_sparse_matches_the_api(server, splade_dir):
    status, body, _ = post(server.url, "/embed_sparse", {"inputs": TEXTS[:8]})
    assert status == 200, body
    want = fastembed_rt.load(splade_dir).encode(TEXTS[:8])
    for row, (idx, val) in zip(body, want):
        assert [e["index"] for e in row] == idx.tolist()
        np.testing.assert_allclose([e["value"] for e in row], val, rtol=1e-5)
    status, one, _ = post(server.url, "/embed_sparse", {"inputs": TEXTS[0], "model": "st"})
    assert status == 200 and [e["index"] for e in one[0]] == [e["index"] for e in body[0]]
    np.testing.assert_allclose([e["value"] for e in one[0]], [e["value"] for e in body[0]], rtol=1e-5)


def test_embed_sparse_limits_and_errors(server, minilm_path):
    long_text = " ".join(["w5"] * 200)  # past the 64-token limit
    status, body, _ = post(server.url, "/embed_sparse", {"inputs": [long_text], "truncate": False})
    assert status == 413 and "inputs[0]" in body["error"]
    status, body, _ = post(server.url, "/embed_sparse", {"inputs": [long_text], "truncate": True})
    assert status == 200 and body[0]
    status, body, _ = post(server.url, "/embed_sparse", {"inputs": TEXTS * 2})
    assert status == 413 and "more than the limit of 8" in body["error"]
    status, body, _ = post(server.url, "/embed_sparse", {"inputs": ["w1"], "dimensions": 5})
    assert status == 422 and "dimensions does not apply" in body["error"]
    status, body, _ = post(server.url, "/embed_sparse", {"inputs": ["w1"], "model": minilm_path.name})
    assert status == 422 and "this route needs a sparse model" in body["error"]
    status, body, _ = post(server.url, "/embed", {"inputs": ["w1"], "model": "st"})
    assert status == 422 and "is a sparse model" in body["error"]
    status, body, _ = post(server.url, "/embed_sparse", {"inputs": [[VOCAB + 5]]})  # a token id past the vocabulary
    assert status == 422


def test_info_and_metrics_list_the_sparse_model(server):
    status, info, _ = get(server.url, "/info")
    sparse = next(m for m in info["models"] if m["model_id"] == "st")
    assert sparse["kind"] == "sparse" and sparse["dimension"] == VOCAB and sparse["pooling"] == "max"
    before = metric(server.url, 'fastembed_rt_requests_total{route="/embed_sparse",status="200"}')
    post(server.url, "/embed_sparse", {"inputs": ["w3 w4"]})
    assert metric(server.url, 'fastembed_rt_requests_total{route="/embed_sparse",status="200"}') == before + 1


def test_inference_free_queries_take_the_query_route(tmp_path_factory, minilm_path):
    """task "query" on an inference-free model: its token lookup, as encode_query gives it; documents: the model."""
    import torch
    from sentence_transformers import SparseEncoder
    from sentence_transformers.base.modules import Router
    from sentence_transformers.sparse_encoder.modules import MLMTransformer, SparseStaticEmbedding, SpladePooling
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("inference_free")
    source, _ = masked_lm(root / "mlm", seed=4)
    static = SparseStaticEmbedding(tokenizer=AutoTokenizer.from_pretrained(source), weight=torch.rand(VOCAB) * 3, frozen=True)
    router = Router.for_query_document(query_modules=[static], document_modules=[MLMTransformer(str(source)), SpladePooling("max")])
    SparseEncoder(modules=[router], device="cpu").save(str(root / "st"))
    model = fastembed_rt.load(root / "st")
    with ServerProcess(["--model", str(root / "st")]) as process:
        for task, want in (("query", model.encode_query(TEXTS[:4])), ("document", model.encode_document(TEXTS[:4]))):
            status, body, _ = post(process.url, "/embed_sparse", {"inputs": TEXTS[:4], "task": task})
            assert status == 200, body
            for row, (idx, val) in zip(body, want):
                assert [e["index"] for e in row] == idx.tolist()
                np.testing.assert_allclose([e["value"] for e in row], val, rtol=1e-5)
        status, body, _ = post(process.url, "/embed_sparse", {"inputs": [[5, 6]], "task": "query"})
        assert status == 422 and "takes texts" in body["error"]
        status, body, _ = post(process.url, "/embed_sparse", {"inputs": ["w1"], "task": "passage"})
        assert status == 422 and "task must be" in body["error"]
        # The query route checks what the others check (before: a long query was cut without truncate, and an
        # unknown prompt_name or truncation_direction left were ignored).
        long_query = " ".join(["w1"] * 100) + " w2"
        status, body, _ = post(process.url, "/embed_sparse", {"inputs": ["w1", long_query], "task": "query"})
        assert status == 413 and body["error"].startswith("inputs[1] is longer than the query route's")
        status, body, _ = post(process.url, "/embed_sparse", {"inputs": [long_query], "task": "query", "truncate": True})
        with pytest.warns(TruncationWarning):
            want = model.encode_query([long_query])
        assert status == 200 and [e["index"] for e in body[0]] == want.row(0)[0].tolist()
        status, body, _ = post(process.url, "/embed_sparse", {"inputs": ["w1"], "task": "query", "prompt_name": "nope"})
        assert status == 422 and "nope" in body["error"]
        status, body, _ = post(process.url, "/embed_sparse", {"inputs": ["w1"], "task": "query", "truncation_direction": "left"})
        assert status == 422 and "truncation_direction left does not apply" in body["error"]


def test_the_models_max_active_dims_caps_served_vectors(tmp_path_factory):
    """A model saved with max_active_dims serves vectors as encode() gives them: at most that many terms each."""
    import json

    root = tmp_path_factory.mktemp("capped")
    source, _ = masked_lm(root / "mlm", seed=9)
    sentence_transformers_splade(source, root / "st")
    config = json.loads((root / "st" / "config_sentence_transformers.json").read_text())
    (root / "st" / "config_sentence_transformers.json").write_text(json.dumps({**config, "max_active_dims": 3}))
    want = fastembed_rt.load(root / "st").encode(TEXTS[:4])
    assert max(np.diff(want.indptr)) <= 3
    with ServerProcess(["--model", str(root / "st")]) as process:
        status, body, _ = post(process.url, "/embed_sparse", {"inputs": TEXTS[:4]})
    assert status == 200, body
    for row, (idx, val) in zip(body, want):
        assert [e["index"] for e in row] == idx.tolist()
        np.testing.assert_allclose([e["value"] for e in row], val, rtol=1e-5)
