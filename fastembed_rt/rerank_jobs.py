"""Reranking at corpus scale: a jsonl of {query, candidates} rows (e.g. `fastembed-rt search --queries`'s output)
to a jsonl of reranked lists, streamed in chunks of rows whose pairs share token-budget batches.

Input row:  {"query": str, "candidates": [str | {"id": ..., "text": str, ...}], ...other fields kept}
            A candidate without "text" is looked up by its "id" in a corpus file (--corpus).
Output row: the input row's other fields, "query", and "results": [{"index", "id"?, "score", "text"?}], best
            first, at most top_k. The output is written to a temporary file and renamed when complete, so a
            crash never leaves a partial file under the output's name.
A cross-encoder or LLM reranker scores each (query, candidate) pair; a ColBERT model scores by MaxSim, each row's
query encoded once.
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .colbert import ColBERT, paired_maxsim_scores
from .engine import check_text
from .readers import InputError, iter_jsonl
from .reranker import QueryTooLong, best_first
from .validation import positive_int

PAIRS_PER_CHUNK = 2048  # pairs scored together: enough to fill several batches, little memory


@dataclass
class RerankTotals:
    rows: int = 0
    pairs: int = 0
    tokens: int = 0


def _candidate_text(candidate, where: str, i: int, corpus: dict[str, str] | None) -> tuple[object, str]:
    """(id or None, text) of one candidate."""
    if isinstance(candidate, str):
        return None, check_text(candidate, f"{where}: candidates[{i}]")
    if not isinstance(candidate, dict):
        raise InputError(f"{where}: candidates[{i}] must be a string or an object, got {type(candidate).__name__}")
    text, cid = candidate.get("text"), candidate.get("id")
    if text is None:
        if corpus is None:
            raise InputError(f"{where}: candidates[{i}] has no \"text\"; pass --corpus to look its id up")
        if str(cid) not in corpus:
            raise InputError(f"{where}: candidates[{i}] has id {cid!r}, which the corpus does not hold")
        text = corpus[str(cid)]
    if not isinstance(text, str):
        raise InputError(f"{where}: candidates[{i}].text must be a string, got {type(text).__name__}")
    return cid, check_text(text, f"{where}: candidates[{i}]")


@dataclass
class Row:
    where: str  # file: row N
    fields: dict
    ids: list
    texts: list[str]


def read_rows(path: Path, corpus: dict[str, str] | None) -> Iterator[Row]:
    """The input rows with their candidates' ids and texts; a bad row raises InputError naming it."""
    for number, row in enumerate(iter_jsonl(path, "query"), start=1):
        where = f"{path}: row {number}"
        candidates = row.get("candidates")
        if not isinstance(candidates, list):
            raise InputError(f"{where}: \"candidates\" must be a list, got {type(candidates).__name__}")
        check_text(row["query"], f"{where}: query")
        pairs = [_candidate_text(c, where, i, corpus) for i, c in enumerate(candidates)]
        yield Row(where, row, [p[0] for p in pairs], [p[1] for p in pairs])


def rerank_file(reranker, source: Path, out: Path, *, corpus: dict[str, str] | None = None, top_k: int | None = None,
                return_documents: bool = False, raw_scores: bool = False, truncate: bool = False,
                batch_tokens: int | None = None, on_rows: Callable[[int, int], None] | None = None) -> RerankTotals:  # fmt: skip
    """Reranks every row of `source` into `out` (jsonl), in input order. on_rows(rows, pairs) after each chunk."""
    if not isinstance(reranker, ColBERT) and reranker.num_labels != 1:
        raise ValueError(f"reranking needs one score per pair; this model has {reranker.num_labels} labels")
    top_k = None if top_k is None else positive_int(top_k, "top_k (-k)")
    totals = RerankTotals()
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    try:
        with open(partial, "w", encoding="utf-8") as sink:
            chunk: list[Row] = []
            pairs = 0
            for row in read_rows(source, corpus):
                chunk.append(row)
                pairs += len(row.texts)
                if pairs >= PAIRS_PER_CHUNK:
                    _score_chunk(reranker, chunk, sink, totals, top_k, return_documents, raw_scores, truncate, batch_tokens, on_rows)
                    chunk, pairs = [], 0
            _score_chunk(reranker, chunk, sink, totals, top_k, return_documents, raw_scores, truncate, batch_tokens, on_rows)
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return totals


def _score_chunk(reranker, chunk: list[Row], sink, totals, top_k, return_documents, raw_scores, truncate, batch_tokens, on_rows):
    if not chunk:
        return
    documents = [t for row in chunk for t in row.texts]
    if isinstance(reranker, ColBERT):
        scores, tokens = _maxsim_scores(reranker, chunk, documents, batch_tokens)
    else:
        scores, tokens = _pair_scores(reranker, chunk, documents, raw_scores, truncate, batch_tokens)
    start = 0
    for row in chunk:
        row_scores = scores[start : start + len(row.texts)]
        start += len(row.texts)
        results = []
        for i in map(int, best_first(row_scores, top_k)):
            result = {"index": i, **({"id": row.ids[i]} if row.ids[i] is not None else {}), "score": float(row_scores[i])}
            results.append({**result, "text": row.texts[i]} if return_documents else result)
        kept = {k: v for k, v in row.fields.items() if k != "candidates"}
        sink.write(json.dumps({**kept, "results": results}, ensure_ascii=False) + "\n")
    totals.rows += len(chunk)
    totals.pairs += len(documents)
    totals.tokens += tokens
    if on_rows is not None:
        on_rows(len(chunk), len(documents))


def _pair_scores(reranker, chunk: list[Row], documents: list[str], raw_scores, truncate, batch_tokens):
    """A cross-encoder's (or LLM reranker's) score of every (query, candidate) pair, and the tokens it read."""
    queries = [row.fields["query"] for row in chunk for _ in row.texts]
    try:
        encoded = reranker.encode_pairs(queries, documents, truncate=truncate)
    except QueryTooLong as e:
        row = next(r for r, end in zip(chunk, itertools.accumulate(len(r.texts) for r in chunk)) if e.index < end)
        raise InputError(f"{row.where}: the query leaves no room for a document within the model's {reranker.max_length} "
                         "tokens; shorten it or pass --truncate") from None  # fmt: skip
    scores = reranker.scores(reranker.logits(encoded, batch_tokens=batch_tokens), raw_scores=raw_scores)
    return scores, sum(len(x) for x in encoded.ids)


def _maxsim_scores(colbert: ColBERT, chunk: list[Row], documents: list[str], batch_tokens):
    """A ColBERT's MaxSim of each row's query with each of its candidates, and the token vectors it made."""
    queries = colbert.encode([row.fields["query"] for row in chunk], is_query=True, batch_tokens=batch_tokens)
    vectors = colbert.encode(documents, batch_tokens=batch_tokens)
    query_of = np.repeat(np.arange(len(chunk)), [len(row.texts) for row in chunk])
    return paired_maxsim_scores(queries, vectors, query_of), len(queries.vectors) + len(vectors.vectors)
