"""Retrieval and STS evaluation on real data, at every index precision."""

import json
import subprocess
import sys

import numpy as np
import pytest
from scipy.stats import spearmanr

from fastembed_rt import evaluation


@pytest.fixture(scope="module")
def arguana_subset(data_dir):
    """150 judged ArguAna queries and 600 documents: every judged document, the queries' own
    documents (self-hits, as in the full set), and others in file order (1,000 took 85 s of a CI worker)."""
    corpus, queries, qrels = evaluation.read_beir(data_dir / "arguana")
    chosen = [q for q in queries if q in qrels and all(d in corpus for d in qrels[q])][:150]
    keep = {d for q in chosen for d in qrels[q]} | {q for q in chosen if q in corpus}
    for doc_id in corpus:
        if len(keep) >= 600:
            break
        keep.add(doc_id)
    return {d: corpus[d] for d in corpus if d in keep}, {q: queries[q] for q in chosen}, {q: qrels[q] for q in chosen}


def test_retrieval_quality_by_precision(minilm, arguana_subset):
    corpus, queries, qrels = arguana_subset
    doc_ids, query_ids = list(corpus), list(queries)
    d = minilm.encode([corpus[i] for i in doc_ids])
    q = minilm.encode([queries[i] for i in query_ids])
    report = evaluation.score_retrieval(doc_ids, d, query_ids, q, qrels, drop_self=True)
    results = report["results"]
    assert report["queries"] == 150 and report["documents"] == 600
    assert results["float32"]["ndcg@10"] > 40
    assert set(results) == {"float32", "int8", "int8+rescore", "binary", "binary+rescore"}
    assert results["binary+rescore"]["ndcg@10"] >= 0.9 * results["float32"]["ndcg@10"]
    assert results["int8+rescore"]["ndcg@10"] >= 0.97 * results["float32"]["ndcg@10"]
    assert results["binary"]["ndcg@10"] < results["binary+rescore"]["ndcg@10"]  # rescoring is what recovers it

    # float32 equals a plain numpy exact search over the same vectors
    top = np.argsort(-(q @ d.T), axis=1, kind="stable")[:, :101]
    ndcg = [evaluation.ndcg_at([doc_ids[j] for j in row if doc_ids[j] != qid][:10], qrels[qid], 10) for qid, row in zip(query_ids, top)]
    assert abs(100 * np.mean(ndcg) - results["float32"]["ndcg@10"]) < 1e-6


def test_ndcg_and_spearman_helpers():
    assert evaluation.ndcg_at(["a", "b"], {"a": 1}, 10) == 1.0
    assert abs(evaluation.ndcg_at(["x", "a"], {"a": 1}, 10) - 1 / np.log2(3)) < 1e-12
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, 200), rng.standard_normal(200)
    assert abs(evaluation.spearman(a, b) - spearmanr(a, b).statistic) < 1e-12


def test_cli_eval_sts_and_search(tmp_path, data_dir):
    rows = open(data_dir / "stsb" / "dev.tsv", encoding="utf-8").read().splitlines()[:201]
    sts = tmp_path / "sts.tsv"
    sts.write_text("\n".join(rows) + "\n")
    cli = [sys.executable, "-m", "fastembed_rt.cli"]
    out = subprocess.run([*cli, "eval", str(sts)], capture_output=True, text=True, check=True).stdout
    assert "STS sts.tsv: 200 pairs, Spearman" in out

    docs = tmp_path / "docs.jsonl"
    texts = ["The cat sat on the mat.", "Stock markets fell sharply.", "A kitten rests on a rug.", "Rain is expected tomorrow."]
    docs.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    subprocess.run([*cli, "embed", str(docs), "--out", str(tmp_path / "v.npy"), "--index", str(tmp_path / "idx"),
                    "--index-precision", "int8", "--quiet"], check=True, capture_output=True)  # fmt: skip
    out = subprocess.run([*cli, "search", str(tmp_path / "idx"), "--query", "a cat on a carpet", "-k", "2"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    lines = out.splitlines()
    assert len(lines) == 2 and {lines[0].split()[-1], lines[1].split()[-1]} == {"d0", "d2"}
