"""A sparse model's corpus job: parquet shards of indices list<int32> and values list<float32>, equal to encode(),
with the manifest, resume and verify guarantees of dense jobs; options that do not apply are refused."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import fastembed_rt
from fastembed_rt.corpus import JobOptions, embed_corpus, read_shard, verify_output
from fastembed_rt.testing import synthetic_texts
from models.test_sparse_encoder import VOCAB, masked_lm

TEXTS = synthetic_texts(70, 0, 30, VOCAB, seed=8)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    source, _ = masked_lm(tmp_path_factory.mktemp("splade") / "mlm", seed=12)
    return fastembed_rt.load(source)


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(TEXTS)))
    return path


def read_all(out, manifest):
    ids, parts = [], []
    for shard in manifest["shards"]:
        shard_ids, vectors = read_shard(out, shard, manifest["dimension"])
        ids += shard_ids
        parts.append(vectors)
    return ids, fastembed_rt.SparseEmbeddings.concatenate(parts)


def test_sparse_shards_equal_encode_and_verify(model, corpus, tmp_path):
    out = tmp_path / "out"
    manifest = embed_corpus(model, corpus, out, JobOptions(shard_size=16, chunk_size=8), progress=False)
    assert manifest["complete"] and manifest["rows"] == 70 and manifest["sparse"] and manifest["dimension"] == VOCAB
    table = pq.read_table(out / manifest["shards"][0]["files"][0]["file"])
    assert table.schema.field("indices").type == pa.list_(pa.int32()) and table.schema.field("values").type == pa.list_(pa.float32())
    ids, vectors = read_all(out, manifest)
    assert ids == [f"d{i}" for i in range(70)]
    want = model.encode(TEXTS)
    assert np.array_equal(vectors.indices, want.indices) and np.array_equal(vectors.indptr, want.indptr)
    np.testing.assert_allclose(vectors.values, want.values, rtol=1e-6)
    assert verify_output(out) == []
    # a damaged shard is named
    shard = out / manifest["shards"][1]["files"][0]["file"]
    shard.write_bytes(shard.read_bytes()[:-10])
    assert any("checksum mismatch" in p for p in verify_output(out))


def test_interrupted_sparse_job_resumes_to_the_same_output(model, corpus, tmp_path):
    options = JobOptions(shard_size=16, chunk_size=8)
    whole = embed_corpus(model, corpus, tmp_path / "whole", options, progress=False)
    out = tmp_path / "resumed"
    manifest = embed_corpus(model, corpus, out, options, progress=False)
    # as if the job had stopped after two shards
    manifest.update(complete=False, shards=manifest["shards"][:2])
    (out / "manifest.json").write_text(json.dumps(manifest))
    resumed = embed_corpus(model, corpus, out, options, progress=False)
    assert resumed["complete"] and resumed["rows"] == 70
    a, b = read_all(tmp_path / "whole", whole)[1], read_all(out, resumed)[1]
    assert np.array_equal(a.indices, b.indices) and np.array_equal(a.values, b.values)
    assert verify_output(out) == []


@pytest.mark.parametrize("options, message", [
    (JobOptions(precision="int8"), "precision 'int8' does not apply"),
    (JobOptions(format="npy"), "format 'npy' does not apply"),
    (JobOptions(truncate_dim=8), "truncate_dim and normalize do not apply"),
])  # fmt: skip
def test_options_that_do_not_apply_are_refused(model, corpus, tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        embed_corpus(model, corpus, tmp_path / "out", options, progress=False)


def test_eval_runs_beir_retrieval_with_a_sparse_model_and_its_hybrid(model, tmp_path):
    """A small BEIR folder where each query's relevant document shares its words: the sparse model finds it."""
    from fastembed_rt import evaluation

    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    docs = {f"d{i}": t for i, t in enumerate(TEXTS) if t}
    (beir / "corpus.jsonl").write_text("".join(json.dumps({"_id": d, "title": "", "text": t}) + "\n" for d, t in docs.items()))
    queries = {f"q{i}": " ".join(docs[f"d{i}"].split()[:4]) for i in range(1, 21) if f"d{i}" in docs}
    (beir / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in queries.items()))
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\td{q[1:]}\t1\n" for q in queries))
    corpus, qs, qrels = evaluation.read_beir(beir)
    sparse_only = evaluation.evaluate_sparse_retrieval(model, corpus, qs, qrels)
    assert sparse_only["queries"] == len(queries) and set(sparse_only["results"]) == {"sparse"}
    assert sparse_only["results"]["sparse"]["recall@100"] == 100.0
    hybrid = evaluation.evaluate_sparse_retrieval(model, corpus, qs, qrels, dense_model=fastembed_rt.load("all-MiniLM-L6-v2"))
    assert set(hybrid["results"]) == {"sparse", "dense", "hybrid (rrf)"}
    assert hybrid["results"]["sparse"] == sparse_only["results"]["sparse"]
    # the CLI: the same figures, and the hybrid
    result = run_cli("eval", beir, "--model", model.spec.path, "--hybrid-with", "all-MiniLM-L6-v2", "--hybrid-method", "weighted")
    assert "sparse" in result.stdout and "hybrid (weighted)" in result.stdout and "100.00" in result.stdout


def test_cli_embed_writes_sparse_shards_and_verify_checks_them(model, corpus, tmp_path):
    result = run_cli("embed", corpus, "--model", model.spec.path, "--out", tmp_path / "out", "--quiet", "--shard-size", "32", "--chunk-size", "16")
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["sparse"] and manifest["rows"] == 70 and len(manifest["shards"]) == 3, result.stdout
    assert run_cli("verify", tmp_path / "out").stdout.strip().endswith("verified: output matches its manifest")
    refused = run_cli("embed", corpus, "--model", model.spec.path, "--out", tmp_path / "one.npy", check=False)
    assert refused.returncode != 0 and "sparse parquet shards" in refused.stderr
    refused = run_cli("embed", corpus, "--model", model.spec.path, "--out", tmp_path / "ray", "--engine", "ray", check=False)
    assert refused.returncode != 0 and "drop --engine ray" in refused.stderr


def run_cli(*args, check=True):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "fastembed_rt.cli", *map(str, args)], capture_output=True, text=True, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr
    return result
