"""Quality evaluation: STS (Spearman of cosine) and BEIR-layout retrieval (nDCG@10, recall@100) at any
index precision, so the cost of int8 or binary is measured, not guessed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .hybrid import hybrid
from .readers import iter_jsonl
from .search import Index
from .sparse_index import SparseIndex


def rank_average_ties(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(1, len(x) + 1)
    _, inverse = np.unique(x, return_inverse=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / np.bincount(inverse)[inverse]


def spearman(a, b) -> float:
    ra, rb = rank_average_ties(np.asarray(a, dtype=np.float64)), rank_average_ties(np.asarray(b, dtype=np.float64))
    return float(np.corrcoef(ra, rb)[0, 1])


def evaluate_sts(model, tsv: Path) -> dict:
    """TSV with a header line and rows `score<TAB>sentence1<TAB>sentence2`."""
    rows = []
    for where, line in _lines(tsv, skip_header=True):
        parts = line.split("\t")
        if len(parts) < 3:
            raise ValueError(f"{where}: expected score<TAB>sentence1<TAB>sentence2")
        try:
            score = float(parts[0])
        except ValueError:
            score = float("nan")
        if not np.isfinite(score):
            raise ValueError(f"{where}: the score {parts[0]!r} is not a finite number")
        rows.append((score, parts[1], parts[2]))
    if len(rows) < 2 or len({r[0] for r in rows}) < 2:
        raise ValueError(f"{tsv}: Spearman needs at least 2 rows with different scores; it has {len(rows)} rows")
    vectors = model.encode([r[1] for r in rows] + [r[2] for r in rows], normalize=True)
    a, b = vectors[: len(rows)], vectors[len(rows) :]
    return {"pairs": len(rows), "spearman": 100 * spearman([r[0] for r in rows], (a * b).sum(1))}


def _lines(path: Path, skip_header: bool = False):
    """(file:line, line without its newline) of a UTF-8 text file, blank lines left out."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if skip_header and number == 1:
                continue
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise ValueError(f"{path}:{number}: not valid UTF-8 (byte {e.start} of the line)") from None
            if line.strip():
                yield f"{path}:{number}", line


def _beir_texts(path: Path, with_title: bool) -> dict[str, str]:
    """_id -> text (after the title, for documents) of a BEIR corpus.jsonl or queries.jsonl; ids are strings or
    integers, read as strings."""
    texts = {}
    for number, row in enumerate(iter_jsonl(path, "text"), start=1):
        _id, title = row.get("_id"), row.get("title", "") if with_title else ""
        if isinstance(_id, bool) or not isinstance(_id, (str, int)):
            raise ValueError(f"{path}: row {number}: _id must be a string or an integer, got {json_kind(_id)}")
        if not isinstance(title, str):
            raise ValueError(f"{path}: row {number}: title must be a string, got {json_kind(title)}")
        texts[str(_id)] = (title + " " + row["text"]).strip()
    return texts


def read_beir(directory: Path) -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, int]]]:
    corpus, queries = _beir_texts(directory / "corpus.jsonl", True), _beir_texts(directory / "queries.jsonl", False)
    qrels: dict[str, dict[str, int]] = {}
    for where, line in _lines(directory / "qrels" / "test.tsv"):
        fields = line.split("\t")
        if fields[0] == "query-id":
            continue
        if len(fields) < 3:
            raise ValueError(f"{where}: expected query-id<TAB>corpus-id<TAB>score")
        try:
            qrels.setdefault(fields[0], {})[fields[1]] = int(fields[2])
        except ValueError:
            raise ValueError(f"{where}: the score {fields[2]!r} is not an integer") from None
    judged = [q for q in queries if q in qrels]
    if not judged:
        raise ValueError(f"{directory}: no query of queries.jsonl ({len(queries)}) has judgments in qrels/test.tsv "
                         f"({len(qrels)} query ids): nothing to score")  # fmt: skip
    return corpus, queries, qrels


def json_kind(value) -> str:
    return "null" if value is None else type(value).__name__


def ndcg_at(ranked: list[str], relevant: dict[str, int], k: int) -> float:
    dcg = sum(relevant.get(doc, 0) / np.log2(i + 2) for i, doc in enumerate(ranked[:k]))
    ideal = sorted(relevant.values(), reverse=True)[:k]
    idcg = sum(rel / np.log2(i + 2) for i, rel in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def evaluate_retrieval(model, corpus, queries, qrels, precisions=("float32", "int8", "binary"),
                       drop_self: bool = False, rescore_multiplier: int = 4) -> dict:  # fmt: skip
    """Embeds a BEIR corpus and its judged queries, then scores retrieval at each index precision."""
    doc_ids = list(corpus)
    query_ids = [q for q in queries if q in qrels]
    doc_vectors = model.encode([corpus[d] for d in doc_ids], normalize=True)
    query_vectors = model.encode([queries[q] for q in query_ids], normalize=True)
    return score_retrieval(doc_ids, doc_vectors, query_ids, query_vectors, qrels, precisions, drop_self, rescore_multiplier)


def score_retrieval(doc_ids, doc_vectors, query_ids, query_vectors, qrels, precisions=("float32", "int8", "binary"),
                    drop_self: bool = False, rescore_multiplier: int = 4) -> dict:  # fmt: skip
    """nDCG@10 and recall@100 over the judged queries, per index precision; an int8 or binary index is
    scored twice, ranked by its quantized scores alone ("int8") and after float rescoring ("int8+rescore")."""
    depth = 100 + (1 if drop_self else 0)
    results = {}
    for precision in precisions:
        index = Index.build(doc_vectors, precision, keep_float=True)
        variants = {precision: rescore_multiplier} if precision == "float32" else {precision: 0, f"{precision}+rescore": rescore_multiplier}
        for name, multiplier in variants.items():
            _, hits = index.search(query_vectors, k=depth, rescore_multiplier=multiplier)
            results[name] = ranking_metrics(doc_ids, query_ids, hits, qrels, drop_self)
    return {"queries": len(query_ids), "documents": len(doc_ids), "results": results}


def ranking_metrics(doc_ids, query_ids, hits, qrels, drop_self: bool = False) -> dict:
    """nDCG@10 and recall@100 of ranked hits (row per query, document positions best first; < 0: none)."""
    ndcg, recall = [], []
    for qid, row in zip(query_ids, hits):
        ranked = [doc_ids[i] for i in row if i >= 0 and not (drop_self and doc_ids[i] == qid)][:100]
        relevant = {d: s for d, s in qrels[qid].items() if s > 0}
        ndcg.append(ndcg_at(ranked, relevant, 10))
        recall.append(len(set(ranked) & set(relevant)) / len(relevant) if relevant else 0.0)
    return {"ndcg@10": 100 * float(np.mean(ndcg)), "recall@100": 100 * float(np.mean(recall))}


def evaluate_sparse_retrieval(model, corpus, queries, qrels, drop_self: bool = False, dense_model=None,
                              method: str = "rrf") -> dict:  # fmt: skip
    """A sparse model's retrieval (queries on its query route, documents on its document route, exact SparseIndex
    search); with a dense model, its own float32 retrieval and the hybrid of the two lists (`method`: rrf or
    weighted), over the same queries."""
    doc_ids = list(corpus)
    query_ids = [q for q in queries if q in qrels]
    depth = 100 + (1 if drop_self else 0)
    documents, texts = [corpus[d] for d in doc_ids], [queries[q] for q in query_ids]
    sparse = SparseIndex.build(model.encode_document(documents)).search(model.encode_query(texts), depth)
    results = {"sparse": ranking_metrics(doc_ids, query_ids, sparse[1], qrels, drop_self)}
    if dense_model is not None:
        index = Index.build(dense_model.encode(documents, normalize=True), "float32")
        dense = index.search(dense_model.encode(texts, normalize=True), k=depth)
        results["dense"] = ranking_metrics(doc_ids, query_ids, dense[1], qrels, drop_self)
        fused = hybrid(dense, sparse, method, k=depth)
        results[f"hybrid ({method})"] = ranking_metrics(doc_ids, query_ids, fused[1], qrels, drop_self)
    return {"queries": len(query_ids), "documents": len(doc_ids), "results": results}


def evaluate_multivector_retrieval(model, corpus, queries, qrels, drop_self: bool = False, candidates: int = 1000) -> dict:
    """A ColBERT model's retrieval: exact MaxSim over float32 and over int8 token vectors, and MUVERA candidates
    (an int8 index of fixed-dimensional encodings) rescored by exact MaxSim, over the same queries."""
    from .multivector_index import MultiVectorIndex

    doc_ids = list(corpus)
    query_ids = [q for q in queries if q in qrels]
    depth = 100 + (1 if drop_self else 0)
    documents = model.encode([corpus[d] for d in doc_ids])
    query_vectors = model.encode([queries[q] for q in query_ids], is_query=True)
    runs = {"maxsim float32": (MultiVectorIndex.build(documents), True),
            "maxsim int8": (MultiVectorIndex.build(documents, "int8", candidates="int8"), True)}  # fmt: skip
    runs["muvera int8+maxsim"] = (runs["maxsim int8"][0], False)
    results = {}
    for name, (index, exact) in runs.items():
        _, hits = index.search(query_vectors, k=depth, exact=exact, candidates=candidates)
        results[name] = ranking_metrics(doc_ids, query_ids, hits, qrels, drop_self)
    return {"queries": len(query_ids), "documents": len(doc_ids), "results": results}
