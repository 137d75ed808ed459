"""Sparse embeddings: SPLADE encoding against sentence-transformers' SparseEncoder, and SparseIndex search against
scipy, one run.

    python benchmarks/bench_sparse.py [--part encode,search] [--texts N] [--docs N] [--threads T] [--rounds R]

encode: a SPLADE model of BERT-base shape (12 layers, 768 wide, the 30,522-term WordPiece vocabulary of the bundled
  all-MiniLM-L6-v2, random weights with the MLM decoder bias shifted so that ~1/3 of the logits are positive, as in
  trained SPLADE heads), on the first N texts of ../shared/data/bench/corpus.jsonl truncated at 256 tokens. Peer:
  sentence-transformers SparseEncoder (MLMTransformer + SpladePooling max, float32, batch 32). Ours: float32,
  bfloat16, int8. Each system encodes the texts once per round, in turn; its best round counts. Quality: per-vector
  cosine to the peer's float32 vectors (min and mean).
search: N documents of ~120 non-zeros (Zipf-distributed terms over 30,522) and 100 queries of ~30, top-10, best of
  3. Peer: scipy, a CSR product against the transposed corpus (prepared outside the timing) then argpartition and a
  sort of the k best per query. The two results are compared (scores to 1e-5, ids).
Rows go to benchmarks/results/sparse.csv.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import fastembed_rt  # first: it sets the OpenMP spin policy and the ISA cap before torch loads
import numpy as np
import torch
from results_csv import append_rows

from fastembed_rt import SparseEmbeddings, SparseIndex, isa

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "data" / "bench" / "corpus.jsonl"
MAX_LENGTH = 256
VOCAB = 30522


def splade_bert_base(directory: Path) -> Path:
    import transformers as tf

    config = tf.BertConfig(vocab_size=VOCAB, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                           intermediate_size=3072, max_position_embeddings=512)  # fmt: skip
    torch.manual_seed(0)
    model = tf.BertForMaskedLM(config)
    with torch.no_grad():
        model.cls.predictions.bias.normal_(-2.0, 1.0)
    model.save_pretrained(directory)
    minilm = fastembed_rt.loading.resolve_model_path("all-MiniLM-L6-v2")
    (directory / "tokenizer.json").write_bytes((minilm / "tokenizer.json").read_bytes())
    (directory / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer", "do_lower_case": True,
                                                                 "model_max_length": MAX_LENGTH}))  # fmt: skip
    return directory


def best_of(rounds: int, fn):
    best, out = float("inf"), None
    for _ in range(rounds):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def bench_encode(texts: list[str], threads: int, rounds: int) -> list[list]:
    from sentence_transformers import SparseEncoder
    from sentence_transformers.sparse_encoder.modules import MLMTransformer, SpladePooling

    with tempfile.TemporaryDirectory() as tmp:
        directory = splade_bert_base(Path(tmp))
        peer = SparseEncoder(modules=[MLMTransformer(str(directory), max_seq_length=MAX_LENGTH), SpladePooling("max")], device="cpu")
        systems = {"sentence-transformers float32": lambda: peer.encode(texts, batch_size=32, convert_to_tensor=True).to_dense().numpy()}
        for dtype in ("float32", "bfloat16", "int8"):
            model = fastembed_rt.load(directory, dtype=dtype)
            systems[f"fastembed_rt {dtype}"] = lambda model=model: model.encode(texts).to_dense()
        times, outputs = {name: float("inf") for name in systems}, {}
        for _ in range(rounds):
            for name, fn in systems.items():
                seconds, outputs[name] = best_of(1, fn)
                times[name] = min(times[name], seconds)
    base = outputs["sentence-transformers float32"]
    rows = []
    print(f"{'system':34s} {'texts/s':>9s} {'vs ST':>7s} {'min cos':>8s} {'mean cos':>9s} {'nnz/text':>9s}")
    for name, seconds in times.items():
        out = outputs[name]
        cosine = (base * out).sum(1) / np.maximum(np.linalg.norm(base, axis=1) * np.linalg.norm(out, axis=1), 1e-30)
        speed = len(texts) / seconds
        ratio = times["sentence-transformers float32"] / seconds
        nnz = float((out != 0).sum(1).mean())
        print(f"{name:34s} {speed:9.2f} {ratio:7.2f} {cosine.min():8.4f} {cosine.mean():9.4f} {nnz:9.1f}")
        rows.append(["encode", name, threads, len(texts), round(speed, 3), round(ratio, 3), round(float(cosine.min()), 5),
                     round(float(cosine.mean()), 5), round(nnz, 1), ""])  # fmt: skip
    return rows


def zipf_sparse(n: int, nnz: int, seed: int, chunk: int = 20_000) -> SparseEmbeddings:
    """n vectors of ~nnz distinct terms over VOCAB, term r drawn with probability ~ 1/(r+1) (Zipf's law),
    weights in (0, 3). Made `chunk` vectors at a time (one sort of 200M keys took minutes)."""
    rng = np.random.default_rng(seed)
    draws = int(nnz * (1.38 if nnz > 60 else 1.15))  # draws that give ~nnz distinct terms under this law
    law = np.cumsum(1.0 / np.arange(1, VOCAB + 1))
    law /= law[-1]
    counts, terms = [], []
    for start in range(0, n, chunk):
        rows = np.repeat(np.arange(min(chunk, n - start), dtype=np.int64), rng.poisson(draws, min(chunk, n - start)))
        drawn = np.minimum(np.searchsorted(law, rng.random(len(rows))), VOCAB - 1)
        keys = np.unique(rows * VOCAB + drawn)  # sorted, duplicates within a vector dropped
        counts.append(np.bincount(keys // VOCAB, minlength=min(chunk, n - start)))
        terms.append((keys % VOCAB).astype(np.int32))
    indptr = np.concatenate([[0], np.cumsum(np.concatenate(counts))])
    terms = np.concatenate(terms)
    return SparseEmbeddings(indptr, terms, (rng.random(len(terms)) * 3).astype(np.float32), VOCAB)


def scipy_search(queries, corpus_t, k: int):
    scores = (queries @ corpus_t).toarray()
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    top_scores = np.take_along_axis(scores, top, 1)
    order = np.lexsort((top, -top_scores), axis=1)
    return np.take_along_axis(top_scores, order, 1), np.take_along_axis(top, order, 1)


def bench_search(docs: int, threads: int, rounds: int, k: int = 10) -> list[list]:
    corpus, queries = zipf_sparse(docs, 120, seed=0), zipf_sparse(100, 30, seed=1)
    start = time.perf_counter()
    index = SparseIndex.build(corpus)
    build = time.perf_counter() - start
    corpus_t = corpus.to_scipy().T.tocsr()
    q = queries.to_scipy()
    ours_s, (scores, ids) = best_of(rounds, lambda: index.search(queries, k, num_threads=threads))
    peer_s, (want_scores, want_ids) = best_of(rounds, lambda: scipy_search(q, corpus_t, k))
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5)
    agree = float((ids == want_ids).mean())
    print(f"search {docs:,} docs ({corpus.nnz / docs:.0f} nnz each), 100 queries ({queries.nnz / 100:.0f} nnz), k={k}: "
          f"SparseIndex {ours_s * 1000:.1f} ms (build {build:.1f} s), scipy {peer_s * 1000:.1f} ms: {peer_s / ours_s:.2f}x; "
          f"ids agree {agree:.4f}")  # fmt: skip
    return [["search", "scipy csr product + argpartition", 1, docs, round(100 / peer_s, 2), 1.0, "", "", round(corpus.nnz / docs, 1), round(peer_s * 1000, 2)],
            ["search", "fastembed_rt SparseIndex", threads, docs, round(100 / ours_s, 2), round(peer_s / ours_s, 3), "", "",
             round(corpus.nnz / docs, 1), round(ours_s * 1000, 2)]]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", default="encode,search")
    parser.add_argument("--texts", type=int, default=200)
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    print(f"ISA: {isa.active()}, threads: {args.threads}")
    if "encode" in args.part:
        texts = [json.loads(line)["text"] for line in CORPUS.read_text(encoding="utf-8").splitlines()[: args.texts]]
        rows += bench_encode(texts, args.threads, args.rounds)
    if "search" in args.part:
        rows += bench_search(args.docs, args.threads, max(args.rounds, 3))
    append_rows("sparse.csv", ["part", "system", "threads", "items", "items_per_s", "vs_peer", "min_cosine", "mean_cosine",
                               "nnz", "ms"], rows)  # fmt: skip


if __name__ == "__main__":
    main()
