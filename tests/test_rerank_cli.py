"""fastembed-rt rerank (one query, and a jsonl of {query, candidates} rows) and search --queries, as subprocesses."""

import json

import numpy as np
import pytest

import fastembed_rt
from fastembed_rt.testing import cross_encoder_from

from test_cli import run_cli


@pytest.fixture(scope="module")
def cross_encoder(tmp_path_factory, minilm_path):
    return cross_encoder_from(minilm_path, tmp_path_factory.mktemp("ce"))


@pytest.fixture(scope="module")
def passages(data_dir):
    lines = (data_dir / "arguana" / "corpus.jsonl").read_text().splitlines()[:30]
    return [{"id": row["_id"], "text": " ".join(row["text"].split()[:60])} for row in map(json.loads, lines)]


def test_rerank_one_query_prints_the_ranking(cross_encoder, passages, tmp_path):
    documents = tmp_path / "docs.jsonl"
    documents.write_text("".join(json.dumps(p) + "\n" for p in passages))
    out = run_cli("rerank", cross_encoder, "--query", "animal rights", "--documents", documents, "-k", "5").stdout
    lines = out.strip().splitlines()
    want = fastembed_rt.load(cross_encoder).rank("animal rights", [p["text"] for p in passages], top_k=5)
    assert len(lines) == 5
    for line, r in zip(lines, want):
        rank, score, name = line.split()[:3]
        assert name == passages[r["corpus_id"]]["id"] and float(score) == pytest.approx(r["score"], abs=1e-4)


def test_rerank_a_candidates_file_by_id_and_by_text(cross_encoder, passages, tmp_path):
    rows = [{"id": "q1", "query": "animal rights", "candidates": [{"id": p["id"], "score": 0.5} for p in passages[:12]]},
            {"id": "q2", "query": "school uniforms", "candidates": [p["text"] for p in passages[10:25]]},
            {"id": "q3", "query": "nothing to rank", "candidates": []}]  # fmt: skip
    source, out, corpus = tmp_path / "cands.jsonl", tmp_path / "out" / "reranked.jsonl", tmp_path / "corpus.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    corpus.write_text("".join(json.dumps(p) + "\n" for p in passages))
    result = run_cli("rerank", cross_encoder, "--input", source, "--out", out, "--corpus", corpus, "-k", "4", "--quiet")
    assert "reranked   3 queries, 27 pairs" in result.stdout
    got = [json.loads(line) for line in out.read_text().splitlines()]
    reranker = fastembed_rt.load(cross_encoder)
    assert [g["id"] for g in got] == ["q1", "q2", "q3"] and got[2]["results"] == []
    want = reranker.rank("animal rights", [p["text"] for p in passages[:12]], top_k=4)
    assert [r["index"] for r in got[0]["results"]] == [w["corpus_id"] for w in want]
    assert [r["id"] for r in got[0]["results"]] == [passages[w["corpus_id"]]["id"] for w in want]
    np.testing.assert_allclose([r["score"] for r in got[0]["results"]], [w["score"] for w in want], rtol=1e-5)
    want = reranker.rank("school uniforms", [p["text"] for p in passages[10:25]], top_k=4)
    assert [r["index"] for r in got[1]["results"]] == [w["corpus_id"] for w in want] and "id" not in got[1]["results"][0]
    assert not list(out.parent.glob("*.partial"))


@pytest.mark.parametrize("row, message", [
    ({"query": "q", "candidates": "a text"}, "row 2: \"candidates\" must be a list, got str"),
    ({"query": "q", "candidates": [{"id": "nope"}]}, "row 2: candidates[0] has id 'nope', which the corpus does not hold"),
    ({"query": "q", "candidates": [3]}, "row 2: candidates[0] must be a string or an object, got int"),
    ({"query": 5, "candidates": []}, ":2"),
    ({"query": "word " * 600, "candidates": ["d"]}, "row 2: the query leaves no room"),
    ({"query": "q", "candidates": ["fine", "\ud800"]}, "row 2: candidates[1] is not valid Unicode"),
])  # fmt: skip
def test_a_bad_row_is_named_and_leaves_no_output(cross_encoder, passages, tmp_path, row, message):
    source, out, corpus = tmp_path / "cands.jsonl", tmp_path / "reranked.jsonl", tmp_path / "corpus.jsonl"
    source.write_text(json.dumps({"query": "fine", "candidates": ["a", "b"]}) + "\n" + json.dumps(row) + "\n")
    corpus.write_text("".join(json.dumps(p) + "\n" for p in passages))
    result = run_cli("rerank", cross_encoder, "--input", source, "--out", out, "--corpus", corpus, "--quiet", check=False)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert not out.exists() and not list(tmp_path.glob("*.partial"))


def test_search_queries_feeds_rerank(cross_encoder, passages, tmp_path, minilm_path):
    corpus, queries = tmp_path / "corpus.jsonl", tmp_path / "queries.txt"
    corpus.write_text("".join(json.dumps(p) + "\n" for p in passages))
    queries.write_text("animal rights\nschool uniforms\n")
    run_cli("embed", corpus, "--out", tmp_path / "vectors.npy", "--index", tmp_path / "index", "--model", minilm_path, "--quiet")
    found = run_cli("search", tmp_path / "index", "--queries", queries, "-k", "7", "--model", minilm_path).stdout
    rows = [json.loads(line) for line in found.splitlines()]
    assert [r["query"] for r in rows] == ["animal rights", "school uniforms"] and all(len(r["candidates"]) == 7 for r in rows)
    assert {c["id"] for r in rows for c in r["candidates"]} <= {p["id"] for p in passages}
    (tmp_path / "cands.jsonl").write_text(found)
    run_cli("rerank", cross_encoder, "--input", tmp_path / "cands.jsonl", "--out", tmp_path / "r.jsonl", "--corpus", corpus, "--quiet")
    reranked = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [len(r["results"]) for r in reranked] == [7, 7]
    assert {r["id"] for r in reranked[0]["results"]} == {c["id"] for c in rows[0]["candidates"]}


def test_rerank_argument_errors(cross_encoder, tmp_path):
    assert "give either --query" in run_cli("rerank", cross_encoder, check=False).stderr
    assert "--query needs --documents" in run_cli("rerank", cross_encoder, "--query", "q", check=False).stderr
    (tmp_path / "c.jsonl").write_text('{"query": "q", "candidates": ["a"]}\n')
    result = run_cli("rerank", cross_encoder, "--input", tmp_path / "c.jsonl", "--out", tmp_path / "o.jsonl", "-k", "0", check=False)
    assert "-k) must be a positive int" in result.stderr


def test_embedding_commands_refuse_a_reranker(cross_encoder, tmp_path):
    (tmp_path / "t.txt").write_text("a text\n")
    result = run_cli("embed", tmp_path / "t.txt", "--out", tmp_path / "v.npy", "--model", cross_encoder, "--quiet", check=False)
    assert result.returncode == 2 and "is a reranker (a cross-encoder)" in result.stderr
