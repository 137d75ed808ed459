"""Offline corpus jobs: stream any number of texts through the model into sharded outputs that survive a
crash and resume where they stopped.

    reader thread ─ records, tokenized in chunks ─▶ [bounded queue] ─▶ model (this thread) ─▶ [bounded queue]
        ─▶ writer thread ─ full shards, each written atomically, then manifest.json updated atomically

Shards hold `shard_size` rows (a multiple of the chunk size), so a shard boundary is also a chunk boundary:
a resumed run skips the input rows of the complete shards and forms exactly the batches an uninterrupted
run would have, giving the same vectors.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import queue
import shutil
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .quantize import quantization_ranges, quantize_embeddings
from .readers import ReadStats, Record, input_files, iter_records
from .colbert import ColBERT
from .multivector import MultiVectorEmbeddings
from .sparse import SparseEmbeddings
from .sparse_encoder import SparseEncoder

OUTPUT_PRECISIONS = ("float32", "float16", "int8", "uint8", "binary", "ubinary")
FORMATS = ("parquet", "npy")
MANIFEST = "manifest.json"
FORMAT_VERSION = 2  # 2: each shard lists the digests of its input rows
DIGESTS_SUFFIX = ".inputs.npy"


@dataclass(frozen=True)
class JobOptions:
    """Everything that decides the output; a resumed run must match these exactly."""

    precision: str = "float32"
    format: str = "parquet"
    text_field: str = "text"
    id_field: str | None = "id"
    prompt: str = ""
    normalize: bool | None = None
    truncate_dim: int | None = None
    shard_size: int = 102_400  # 25 chunks
    chunk_size: int = 4096
    on_error: str = "stop"

    def __post_init__(self):
        if self.precision not in OUTPUT_PRECISIONS:
            raise ValueError(f"unsupported precision {self.precision!r}; supported: {', '.join(OUTPUT_PRECISIONS)}")
        if self.format not in FORMATS:
            raise ValueError(f"unsupported format {self.format!r}; supported: {', '.join(FORMATS)}")
        if self.chunk_size < 1 or self.shard_size < self.chunk_size or self.shard_size % self.chunk_size:
            raise ValueError(f"shard_size ({self.shard_size}) must be a positive multiple of chunk_size ({self.chunk_size})")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def text_digest(text: str) -> int:
    """64-bit digest of a text as read (lone surrogates included)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


def row_digest(row_id: str, text_hash: int) -> int:
    """64-bit digest of an input row (its id and its text's digest): what a shard records of each row it was
    made from, so that a resume or verify notices an input that changed since, even at the same size."""
    data = row_id.encode("utf-8", "surrogatepass") + b"\0" + text_hash.to_bytes(8, "little")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def record_digest(record: Record) -> int:
    return row_digest(record.id, text_digest(record.text))


def model_revision(path: Path) -> str:
    """sha256 over the model directory's files (names and contents): the weights a job's vectors came from."""
    digest = hashlib.sha256()
    for f in sorted(p for p in Path(path).rglob("*") if p.is_file() and not p.name.startswith(".")):
        digest.update(str(f.relative_to(path)).encode())
        digest.update(sha256_file(f).encode())
    return digest.hexdigest()


def write_atomically(path: Path, write) -> None:
    """write(tmp_path), fsync, rename over `path`, fsync the directory: a reader sees all or nothing."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _embedding_array(vectors: np.ndarray):
    import pyarrow as pa

    kinds = {np.float32: pa.float32(), np.float16: pa.float16(), np.int8: pa.int8(), np.uint8: pa.uint8()}
    flat = pa.array(vectors.reshape(-1), type=kinds[vectors.dtype.type])
    return pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])


def _sparse_columns(vectors: SparseEmbeddings) -> dict:
    """indices list<int32> and values list<float32>, one list per row."""
    import pyarrow as pa

    offsets = pa.array(vectors.indptr.astype(np.int32))
    return {"indices": pa.ListArray.from_arrays(offsets, pa.array(vectors.indices, type=pa.int32())),
            "values": pa.ListArray.from_arrays(offsets, pa.array(vectors.values, type=pa.float32()))}  # fmt: skip


def _multivector_columns(vectors: MultiVectorEmbeddings) -> dict:
    """vectors list<fixed_size_list<float32 | int8>[dim]>, one list of token vectors per row; with int8 codes, their
    scales list<float32>."""
    import pyarrow as pa

    offsets = pa.array(vectors.offsets.astype(np.int32))
    columns = {"vectors": pa.ListArray.from_arrays(offsets, _embedding_array(vectors.vectors))}
    if vectors.scales is not None:
        columns["scales"] = pa.ListArray.from_arrays(offsets, pa.array(vectors.scales, type=pa.float32()))
    return columns


def write_shard(directory: Path, index: int, fmt: str, ids: list[str],
                vectors: np.ndarray | SparseEmbeddings | MultiVectorEmbeddings, digests: np.ndarray) -> list[dict]:  # fmt: skip
    """Writes one shard atomically, then the digests of its input rows (shard-N.inputs.npy, uint64); returns its
    files as {file, sha256}, the digests last. Sparse vectors: parquet only, columns indices and values;
    multi-vector (ColBERT) ones: parquet only, column vectors (and scales for int8 codes)."""
    written = []
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        name = f"shard-{index:05d}.parquet"
        if isinstance(vectors, SparseEmbeddings):
            columns = _sparse_columns(vectors)
        elif isinstance(vectors, MultiVectorEmbeddings):
            columns = _multivector_columns(vectors)
        else:
            columns = {"embedding": _embedding_array(vectors)}
        table = pa.table({"id": pa.array(ids, type=pa.string()), **columns})
        # No dictionary for the vectors: it never pays for floats and costs a large hash table per shard.
        write_atomically(directory / name, lambda p: pq.write_table(table, p, use_dictionary=["id"]))
        del table
        pa.default_memory_pool().release_unused()  # arrow's allocator would otherwise keep every shard's peak
        written.append(name)
    else:
        name, ids_name = f"shard-{index:05d}.npy", f"shard-{index:05d}.ids.json"
        write_atomically(directory / ids_name, lambda p: p.write_text(json.dumps(ids)))
        write_atomically(directory / name, lambda p: _save_npy(p, vectors))
        written += [ids_name, name]
    digests_name = f"shard-{index:05d}{DIGESTS_SUFFIX}"
    write_atomically(directory / digests_name, lambda p: _save_npy(p, digests.astype("<u8")))
    written.append(digests_name)
    return [{"file": f, "sha256": sha256_file(directory / f)} for f in written]


def read_digests(directory: Path, shard: dict) -> np.ndarray:
    return np.load(directory / shard["files"][-1]["file"])


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:  # a file object: np.save would add ".npy" to the temporary name
        np.save(f, array)


def read_shard(directory: Path, shard: dict, dimension: int | None = None
               ) -> tuple[list[str], np.ndarray | SparseEmbeddings | MultiVectorEmbeddings]:  # fmt: skip
    """(ids, vectors) of a shard as the manifest lists it; sparse shards as SparseEmbeddings of the manifest's
    `dimension` (their vocabulary), multi-vector shards as MultiVectorEmbeddings."""
    files = [f["file"] for f in shard["files"]]
    if files[0].endswith(".parquet"):
        import pyarrow.parquet as pq

        table = pq.read_table(directory / files[0])
        if "indices" in table.column_names:
            if not isinstance(dimension, int):
                raise ValueError(f"{files[0]}: a sparse shard, but the manifest gives no dimension (vocabulary size)")
            indices, values = table.column("indices").combine_chunks(), table.column("values").combine_chunks()
            vectors = SparseEmbeddings(indices.offsets.to_numpy(), indices.values.to_numpy(), values.values.to_numpy(), dimension)
            return table.column("id").to_pylist(), vectors
        if "vectors" in table.column_names:
            lists = table.column("vectors").combine_chunks()
            tokens = lists.values
            flat = tokens.values.to_numpy(zero_copy_only=False).reshape(-1, tokens.type.list_size)
            scales = None
            if "scales" in table.column_names:
                scales = table.column("scales").combine_chunks().values.to_numpy(zero_copy_only=False)
            return table.column("id").to_pylist(), MultiVectorEmbeddings(flat, lists.offsets.to_numpy().astype(np.int64), scales)
        embedding = table.column("embedding").combine_chunks()
        width = embedding.type.list_size
        vectors = embedding.values.to_numpy(zero_copy_only=False).reshape(-1, width)
        return table.column("id").to_pylist(), vectors
    ids = json.loads((directory / files[0]).read_text())
    return ids, np.load(directory / files[1])


class _Progress:
    """A progress bar on a terminal (texts, tokens/s, ETA from the bytes read); log lines otherwise."""

    def __init__(self, total_bytes: int, enabled: bool, interval: float = 10.0):
        self.enabled, self.interval = enabled, interval
        self.start = self.last_log = time.perf_counter()
        self.texts = self.tokens = 0
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total_bytes, unit="B", unit_scale=True, file=sys.stderr)

    def update(self, texts: int, tokens: int, bytes_read: int) -> None:
        self.texts += texts
        self.tokens += tokens
        rate = self.tokens / max(time.perf_counter() - self.start, 1e-9)
        if self.bar is not None:
            self.bar.n = bytes_read
            self.bar.set_postfix_str(f"{self.texts:,} texts, {rate:,.0f} tokens/s")
        elif self.enabled and time.perf_counter() - self.last_log >= self.interval:
            self.last_log = time.perf_counter()
            print(f"fastembed-rt: {self.texts:,} texts, {rate:,.0f} tokens/s, {bytes_read:,} bytes read", file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    """Blocking put that gives up when the job is stopping (so no thread hangs on a full queue)."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue, stop: threading.Event):
    while True:
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            if stop.is_set():
                return None


class ShardSink:
    """Takes float vectors in input order, converts them to the job's precision (int8/uint8 calibrated once, on
    the job's first chunk) and writes a shard each time `shard_size` rows are pending; the manifest follows
    each shard. The local pipeline and the Ray driver both write through it."""

    def __init__(self, out: Path, manifest: dict, options: JobOptions):
        self.out, self.manifest, self.options = out, manifest, options
        shards = manifest["shards"]
        self.start_position = shards[-1]["last_position"] + 1 if shards else 0
        self.ranges = None if manifest.get("ranges") is None else np.asarray(manifest["ranges"], dtype=np.float32)
        self.ids: list[str] = []
        self.digests: list[int] = []
        self.vectors: list[np.ndarray] = []
        self.first = self.last = self.start_position

    def add(self, ids: list[str], last_position: int, vectors: np.ndarray, digests: list[int]) -> None:
        """Rows in input order: their ids, the position of the last, their vectors and their row_digests."""
        calibrated = isinstance(vectors, np.ndarray)  # int8 token codes of multi-vector rows carry their own scales
        if calibrated and self.options.precision in ("int8", "uint8") and self.ranges is None:
            self.ranges = quantization_ranges(vectors)
            self.manifest["ranges"] = self.ranges.tolist()
        self.ids += ids
        self.digests += digests
        if isinstance(vectors, MultiVectorEmbeddings):
            vectors = vectors.quantize() if self.options.precision == "int8" else vectors
        elif not isinstance(vectors, SparseEmbeddings):
            vectors = _to_precision(vectors, self.options.precision, self.ranges)
        self.vectors.append(vectors)
        self.last = last_position
        if len(self.ids) >= self.options.shard_size:
            self.flush()

    def flush(self) -> None:
        if not self.ids:
            return
        index = len(self.manifest["shards"])
        digests = np.array(self.digests, dtype=np.uint64)
        first = self.vectors[0]
        if isinstance(first, (SparseEmbeddings, MultiVectorEmbeddings)):
            vectors = type(first).concatenate(self.vectors)
        else:
            vectors = np.concatenate(self.vectors)
        files = write_shard(self.out, index, self.options.format, self.ids, vectors, digests)
        self.manifest["shards"].append({"files": files, "rows": len(self.ids), "first_position": self.first, "last_position": self.last})
        _save_manifest(self.out, self.manifest)
        self.ids, self.digests, self.vectors, self.first = [], [], [], self.last + 1


class InputChanged(ValueError):
    """The input a job resumes from (or is verified against) is not the one its shards were made from."""


class InputCheck:
    """Compares the input rows, as they are read again, with the digests of the rows the shards were made from
    (in order, shard after shard); the first row that differs is named."""

    def __init__(self, out: Path, shards: list[dict]):
        self.out, self.shards = out, shards
        self.shard, self.row, self.digests = -1, 0, np.empty(0, np.uint64)
        self.total = sum(s["rows"] for s in shards)
        self.checked = 0

    def _next_digest(self) -> int | None:
        while self.row == len(self.digests):
            if self.shard + 1 == len(self.shards):
                return None
            self.shard, self.row = self.shard + 1, 0
            self.digests = read_digests(self.out, self.shards[self.shard])
        self.row += 1
        return int(self.digests[self.row - 1])

    def check(self, position: int, row_id: str, digest: int, where: str | None = None) -> None:
        """`digest`: the row's row_digest as read now."""
        expected = self._next_digest()
        if expected is None:
            return  # beyond the written rows
        self.checked += 1
        if expected != digest:
            shard = self.shards[self.shard]["files"][0]["file"]
            raise InputChanged(
                f"the input changed since {shard} was written: row {position} (id {row_id!r}"
                f"{', ' + where if where else ''}) is not the row it was made from (edited, reordered or replaced); "
                "restore the input, or start the job again with --overwrite"
            )

    def finish(self) -> None:
        """Called at the first row past the written ones (or the end of the input): were they all there?"""
        if self.checked < self.total:
            raise InputChanged(
                f"the input changed since the job started: its shards were made from {self.total} rows, the input now "
                f"has {self.checked} of them (rows were removed); restore the input, or start the job again with --overwrite"
            )


def open_job(embedder, inputs: str | Path, out_dir: str | Path, options: JobOptions, overwrite: bool) -> tuple[list[Path], dict]:
    """The input files and the manifest to continue (fresh, or the same job's earlier one)."""
    files = input_files(inputs)
    sparse = isinstance(embedder, SparseEncoder)
    multivector = isinstance(embedder, ColBERT)
    if sparse or multivector:
        _check_list_options(options, "multi-vector (ColBERT)" if multivector else "sparse")
    header = {
        "format_version": FORMAT_VERSION,
        "model": str(embedder.spec.path),
        "model_revision": model_revision(embedder.spec.path),
        "hub_id": embedder.spec.hub.repo_id if embedder.spec.hub else None,  # named by its Hub id: which one,
        "hub_commit": embedder.spec.hub.commit if embedder.spec.hub else None,  # at which commit
        "dimension": embedder.dimension if sparse or multivector else embedder.resolve_truncate_dim(options.truncate_dim) or embedder.full_dimension,
        # (keys dense jobs never had: their manifests still resume)
        **({"sparse": True} if sparse else {}), **({"multivector": True} if multivector else {}),
        "inputs": [{"file": str(f), "bytes": f.stat().st_size} for f in files],
        **asdict(options),
        "normalize": multivector or (False if sparse else embedder.spec.normalize if options.normalize is None else options.normalize),
    }
    out = Path(out_dir).resolve()
    inside = next((f for f in files if out in f.resolve().parents), None)
    if inside is not None:
        raise ValueError(f"input {inside} lies inside the output directory {out_dir}: use another --out")
    return files, _open_manifest(Path(out_dir), header, overwrite)


def _check_list_options(options: JobOptions, kind: str) -> None:
    """A sparse model's vectors are float32 weights in parquet lists; a ColBERT model's, lists of float32 (or int8
    codes with scales) token vectors, normalized as the model makes them. Neither is truncated."""
    precisions = ("float32", "int8") if kind != "sparse" else ("float32",)
    if options.precision not in precisions:
        raise ValueError(f"a {kind} model's vectors are written as {' or '.join(precisions)}; precision "
                         f"{options.precision!r} does not apply")  # fmt: skip
    if options.format != "parquet":
        raise ValueError(f"a {kind} model's vectors are written as parquet lists; format {options.format!r} does not apply")
    normalized = kind != "sparse"
    if options.truncate_dim is not None or (options.normalize is not None and options.normalize != normalized):
        raise ValueError(f"truncate_dim and normalize do not apply to a {kind} model's vectors (they are "
                         f"{'always' if normalized else 'never'} normalized)")  # fmt: skip


def finish_job(out: Path, manifest: dict, **totals) -> dict:
    manifest.update(complete=True, rows=sum(s["rows"] for s in manifest["shards"]), **totals)
    manifest["duplicate_ids"] = _count_duplicate_ids(out, manifest)
    _save_manifest(out, manifest)
    return manifest


def embed_corpus(embedder, inputs: str | Path, out_dir: str | Path, options: JobOptions = JobOptions(), *,
                 overwrite: bool = False, progress: bool = True, batch_tokens: int | None = None) -> dict:  # fmt: skip
    """Embeds every text of `inputs` into shards under `out_dir`, resuming a previous run of the same job.
    Returns the finished manifest."""
    out = Path(out_dir)
    files, manifest = open_job(embedder, inputs, out, options, overwrite)
    if manifest.get("complete"):
        return manifest
    sink = ShardSink(out, manifest, options)
    sparse, multivector = isinstance(embedder, SparseEncoder), isinstance(embedder, ColBERT)
    truncate_dim = None if sparse or multivector else embedder.resolve_truncate_dim(options.truncate_dim)
    skip = 0 if multivector else embedder.prompt_skip(options.prompt)

    stats = ReadStats()
    stop = threading.Event()
    tokenized_q: queue.Queue = queue.Queue(maxsize=2)
    vectors_q: queue.Queue = queue.Queue(maxsize=2)

    def read_and_tokenize() -> None:
        try:
            chunk: list[Record] = []
            check = InputCheck(out, manifest["shards"])  # a resumed job reads the rows it has done again first
            for record in iter_records(files, options.text_field, options.id_field, options.on_error, stats):
                if record.position < sink.start_position:
                    check.check(record.position, record.id, record_digest(record), record.where)
                    continue
                check.finish()
                chunk.append(record)
                if len(chunk) == options.chunk_size:
                    if not _put(tokenized_q, (chunk, _tokenize(embedder, chunk, options.prompt), stats.bytes_read), stop):
                        return
                    chunk = []
            check.finish()
            if chunk:
                _put(tokenized_q, (chunk, _tokenize(embedder, chunk, options.prompt), stats.bytes_read), stop)
            _put(tokenized_q, None, stop)
        except BaseException as e:  # handed to the model thread, which re-raises it
            _put(tokenized_q, _Failed(e), stop)

    writer_error: list[BaseException] = []

    def write_shards() -> None:
        try:
            while (item := _get(vectors_q, stop)) is not None:
                records, vectors = item
                sink.add([r.id for r in records], records[-1].position, vectors, [record_digest(r) for r in records])
            if not stop.is_set():  # an interrupted run leaves its partial shard unwritten
                sink.flush()
        except BaseException as e:
            writer_error.append(e)
            stop.set()

    reader = threading.Thread(target=read_and_tokenize, name="fastembed-reader", daemon=True)
    writer = threading.Thread(target=write_shards, name="fastembed-writer", daemon=True)
    reader.start()
    writer.start()
    meter = _Progress(sum(f.stat().st_size for f in files), progress)
    busy = 0.0
    truncated = 0
    started = time.perf_counter()
    try:
        while (item := _get(tokenized_q, stop)) is not None:
            if isinstance(item, _Failed):
                raise item.error
            records, (ids, chunk_truncated), bytes_read = item
            t0 = time.perf_counter()
            if sparse:
                vectors = embedder.embed_token_ids(ids, batch_tokens=batch_tokens)
            elif multivector:  # a corpus is documents
                vectors = embedder.embed_token_ids(ids, is_query=False, batch_tokens=batch_tokens)
            else:
                vectors = embedder.embed_token_ids(ids, skip=skip, normalize=manifest["normalize"], truncate_dim=truncate_dim,
                                                   batch_tokens=batch_tokens)  # fmt: skip
            busy += time.perf_counter() - t0
            truncated += chunk_truncated
            meter.update(len(records), sum(len(x) for x in ids), bytes_read)
            if not _put(vectors_q, (records, vectors), stop):
                break
        _put(vectors_q, None, stop)
        writer.join()
    except BaseException:
        stop.set()
        raise
    finally:
        meter.close()
        stop.set()
        reader.join(timeout=5)
        writer.join(timeout=60)  # let a shard being written finish; it lands whole or not at all
    if writer_error:
        raise writer_error[0]

    wall = time.perf_counter() - started
    return finish_job(
        out, manifest,
        truncated=manifest.get("truncated", 0) + truncated,
        skipped_rows=stats.skipped,  # the reader reads the whole input, resumed or not
        skipped_files=stats.skipped_files,
        replaced_utf8_rows=stats.replaced_utf8,
        empty_texts=stats.empty,
        first_errors=stats.first_errors,
        tokens=manifest.get("tokens", 0) + meter.tokens,
        tokens_per_s=meter.tokens / wall if wall > 0 else 0.0,  # this run's
        model_busy_fraction=busy / wall if wall > 0 else 0.0,
        seconds=wall,
    )  # fmt: skip


def _tokenize(embedder, records: list[Record], prompt: str) -> tuple[list[list[int]], int]:
    texts = [prompt + r.text for r in records] if prompt else [r.text for r in records]
    tokenized = embedder.tokenize(texts, is_query=False) if isinstance(embedder, ColBERT) else embedder.tokenizer.encode(texts)
    return tokenized.ids, tokenized.truncated


def _to_precision(vectors: np.ndarray, precision: str, ranges) -> np.ndarray:
    if precision == "float32":
        return vectors
    if precision == "float16":
        return vectors.astype(np.float16)
    return quantize_embeddings(vectors, precision, ranges=ranges)


def _save_manifest(out: Path, manifest: dict) -> None:
    write_atomically(out / MANIFEST, lambda p: p.write_text(json.dumps(manifest, indent=1)))


def _open_manifest(out: Path, header: dict, overwrite: bool) -> dict:
    """The manifest to continue: a fresh one, or the existing one when it describes this same job."""
    path = out / MANIFEST
    if path.is_file():
        existing, damage = _read_manifest(path)
        differs = damage or sorted(k for k in header if existing.get(k) != header[k])
        if not differs:
            return existing
        if not overwrite:
            raise ValueError(
                f"{path} is damaged or from another version ({damage[0]}); use another directory, or --overwrite to replace it"
                if damage else f"{out} holds a different job (differs in: {', '.join(differs)}); "
                "use another directory, or --overwrite to replace it"
            )  # fmt: skip
        shutil.rmtree(out)
    elif out.exists() and any(out.iterdir()):  # not a job's folder: --overwrite replaces jobs, never other files
        raise ValueError(f"{out} is not empty and has no {MANIFEST}, so it is not an earlier job's output that --overwrite "
                         "may replace; use another directory")  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    manifest = {**header, "ranges": None, "shards": [], "complete": False}
    _save_manifest(out, manifest)
    return manifest


def read_shard_ids(directory: Path, shard: dict) -> list[str]:
    first = shard["files"][0]["file"]
    if first.endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.read_table(directory / first, columns=["id"]).column("id").to_pylist()
    return json.loads((directory / first).read_text())


def _count_duplicate_ids(out: Path, manifest: dict) -> int:
    """Ids written more than once (the rows are all kept; this only reports them). 8 bytes per row."""
    hashes = [
        np.array([int.from_bytes(hashlib.blake2b(i.encode(), digest_size=8).digest(), "little") for i in read_shard_ids(out, shard)],
                 dtype=np.uint64)  # fmt: skip
        for shard in manifest["shards"]
    ]
    if not hashes:
        return 0
    _, counts = np.unique(np.concatenate(hashes), return_counts=True)
    return int((counts - 1).sum())


def verify_output(out_dir: str | Path, check_inputs: bool = True) -> list[str]:
    """Problems found checking a finished output against its manifest (empty: all good): the manifest's shape,
    files present and only those, checksums, row counts, and (check_inputs) the input read again: every row's
    id present once, in input order, and its text the one embedded (the shards' row digests)."""
    out = Path(out_dir)
    path = out / MANIFEST
    if not path.is_file():
        return [f"{path} is missing"]
    manifest, damage = _read_manifest(path)
    if damage:
        return [f"{path}: {p}" for p in damage]
    problems = [] if manifest.get("complete") else ["the job is not complete (run the same command again to resume)"]
    listed = {f["file"] for shard in manifest["shards"] for f in shard["files"]}
    for stray in sorted(p.name for p in out.iterdir() if p.name != MANIFEST and p.name not in listed):
        problems.append(f"{stray} is in the job folder but not in the manifest")
    written_ids: list[str] = []
    for shard in manifest["shards"]:
        damaged = False
        for f in shard["files"]:
            file_path = out / f["file"]
            if not file_path.is_file():
                problems.append(f"{f['file']} is missing")
                damaged = True
            elif sha256_file(file_path) != f["sha256"]:
                problems.append(f"{f['file']}: checksum mismatch (truncated or modified)")
                damaged = True
        if damaged:
            continue
        ids, vectors = read_shard(out, shard, manifest["dimension"])
        digests = read_digests(out, shard)
        if not len(ids) == len(vectors) == len(digests) == shard["rows"]:
            problems.append(f"{shard['files'][0]['file']}: {len(ids)} ids, {len(vectors)} vectors and {len(digests)} row "
                            f"digests, manifest says {shard['rows']} rows")  # fmt: skip
        written_ids += ids
    if check_inputs and not problems:
        problems += _check_inputs(out, manifest, written_ids)
    return problems


def _check_inputs(out: Path, manifest: dict, written_ids: list[str]) -> list[str]:
    """The input read again against the written ids and row digests: the first difference, if any."""
    files = [Path(i["file"]) for i in manifest["inputs"]]
    digests = iter(np.concatenate([read_digests(out, s) for s in manifest["shards"]] or [np.empty(0, np.uint64)]).tolist())
    records = iter_records(files, manifest["text_field"], manifest["id_field"], manifest["on_error"])
    try:
        for position, (record, got) in enumerate(itertools.zip_longest(records, written_ids)):
            if got is None:
                return [f"input id {record.id!r} (row {position}, {record.where}) is missing from the output"]
            if record is None:
                return [f"output id {got!r} (row {position}) is not in the input"]
            if record.id != got:
                return [f"output row {position}: expected id {record.id!r} ({record.where}), found {got!r}"]
            if record_digest(record) != next(digests):
                return [f"input row {position} (id {record.id!r}, {record.where}) changed since it was embedded: "
                        "its text is not the one the vector was made from"]  # fmt: skip
    except (OSError, ValueError) as e:  # a missing or unreadable input file, a bad row: named by the reader
        return [f"cannot read the input again: {e}"]
    return []


def _read_manifest(path: Path) -> tuple[dict | None, list[str]]:
    """A manifest and what is wrong with its shape (nothing: [])."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        return None, [f"not valid JSON ({e})"]
    return manifest, manifest_problems(manifest)


def _is_plain_name(name) -> bool:
    """A file directly in the job folder: no directory part, no '..', not absolute."""
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\\" not in name and "\0" not in name


def manifest_problems(manifest) -> list[str]:
    """What is wrong with a manifest's shape (never trusting it: a file name must stay inside the job folder)."""
    if not isinstance(manifest, dict):
        return [f"expected a JSON object, got {type(manifest).__name__}"]
    problems = []
    expected = {"shards": list, "inputs": list, "text_field": str, "on_error": str}
    for key, kind in expected.items():
        if not isinstance(manifest.get(key), kind):
            problems.append(f"field {key!r} is missing or not a {kind.__name__}")
    if not (manifest.get("id_field") is None or isinstance(manifest.get("id_field"), str)):
        problems.append("field 'id_field' is not a string or null")
    if manifest.get("format_version") != FORMAT_VERSION:
        problems.append(f"format_version is {manifest.get('format_version')!r}; this fastembed-rt reads {FORMAT_VERSION}")
    for i, entry in enumerate(manifest.get("inputs") if isinstance(manifest.get("inputs"), list) else []):
        if not (isinstance(entry, dict) and isinstance(entry.get("file"), str)):
            problems.append(f"inputs[{i}] is not an object with a 'file' string")
    for i, shard in enumerate(manifest.get("shards") if isinstance(manifest.get("shards"), list) else []):
        where = f"shards[{i}]"
        if not isinstance(shard, dict):
            problems.append(f"{where} is not an object")
            continue
        for key in ("rows", "first_position", "last_position"):
            if not (isinstance(shard.get(key), int) and not isinstance(shard[key], bool) and shard[key] >= 0):
                problems.append(f"{where}.{key} is missing or not a non-negative integer")
        files = shard.get("files")
        if not (isinstance(files, list) and len(files) in (2, 3)):
            problems.append(f"{where}.files is not a list of 2 or 3 files")
            continue
        for j, f in enumerate(files):
            if not (isinstance(f, dict) and isinstance(f.get("sha256"), str) and "file" in f):
                problems.append(f"{where}.files[{j}] is not an object with 'file' and 'sha256'")
            elif not _is_plain_name(f["file"]):
                problems.append(f"{where}.files[{j}] names {f['file']!r}, which is not a file in the job folder")
    return problems
