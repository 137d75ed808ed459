"""fastembed-rt: embed files, and show what this machine and build can do."""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from importlib import resources
from pathlib import Path

import numpy as np


def sample_corpus_path() -> Path:
    return Path(str(resources.files("fastembed_rt") / "data" / "sample_corpus.jsonl"))


def _write_output(out: Path, fmt: str, vectors: np.ndarray, ids: list[str] | None) -> list[Path]:
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "npy":
        with open(out, "wb") as f:  # np.save(path) would append .npy to any other suffix (E.NPY -> E.NPY.npy)
            np.save(f, vectors)
        written = [out]
        if ids is not None:
            ids_path = out.with_suffix(".ids.json")
            ids_path.write_text(json.dumps(ids))
            written.append(ids_path)
        return written
    import pyarrow as pa
    import pyarrow.parquet as pq

    flat = pa.array(vectors.reshape(-1), type=pa.float32())
    embedding = pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])
    row_ids = ids if ids is not None else [str(i) for i in range(len(vectors))]
    pq.write_table(pa.table({"id": pa.array(row_ids, type=pa.string()), "embedding": embedding}), out)
    return [out]


def cmd_embed(args) -> int:
    if Path(args.out).suffix.lower() not in (".npy", ".parquet") or args.engine == "ray":
        return embed_job(args)
    from tqdm import tqdm

    import fastembed_rt
    from fastembed_rt.engine import load_embedder
    from fastembed_rt.readers import read_corpus

    out = Path(args.out)
    fmt = out.suffix.lower()[1:]
    if args.format not in (None, fmt):
        raise ValueError(f"--format {args.format} but --out {out} ends in .{fmt}: give a matching suffix, or a directory for a sharded job")
    for option, value, default in (("--precision", args.precision, "float32"), ("--on-error", args.on_error, "stop")):
        if value != default:  # the single-file form writes float32 and stops at a bad row
            raise ValueError(f"{option} {value} applies to sharded jobs: give --out a directory (or drop {option})")
    source = Path(args.input) if args.input else sample_corpus_path()
    corpus = read_corpus(source, text_field=args.text_field, id_field=args.id_field)
    model = load_embedder(args.model, device=args.device, dtype=args.dtype, revision=args.revision)

    tokens_done = 0
    bar = tqdm(total=len(corpus.texts), unit="text", disable=args.quiet, file=sys.stderr)
    start = time.perf_counter()

    def progress(num_texts: int, num_tokens: int) -> None:
        nonlocal tokens_done
        tokens_done += num_tokens
        bar.update(num_texts)
        bar.set_postfix_str(f"{tokens_done / max(time.perf_counter() - start, 1e-9):,.0f} tokens/s")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", fastembed_rt.TruncationWarning)
        vectors = model.encode(
            corpus.texts, batch_tokens=args.batch_tokens, prompt_name=args.prompt_name,
            normalize=args.normalize, truncate_dim=args.truncate_dim, on_batch=progress,
        )  # fmt: skip
    elapsed = time.perf_counter() - start
    bar.close()
    written = _write_output(out, fmt, vectors, corpus.ids)
    if args.index:
        from fastembed_rt.search import Index

        Index.build(vectors, args.index_precision, keep_float=args.index_precision != "float32").save(args.index)
        if corpus.ids is not None:
            (Path(args.index) / "ids.json").write_text(json.dumps(corpus.ids))
        written.append(Path(args.index))

    print(f"model      {model.spec.path}")
    print(f"input      {source}")
    print(f"texts      {len(corpus.texts):,}")
    print(f"tokens     {tokens_done:,}")
    print(f"time       {elapsed:.2f} s")
    print(f"throughput {tokens_done / max(elapsed, 1e-9):,.0f} tokens/s, {len(corpus.texts) / max(elapsed, 1e-9):,.1f} texts/s")
    for w in caught:
        if issubclass(w.category, fastembed_rt.TruncationWarning):
            print(f"truncated  {w.message}")
    print(f"output     {', '.join(str(p) for p in written)} ({vectors.shape[0]} x {vectors.shape[1]} float32, {fmt})")
    return 0


def embed_job(args) -> int:
    """--out is a directory: a resumable sharded job (local pipeline or Ray Data)."""
    from fastembed_rt.engine import Embedder, load_embedder
    from fastembed_rt.corpus import JobOptions, embed_corpus

    if args.index:
        raise ValueError("--index builds an index from a single-file output (--out X.npy or X.parquet); a sharded job's "
                         "output directory takes none")  # fmt: skip
    source = args.input or sample_corpus_path()
    model = load_embedder(args.model, device=args.device, dtype=args.dtype, revision=args.revision, sparse=True, multivector=True)
    if args.engine == "ray" and not isinstance(model, Embedder):
        raise ValueError(f"{args.model} is a sparse or ColBERT model: its jobs run in the local pipeline (drop --engine ray)")
    options = JobOptions(
        precision=args.precision, format=args.format or "parquet", text_field=args.text_field, id_field=args.id_field,
        prompt=model.resolve_prompt(None, args.prompt_name), normalize=args.normalize, truncate_dim=args.truncate_dim,
        shard_size=args.shard_size, chunk_size=args.chunk_size, on_error=args.on_error,
    )  # fmt: skip
    if args.engine == "ray":
        from fastembed_rt.distributed import embed_ray

        manifest = embed_ray(model, source, args.out, options, overwrite=args.overwrite, address=args.ray_address)
    else:
        manifest = embed_corpus(model, source, args.out, options, overwrite=args.overwrite, progress=not args.quiet,
                                batch_tokens=args.batch_tokens)  # fmt: skip
    print(f"model      {manifest['model']}")
    print(f"input      {source}")
    print(f"texts      {manifest['rows']:,} in {len(manifest['shards'])} shards ({manifest['precision']}, {manifest['format']})")
    print(f"tokens     {manifest.get('tokens', 0):,} ({manifest.get('tokens_per_s', 0.0):,.0f} tokens/s this run)")
    busy = manifest.get("model_busy_fraction")
    print(f"model busy {'n/a (Ray actors)' if busy is None else f'{busy:.0%} of wall time'}")
    print(f"input      skipped {manifest['skipped_rows']} rows and {manifest['skipped_files']} files, UTF-8 replaced {manifest['replaced_utf8_rows']}, "
          f"empty {manifest['empty_texts']}, duplicate ids {manifest['duplicate_ids']}, truncated {manifest['truncated']}")  # fmt: skip
    for error in manifest.get("first_errors", []):
        print(f"skipped    {error}")
    print(f"output     {Path(args.out) / 'manifest.json'}")
    return 0


def cmd_verify(args) -> int:
    from fastembed_rt.corpus import verify_output

    problems = verify_output(args.out, check_inputs=not args.skip_inputs)
    for problem in problems:
        print(f"problem: {problem}")
    print("verified: output matches its manifest" if not problems else f"{len(problems)} problem(s)")
    return 0 if not problems else 1


def _index_ids(path: Path, count: int) -> list | None:
    """The ids an index's vectors stand for (ids.json, written by embed --index), or None where there is none."""
    if not path.is_file():
        return None
    try:
        ids = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(ids, list) or len(ids) != count:
        got = f"a list of {len(ids)}" if isinstance(ids, list) else f"a JSON {type(ids).__name__}"
        raise ValueError(f"{path} must be a list of the index's {count} ids, got {got}")
    return ids


def cmd_search(args) -> int:
    from fastembed_rt.engine import load_embedder
    from fastembed_rt.readers import read_corpus
    from fastembed_rt.search import Index

    if (args.query is None) == (args.queries is None):
        raise ValueError("give either --query TEXT or --queries FILE")
    index = Index.load(args.index)
    model = load_embedder(args.model, revision=args.revision)
    if model.dimension != index.dim:
        raise ValueError(f"model {args.model} makes {model.dimension}-d vectors, the index holds {index.dim}-d")
    queries = read_corpus(Path(args.queries)) if args.queries else None
    texts = queries.texts if queries else [args.query]
    scores, ids = index.search(model.encode(texts, normalize=True), k=args.k, rescore_multiplier=args.rescore_multiplier)
    names = _index_ids(Path(args.index) / "ids.json", len(index))
    if queries is None:
        for rank, (score, i) in enumerate(zip(scores[0], ids[0]), start=1):
            print(f"{rank:>3}  {score:.4f}  {names[i] if names else i}")
        return 0
    # one jsonl row per query, the input of `fastembed-rt rerank --input` (with --corpus for the texts)
    for q, text in enumerate(texts):
        candidates = [{"id": names[i] if names else int(i), "score": round(float(s), 6)} for s, i in zip(scores[q], ids[q]) if i >= 0]
        row = {"id": queries.ids[q]} if queries.ids else {}
        print(json.dumps({**row, "query": text, "candidates": candidates}, ensure_ascii=False))
    return 0


def cmd_rerank(args) -> int:
    import fastembed_rt
    from fastembed_rt.readers import read_corpus

    from fastembed_rt.colbert import is_colbert_model
    from fastembed_rt.loading import resolve_model

    if (args.query is None) == (args.input is None):
        raise ValueError("give either --query TEXT with --documents FILE, or --input FILE (jsonl of {query, candidates})")
    if args.input is not None and args.out is not None and Path(args.out).resolve() == Path(args.input).resolve():
        raise ValueError(f"--out {args.out} is the --input file: the results would replace the candidates; use another --out")
    root, _ = resolve_model(args.model, args.revision)
    late = is_colbert_model(root)  # a ColBERT reranks by MaxSim of token vectors
    if late and (args.raw_scores or args.truncate):
        raise ValueError(f"{args.model} is a ColBERT model: its scores are MaxSim (--raw-scores does not apply) and it "
                         "truncates queries and documents to its own lengths (--truncate does not apply)")  # fmt: skip
    if late:
        reranker = fastembed_rt.load_colbert(root, device=args.device, dtype=args.dtype)
    else:
        reranker = fastembed_rt.load_reranker(args.model, device=args.device, dtype=args.dtype, revision=args.revision,
                                              instruction=args.instruction)  # fmt: skip
    if args.query is not None:
        if args.documents is None:
            raise ValueError("--query needs --documents FILE (txt: one document per line; jsonl: a \"text\" field)")
        documents = read_corpus(Path(args.documents), text_field=args.text_field, id_field=args.id_field)
        if late:
            ranked = reranker.rank(args.query, documents.texts, top_k=args.k, batch_tokens=args.batch_tokens)
        else:
            ranked = reranker.rank(args.query, documents.texts, top_k=args.k, raw_scores=args.raw_scores,
                                   truncate=args.truncate, batch_tokens=args.batch_tokens)  # fmt: skip
        for rank, r in enumerate(ranked, start=1):
            name = documents.ids[r["corpus_id"]] if documents.ids else r["corpus_id"]
            text = documents.texts[r["corpus_id"]].replace("\n", " ")
            print(f"{rank:>3}  {r['score']:.4f}  {name}  {text[:80]}")
        return 0
    from tqdm import tqdm

    from fastembed_rt.rerank_jobs import rerank_file

    if args.out is None:
        raise ValueError("--input needs --out FILE.jsonl")
    source = Path(args.input)
    corpus = None
    if args.corpus:
        read = read_corpus(Path(args.corpus), text_field=args.text_field, id_field=args.id_field)
        corpus = dict(zip(read.ids or map(str, range(len(read.texts))), read.texts))
    with open(source, "rb") as f:
        rows = sum(1 for line in f if line.strip())
    bar = tqdm(total=rows, unit="query", disable=args.quiet, file=sys.stderr)
    start = time.perf_counter()
    totals = rerank_file(reranker, source, Path(args.out), corpus=corpus, top_k=args.k, return_documents=args.return_documents,
                         raw_scores=args.raw_scores, truncate=args.truncate, batch_tokens=args.batch_tokens,
                         on_rows=lambda queries, pairs: bar.update(queries))  # fmt: skip
    bar.close()
    elapsed = time.perf_counter() - start
    print(f"reranked   {totals.rows:,} queries, {totals.pairs:,} pairs, {totals.tokens:,} tokens in {elapsed:.2f} s "
          f"({totals.pairs / max(elapsed, 1e-9):,.0f} pairs/s)")  # fmt: skip
    print(f"output     {args.out}")
    return 0


def cmd_eval(args) -> int:
    from fastembed_rt import evaluation
    from fastembed_rt.colbert import ColBERT
    from fastembed_rt.engine import load_embedder
    from fastembed_rt.sparse_encoder import SparseEncoder

    model = load_embedder(args.model, dtype=args.dtype, revision=args.revision, sparse=True, multivector=True)
    sparse, multivector = isinstance(model, SparseEncoder), isinstance(model, ColBERT)
    if args.hybrid_with and not sparse:
        raise ValueError("--hybrid-with pairs a sparse --model with a dense one; --model is not sparse")
    path = Path(args.data)
    if path.is_file():
        if sparse or multivector:
            raise ValueError(f"{path} is an STS file, scored by cosine of dense vectors; a {'sparse' if sparse else 'ColBERT'} "
                             "model is evaluated on BEIR retrieval")  # fmt: skip
        result = evaluation.evaluate_sts(model, path)
        print(f"STS {path.name}: {result['pairs']} pairs, Spearman {result['spearman']:.2f}")
        return 0
    corpus, queries, qrels = evaluation.read_beir(path)
    if sparse:
        dense = load_embedder(args.hybrid_with, dtype=args.dtype) if args.hybrid_with else None
        result = evaluation.evaluate_sparse_retrieval(model, corpus, queries, qrels, args.drop_self, dense, args.hybrid_method)
    elif multivector:
        result = evaluation.evaluate_multivector_retrieval(model, corpus, queries, qrels, args.drop_self)
    else:
        result = evaluation.evaluate_retrieval(model, corpus, queries, qrels, args.precision.split(","), args.drop_self,
                                               args.rescore_multiplier)  # fmt: skip
    print(f"retrieval {path.name}: {result['queries']} queries, {result['documents']} documents")
    print(f"  {'index':<20}{'nDCG@10':>9}{'recall@100':>12}")
    for name, m in result["results"].items():
        print(f"  {name:<20}{m['ndcg@10']:>9.2f}{m['recall@100']:>12.2f}")
    return 0


def print_models() -> None:
    from fastembed_rt.models.heads import HEADS
    from fastembed_rt.models.registry import ARCHITECTURES

    rows = [("model_type", "attention", "positions", "default pooling", "reranker head")]
    rows += [(name, arch.attention, arch.positions, arch.pooling, HEADS.get(name, "none")) for name, arch in ARCHITECTURES.items()]
    widths = [max(len(row[i]) for row in rows) + 2 for i in range(4)]
    for row in rows:
        print("".join(cell.ljust(width) for cell, width in zip(row, widths)) + row[4])


def cmd_info(args) -> int:
    if args.models:
        print_models()
        return 0
    import numpy
    import tokenizers
    import torch

    import fastembed_rt
    from fastembed_rt import _C, ops
    from fastembed_rt.models.registry import ARCHITECTURES

    print(f"fastembed_rt {fastembed_rt.__version__}")
    print(f"python       {platform.python_version()}")
    print(f"torch        {torch.__version__} (threads: {torch.get_num_threads()})")
    print(f"tokenizers   {tokenizers.__version__}")
    print(f"numpy        {numpy.__version__}")
    from fastembed_rt import isa

    features = _C.cpu_features()
    print(f"cpu          {platform.machine()}: " + " ".join(name for name, present in features.items() if present))
    capped = f" (capped by FASTEMBED_RT_ISA; the CPU runs {', '.join(_C.supported_isas())})" if isa.requested() != "auto" else ""
    print(f"isa          {isa.active()}{capped}")
    print("precisions:")
    for precision, path in ops.precision_paths().items():
        print(f"  {precision:<10}{path}")
    print(f"cuda         {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'not available'}")
    print(f"reference    {'forced (FASTEMBED_RT_REFERENCE)' if ops.reference_only() else 'off'}")
    devices = [("cpu", torch.float32), ("cpu", torch.bfloat16)]
    if torch.cuda.is_available():
        devices += [("cuda", torch.float16), ("cuda", torch.bfloat16)]
    print("ops:")
    width = max(len(op) for op in ops.implementation_table()) + 2
    header = "  " + "op".ljust(width) + "".join(f"{d}/{str(t).split('.')[-1]}".ljust(18) for d, t in devices)
    print(header)
    for op in ops.implementation_table():
        row = [ops.implementation_table(d, t)[op] for d, t in devices]
        print("  " + op.ljust(width) + "".join(name.ljust(18) for name in row))
    from fastembed_rt.models.bert import FUSED_MAX_TOKENS

    fused = f"on ({isa.active()} kernels)" if _C.fused_encoder_supported("float32") else "off (needs AVX2)"
    print(f"fused encoder  {fused}: batches of <= {FUSED_MAX_TOKENS} tokens of float32, bfloat16 and int8 models in one C++ call")
    print(f"architectures  {', '.join(ARCHITECTURES)} (fastembed-rt info --models for details)")
    return 0


def cmd_serve(args) -> int:
    import os

    from fastembed_rt.server import ServerConfig, serve

    config = ServerConfig(
        host=args.host, port=args.port, max_batch_tokens=args.max_batch_tokens, max_batch_texts=args.max_batch_texts,
        max_wait_ms=args.max_wait_ms, max_concurrent_requests=args.max_concurrent_requests,
        max_client_batch_size=args.max_client_batch_size, max_request_bytes=args.max_request_bytes,
        max_connections=args.max_connections, header_timeout=args.header_timeout, body_timeout=args.body_timeout,
        auto_truncate=args.auto_truncate, api_key=args.api_key if args.api_key is not None else os.environ.get("FASTEMBED_RT_API_KEY"),
        served_model_name=args.served_model_name, tokenizer_workers=args.tokenizer_workers,
    )  # fmt: skip
    models = args.model or ([] if args.reranker else ["all-MiniLM-L6-v2"])
    serve(models, config, rerankers=args.reranker, device=args.device, dtype=args.dtype, revision=args.revision,
          log_level=args.log_level)  # fmt: skip
    return 0


def cmd_bench(args) -> int:
    import torch

    import fastembed_rt
    from fastembed_rt import benchmark
    from fastembed_rt.engine import resolve_device
    from fastembed_rt.validation import positive_int

    if args.plot:  # before minutes of measuring
        if args.e2e:
            raise ValueError("--plot draws the op benchmarks; run it without --e2e")
        from fastembed_rt.plots import pyplot

        pyplot()
    for option, value in (("--threads", args.threads), ("--limit", args.limit)):
        if value is not None:
            positive_int(value, option)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    versions = f"fastembed_rt {fastembed_rt.__version__}, torch {torch.__version__}"
    name = benchmark.device_name(device)
    print(f"device: {name}; {versions}")
    if args.e2e:
        from fastembed_rt.readers import read_corpus

        texts = read_corpus(Path(args.corpus) if args.corpus else sample_corpus_path()).texts[: args.limit]
        if not texts:
            raise ValueError(f"--e2e needs at least one text; {args.corpus or 'the sample corpus'} has none")
        result = benchmark.e2e(texts, torch.get_num_threads(), args.model, args.revision)
        print(f"end to end: {result['texts']:,} texts, {result['tokens']:,} tokens, {result['threads']} threads")
        print(f"  {'':32}{'tokens/s':>10}{'texts/s':>9}{'ratio':>7}{'query ms':>10}")
        for system, row in result["rows"].items():
            print(f"  {system:32}{row['tokens_per_s']:>10,.0f}{row['texts_per_s']:>9.1f}{row['ratio']:>7.2f}{row['query_ms']:>10.2f}")
        rows = [["e2e", system, "", f"{result['tokens']} tokens", round(1000 * result["tokens"] / row["tokens_per_s"], 3),
                 round(row["tokens_per_s"]), "tokens/s", round(row["ratio"], 3), ""] for system, row in result["rows"].items()]  # fmt: skip
    else:
        ceilings = benchmark.measure_ceilings(device)
        print("ceilings: " + ", ".join(f"{k} {v:,.0f}" for k, v in ceilings.items()))
        only = set(args.ops.split(",")) if args.ops else None
        results = benchmark.run_op_benchmarks(device, ceilings, args.repeats, only)
        print(benchmark.format_table(results))
        if args.plot:
            from fastembed_rt.plots import ops_chart

            title = f"fastembed-rt bench: {name}, {versions}, ISA {fastembed_rt.isa.active()}"
            print(f"chart: {ops_chart(results, ceilings, title, args.plot)}")
        rows = [[r.op, r.implementation, r.dtype, r.shape, round(r.ms, 4), round(r.throughput, 2), r.unit,
                 round(r.ceiling_percent, 2), r.max_abs_error] for r in results]  # fmt: skip
    benchmark.append_csv(Path(args.csv), ["device", "versions", *BENCH_COLUMNS], [[name, versions, *row] for row in rows])
    print(f"appended {len(rows)} rows to {args.csv}")
    return 0


# Columns of `fastembed-rt bench` rows after date, isa, device and versions.
BENCH_COLUMNS = ["op", "implementation", "dtype", "shape", "ms", "rate", "unit", "percent_of_ceiling", "max_abs_error"]


DTYPE_HELP = "model weights: float32 (default), bfloat16, float16, or int8 (int8 linear layers)"


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="all-MiniLM-L6-v2",
                        help="a model directory, a bundled name, or a Hugging Face Hub id (owner/name: downloaded once "
                             "into the Hub cache; HF_HUB_OFFLINE=1 reads the cache only)")  # fmt: skip
    parser.add_argument("--revision", help="with a Hub id: a branch, tag or commit (default: main)")


def cmd_download(args) -> int:
    from fastembed_rt.hub import fetch

    model = fetch(args.model, args.revision, args.local_dir)
    print(f"{model.repo_id} at commit {model.commit}: {model.path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastembed-rt", description="A high-performance text-embedding runtime.")
    sub = parser.add_subparsers(dest="command", required=True)

    embed = sub.add_parser("embed", help="embed a corpus file (txt, jsonl, parquet) into npy or parquet")
    embed.add_argument("input", nargs="?", help="input file, directory or glob; default: the bundled sample corpus")
    add_model_arguments(embed)
    embed.add_argument("--out", default="out/embeddings.npy",
                       help="a .npy/.parquet file, or a directory for a resumable sharded job (default: out/embeddings.npy)")  # fmt: skip
    embed.add_argument("--format", choices=("npy", "parquet"), help="default: from --out's suffix, else npy")
    embed.add_argument("--text-field", default="text", help="jsonl field / parquet column holding the text")
    embed.add_argument("--id-field", default="id", help="jsonl field / parquet column holding the id")
    embed.add_argument("--batch-tokens", type=int, help="token budget per batch")
    embed.add_argument("--prompt-name", help="a prompt from the model's config_sentence_transformers.json")
    embed.add_argument("--truncate-dim", type=int, help="keep the first N dimensions (Matryoshka)")
    embed.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None,
                       help="L2-normalize (default: as the model says)")  # fmt: skip
    embed.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    embed.add_argument("--dtype", help=DTYPE_HELP)
    embed.add_argument("--quiet", action="store_true", help="no progress bar")
    embed.add_argument("--precision", default="float32", help="sharded jobs: float32, float16, int8, uint8, binary, ubinary")
    embed.add_argument("--shard-size", type=int, default=102_400, help="sharded jobs: rows per shard, a multiple of --chunk-size")
    embed.add_argument("--chunk-size", type=int, default=4096, help="sharded jobs: texts tokenized at a time")
    embed.add_argument("--on-error", choices=("stop", "skip"), default="stop", help="a bad input row: stop with file:line, or skip and count")
    embed.add_argument("--overwrite", action="store_true", help="replace a different job in --out")
    embed.add_argument("--engine", choices=("local", "ray"), default="local")
    embed.add_argument("--ray-address", help="an existing Ray cluster (default: start a local one)")
    embed.add_argument("--index", help="also build a search index in this directory")
    embed.add_argument("--index-precision", choices=("float32", "int8", "binary"), default="float32")
    embed.set_defaults(run=cmd_embed)

    verify = sub.add_parser("verify", help="check a sharded output against its manifest and inputs")
    verify.add_argument("out", help="output directory of embed")
    verify.add_argument("--skip-inputs", action="store_true", help="only files, checksums and counts")
    verify.set_defaults(run=cmd_verify)

    search = sub.add_parser("search", help="search an index built by embed --index")
    search.add_argument("index", help="index directory")
    search.add_argument("--query", help="one query: a ranked table")
    search.add_argument("--queries", help="a file of queries (txt, jsonl): one jsonl row {id, query, candidates} each, "
                        "the input of rerank --input")
    search.add_argument("-k", type=int, default=10)
    search.add_argument("--rescore-multiplier", type=int, default=4, help="0: rank by the quantized scores alone")
    add_model_arguments(search)
    search.set_defaults(run=cmd_search)

    rerank = sub.add_parser("rerank", help="rerank documents for a query, or a jsonl of {query, candidates} rows")
    rerank.add_argument("model", help="a cross-encoder, an LLM reranker or a ColBERT model: a directory or a Hugging Face Hub id")
    rerank.add_argument("--revision", help="with a Hub id: a branch, tag or commit (default: main)")
    rerank.add_argument("--query", help="one query, with --documents: a ranked table")
    rerank.add_argument("--documents", help="the query's documents: txt (one per line), jsonl, csv or parquet")
    rerank.add_argument("--input", help="jsonl rows {query, candidates: [text | {id, text?}]} (e.g. search --queries)")
    rerank.add_argument("--out", help="with --input: the reranked rows, jsonl {..., results: [{index, id, score}]}")
    rerank.add_argument("--corpus", help="with --input: the texts of candidates given by id (txt, jsonl, csv, parquet)")
    rerank.add_argument("--text-field", default="text", help="jsonl field / parquet column of --documents / --corpus texts")
    rerank.add_argument("--id-field", default="id", help="jsonl field / parquet column of their ids")
    rerank.add_argument("-k", type=int, help="keep the best K per query (default: all)")
    rerank.add_argument("--return-documents", action="store_true", help="with --input: each result carries its text")
    rerank.add_argument("--raw-scores", action="store_true", help="logits instead of the model's activation")
    rerank.add_argument("--truncate", action="store_true", help="cut a query too long to leave room for its document")
    rerank.add_argument("--instruction", help="LLM rerankers' task instruction (default: the model card's)")
    rerank.add_argument("--batch-tokens", type=int, help="token budget per batch")
    rerank.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    rerank.add_argument("--dtype", help=DTYPE_HELP)
    rerank.add_argument("--quiet", action="store_true", help="no progress bar")
    rerank.set_defaults(run=cmd_rerank)

    evaluate = sub.add_parser("eval", help="STS (a TSV file) or BEIR retrieval (a directory) quality")
    evaluate.add_argument("data", help="STS TSV (score, s1, s2) or BEIR directory (corpus.jsonl, queries.jsonl, qrels/test.tsv)")
    add_model_arguments(evaluate)
    evaluate.add_argument("--dtype", help=DTYPE_HELP)
    evaluate.add_argument("--precision", default="float32,int8,binary", help="index precisions to compare")
    evaluate.add_argument("--drop-self", action="store_true", help="ignore a hit whose id equals the query id (ArguAna)")
    evaluate.add_argument("--rescore-multiplier", type=int, default=4)
    evaluate.add_argument("--hybrid-with", metavar="DENSE_MODEL",
                          help="with a sparse --model: also score this dense model and the hybrid of the two")
    evaluate.add_argument("--hybrid-method", choices=["rrf", "weighted"], default="rrf")
    evaluate.set_defaults(run=cmd_eval)

    bench = sub.add_parser("bench", help="time every op implementation against the reference and this machine's ceilings")
    bench.add_argument("--ops", help="comma-separated ops (default: all)")
    add_model_arguments(bench)  # --e2e's model
    bench.add_argument("--device", default="cpu")
    bench.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    bench.add_argument("--repeats", type=int, default=10, help="timed calls per implementation (median)")
    bench.add_argument("--csv", default="fastembed_rt_bench.csv", help="results are appended here")
    bench.add_argument("--plot", metavar="FILE.png", help="also draw each op's rate against this run's ceilings")
    bench.add_argument("--e2e", action="store_true", help="the whole model at each precision against sentence-transformers")
    bench.add_argument("--corpus", help="--e2e texts (txt, jsonl, csv, parquet); default: the bundled sample corpus")
    bench.add_argument("--limit", type=int, help="--e2e: first N texts only")
    bench.set_defaults(run=cmd_bench)

    serve = sub.add_parser("serve", help="an HTTP API (OpenAI, TEI, Cohere and vLLM routes) with dynamic batching")
    serve.add_argument("--model", action="append",
                       help="a model to serve (repeat for several): an embedding model or a cross-encoder; a directory, a "
                            "bundled name or a Hugging Face Hub id (default: all-MiniLM-L6-v2 when no --reranker is given)")
    serve.add_argument("--reranker", action="append", default=[],
                       help="a reranker to serve (repeat for several), LLM rerankers (yes/no logits) included")
    serve.add_argument("--revision", help="with Hub ids: a branch, tag or commit (default: main)")
    serve.add_argument("--served-model-name", help="with one model: the name responses and /info report (default: its Hub id or folder name)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    serve.add_argument("--port", type=int, default=8080, help="0: any free port (printed when ready)")
    serve.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    serve.add_argument("--dtype", help=DTYPE_HELP)
    serve.add_argument("--max-batch-tokens", type=int, default=4096, help="packed tokens per model batch")
    serve.add_argument("--max-batch-texts", type=int, default=512, help="texts per model batch")
    serve.add_argument("--max-wait-ms", type=float, default=2.0,
                       help="longest a partial batch waits for texts still being tokenized")  # fmt: skip
    serve.add_argument("--max-concurrent-requests", type=int, default=512, help="more in flight get 429")
    serve.add_argument("--max-client-batch-size", type=int, default=512, help="more inputs in one request get 413")
    serve.add_argument("--max-request-bytes", type=int, default=4 * 1024 * 1024, help="a larger body gets 413")
    serve.add_argument("--max-connections", type=int, default=1024, help="open connections; a request on more gets 503")
    serve.add_argument("--header-timeout", type=float, default=10.0,
                       help="seconds a request's headers may take (from its first byte); then 408 and the connection closed")
    serve.add_argument("--body-timeout", type=float, default=30.0,
                       help="seconds a request's body may take after its headers; then 408 and the connection closed")
    serve.add_argument("--auto-truncate", action="store_true", help="truncate over-long inputs instead of answering 413")
    serve.add_argument("--api-key", help="require 'Authorization: Bearer KEY' on every route but /health "
                       "(default: $FASTEMBED_RT_API_KEY if set)")  # fmt: skip
    serve.add_argument("--tokenizer-workers", type=int, default=1, help="threads tokenizing requests")
    serve.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"))
    serve.set_defaults(run=cmd_serve)

    download = sub.add_parser("download", help="fetch a model from the Hugging Face Hub ahead of time (what we read only)")
    download.add_argument("model", help="Hub id, owner/name")
    download.add_argument("--revision", help="a branch, tag or commit (default: main)")
    download.add_argument("--local-dir", help="copy the files into this folder (to carry to an air-gapped machine) instead of the cache")
    download.set_defaults(run=cmd_download)

    info = sub.add_parser("info", help="versions, CPU features and the implementation each op uses")
    info.add_argument("--models", action="store_true", help="every supported architecture: attention, positions, pooling")
    info.set_defaults(run=cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (OSError, ValueError, TypeError, KeyError) as e:
        print(f"fastembed-rt: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
