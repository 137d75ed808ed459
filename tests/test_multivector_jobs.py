"""A ColBERT model's corpus job: parquet shards of token vectors (vectors list<fixed_size_list<float32 | int8>>,
scales list<float32> for int8), equal to encode(), with the manifest, resume and verify guarantees of dense jobs;
`fastembed-rt embed` and `eval` with a ColBERT model."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import fastembed_rt
from fastembed_rt.corpus import JobOptions, embed_corpus, read_shard, verify_output
from fastembed_rt.multivector import MultiVectorEmbeddings
from models.test_colbert import DOCUMENTS, stanford_colbert
from test_sparse_jobs import run_cli

TEXTS = DOCUMENTS * 4


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return fastembed_rt.load(stanford_colbert(tmp_path_factory.mktemp("colbert") / "colbert", metadata={"doc_maxlen": 40}))


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(TEXTS)))
    return path


def read_all(out, manifest) -> tuple[list[str], MultiVectorEmbeddings]:
    ids, parts = [], []
    for shard in manifest["shards"]:
        shard_ids, vectors = read_shard(out, shard, manifest["dimension"])
        ids += shard_ids
        parts.append(vectors)
    return ids, MultiVectorEmbeddings.concatenate(parts)


@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_shards_equal_encode_and_verify(model, corpus, tmp_path, precision):
    out = tmp_path / "out"
    manifest = embed_corpus(model, corpus, out, JobOptions(precision=precision, shard_size=16, chunk_size=8), progress=False)
    assert manifest["complete"] and manifest["rows"] == len(TEXTS) and manifest["multivector"] and manifest["dimension"] == 12
    schema = pq.read_table(out / manifest["shards"][0]["files"][0]["file"]).schema
    token = pa.float32() if precision == "float32" else pa.int8()
    assert schema.field("vectors").type == pa.list_(pa.list_(token, 12))
    assert ("scales" in schema.names) == (precision == "int8")
    ids, got = read_all(out, manifest)
    assert ids == [f"d{i}" for i in range(len(TEXTS))]
    want = model.encode(TEXTS)
    np.testing.assert_array_equal(got.offsets, want.offsets)
    if precision == "float32":
        np.testing.assert_allclose(got.vectors, want.vectors, rtol=1e-6, atol=1e-7)
    else:
        quantized = want.quantize()
        assert np.abs(got.vectors.astype(int) - quantized.vectors).max() <= 1  # batches differ in float rounding only
        np.testing.assert_allclose(got.float_vectors(), want.vectors, atol=0.01)
    assert verify_output(out) == []
    shard = out / manifest["shards"][1]["files"][0]["file"]
    shard.write_bytes(shard.read_bytes()[:-10])
    assert any("checksum mismatch" in p for p in verify_output(out))


def test_interrupted_job_resumes_to_the_same_output(model, corpus, tmp_path):
    options = JobOptions(shard_size=16, chunk_size=8)
    whole = embed_corpus(model, corpus, tmp_path / "whole", options, progress=False)
    out = tmp_path / "resumed"
    manifest = embed_corpus(model, corpus, out, options, progress=False)
    manifest.update(complete=False, shards=manifest["shards"][:2])  # as if the job had stopped after two shards
    (out / "manifest.json").write_text(json.dumps(manifest))
    resumed = embed_corpus(model, corpus, out, options, progress=False)
    assert resumed["complete"] and resumed["rows"] == len(TEXTS)
    a, b = read_all(tmp_path / "whole", whole)[1], read_all(out, resumed)[1]
    np.testing.assert_array_equal(a.offsets, b.offsets)
    np.testing.assert_array_equal(a.vectors, b.vectors)
    assert verify_output(out) == []


@pytest.mark.parametrize("options, message", [
    (JobOptions(precision="binary"), "precision 'binary' does not apply"),
    (JobOptions(format="npy"), "format 'npy' does not apply"),
    (JobOptions(truncate_dim=8), "truncate_dim and normalize do not apply"),
    (JobOptions(normalize=False), "always normalized"),
])  # fmt: skip
def test_options_that_do_not_apply_are_refused(model, corpus, tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        embed_corpus(model, corpus, tmp_path / "out", options, progress=False)


def test_cli_embed_and_eval(model, corpus, tmp_path):
    out = tmp_path / "out"
    run_cli("embed", corpus, "--model", model.spec.path, "--out", out, "--quiet", "--shard-size", "32", "--chunk-size", "16",
            "--precision", "int8")  # fmt: skip
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["multivector"] and manifest["precision"] == "int8" and manifest["rows"] == len(TEXTS)
    assert run_cli("verify", out).stdout.strip().endswith("verified: output matches its manifest")
    refused = run_cli("embed", corpus, "--model", model.spec.path, "--out", tmp_path / "one.npy", check=False)
    assert refused.returncode != 0 and "multi-vector parquet shards" in refused.stderr
    refused = run_cli("embed", corpus, "--model", model.spec.path, "--out", tmp_path / "ray", "--engine", "ray", check=False)
    assert refused.returncode != 0 and "drop --engine ray" in refused.stderr
    # a BEIR folder where each query is words of its one relevant document
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    docs = {f"d{i}": t for i, t in enumerate(DOCUMENTS) if len(t.split()) > 8}
    (beir / "corpus.jsonl").write_text("".join(json.dumps({"_id": d, "title": "", "text": t}) + "\n" for d, t in docs.items()))
    (beir / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{d}", "text": " ".join(t.split()[:6])}) + "\n" for d, t in docs.items()))
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{d}\t{d}\t1\n" for d in docs))
    result = run_cli("eval", beir, "--model", model.spec.path)
    for name in ("maxsim float32", "maxsim int8", "muvera int8+maxsim"):
        assert name in result.stdout, result.stdout
    from fastembed_rt import evaluation

    corpus_texts, queries, qrels = evaluation.read_beir(beir)
    scores = evaluation.evaluate_multivector_retrieval(model, corpus_texts, queries, qrels)
    # nDCG@10 by hand: the rank of each query's one relevant document among the MaxSim scores
    maxsim = model.similarity(model.encode(list(queries.values()), is_query=True), model.encode(list(corpus_texts.values())))
    ranks = [int(np.argsort(-row, kind="stable").tolist().index(i)) for i, row in enumerate(maxsim)]
    want = 100 * np.mean([1 / np.log2(r + 2) if r < 10 else 0.0 for r in ranks])
    assert scores["results"]["maxsim float32"]["ndcg@10"] == pytest.approx(want)
    assert f"{want:.2f}" in result.stdout
    assert scores["results"]["muvera int8+maxsim"] == scores["results"]["maxsim int8"]  # every document is a candidate


def test_cli_rerank_with_a_colbert_model(model, tmp_path):
    documents = tmp_path / "docs.txt"
    documents.write_text("\n".join(DOCUMENTS[:8]) + "\n")
    lines = run_cli("rerank", model.spec.path, "--query", "w1 w2", "--documents", documents, "-k", "3").stdout.strip().splitlines()
    want = model.rank("w1 w2", DOCUMENTS[:8], top_k=3)
    assert [int(line.split()[2]) for line in lines] == [w["corpus_id"] for w in want]
    assert [float(line.split()[1]) for line in lines] == pytest.approx([w["score"] for w in want], abs=1e-4)
    refused = run_cli("rerank", model.spec.path, "--query", "w1", "--documents", documents, "--raw-scores", check=False)
    assert refused.returncode == 2 and "its scores are MaxSim (--raw-scores does not apply)" in refused.stderr


def test_cli_rerank_job_with_a_colbert_model(model, tmp_path):
    """A jsonl of {query, candidates} rows reranked by MaxSim: candidates by text and by id, an empty list."""
    corpus, source, out = tmp_path / "corpus.jsonl", tmp_path / "cands.jsonl", tmp_path / "reranked.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(DOCUMENTS)))
    rows = [{"query": "w1 w2 ?", "candidates": [{"id": f"d{i}"} for i in range(9)], "qid": 1},
            {"query": "w7", "candidates": DOCUMENTS[4:15]}, {"query": "w3", "candidates": []}]  # fmt: skip
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = run_cli("rerank", model.spec.path, "--input", source, "--out", out, "--corpus", corpus, "-k", "4", "--quiet")
    assert "reranked   3 queries, 20 pairs" in result.stdout
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert got[0]["qid"] == 1 and got[2]["results"] == []
    for row, candidates in zip(got[:2], (DOCUMENTS[:9], DOCUMENTS[4:15])):
        want = model.rank(row["query"], candidates, top_k=4)
        assert [r["index"] for r in row["results"]] == [w["corpus_id"] for w in want]
        np.testing.assert_allclose([r["score"] for r in row["results"]], [w["score"] for w in want], rtol=1e-5)
    assert [r["id"] for r in got[0]["results"]] == [f"d{w}" for w in (r["index"] for r in got[0]["results"])]
