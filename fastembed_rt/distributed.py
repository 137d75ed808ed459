"""The corpus job on Ray Data: Ray reads the input, a pool of actors (one model replica each) embeds
batches with map_batches, and this driver writes the same shards and manifest as the local engine.

    fastembed-rt embed corpus.jsonl --out OUT --engine ray [--ray-address ADDR]

Actors take one GPU each where the cluster has GPUs; otherwise each takes `cpus_per_actor` CPUs and the
pool fills the cluster's CPUs but one, which the read tasks need. Rows come back in input order (Ray's preserve_order), in chunks of the job's
chunk_size, so shard boundaries, ids and int8 calibration match the local engine's.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .corpus import InputCheck, JobOptions, ShardSink, finish_job, open_job, row_digest, text_digest
from .readers import InputError, id_problem


class EmbedActor:
    """One model replica; called by Ray Data on batches of rows."""

    def __init__(self, model: str, text_field: str, prompt: str, normalize: bool, truncate_dim: int | None, threads: int):
        import torch

        from .engine import load_embedder

        torch.set_num_threads(threads)
        self.embedder = load_embedder(model)
        self.text_field, self.prompt = text_field, prompt
        self.normalize, self.truncate_dim = normalize, truncate_dim
        self.skip = self.embedder.prompt_skip(prompt)

    def __call__(self, batch: dict) -> dict:
        texts = [str(t) for t in batch[self.text_field]]
        tokenized = self.embedder.tokenizer.encode([self.prompt + t for t in texts] if self.prompt else texts)
        vectors = self.embedder.embed_token_ids(tokenized.ids, skip=self.skip, normalize=self.normalize,
                                                truncate_dim=self.truncate_dim)  # fmt: skip
        out = {k: v for k, v in batch.items() if k != self.text_field}
        out["embedding"] = vectors
        out["tokens"] = np.array([len(x) for x in tokenized.ids])
        out["truncated"] = np.array(tokenized.overflowed)
        out["text_digest"] = np.array([text_digest(t) for t in texts], dtype=np.uint64)
        return out


def _read(ray, files: list[Path], text_field: str):
    """(dataset, its text column) read by Ray Data; a txt file's lines are its column "text"."""
    suffixes = {f.suffix.lower() for f in files}
    if len(suffixes) != 1:
        raise ValueError(f"--engine ray reads one format per job, got {', '.join(sorted(suffixes))}")
    paths = [str(f) for f in files]
    readers = {".txt": ray.data.read_text, ".jsonl": lambda p: ray.data.read_json(p, lines=True),
               ".csv": ray.data.read_csv, ".parquet": ray.data.read_parquet}  # fmt: skip
    kind = suffixes.pop()
    return readers[kind](paths), "text" if kind == ".txt" else text_field


def _ids(batch: dict, id_field: str | None, first: int) -> list[str]:
    """The rows' ids as the local engine spells them (strings or integers only), else their positions."""
    if not (id_field and id_field in batch):
        return [str(p) for p in range(first, first + len(batch["embedding"]))]
    ids = batch[id_field].tolist()
    for offset, row_id in enumerate(ids):
        if row_id is not None and (problem := id_problem(row_id, id_field)) is not None:
            raise InputError(f"row {first + offset}: {problem}")
    return [str(first + offset) if i is None else str(i) for offset, i in enumerate(ids)]


def embed_ray(embedder, inputs: str | Path, out_dir: str | Path, options: JobOptions = JobOptions(), *,
              overwrite: bool = False, address: str | None = None, cpus_per_actor: int = 2) -> dict:  # fmt: skip
    """Runs the job on Ray Data (an existing cluster at `address`, or a local one) and returns the manifest."""
    import ray

    if options.on_error != "stop":
        raise ValueError("--engine ray stops at the first bad row (Ray's readers do); use the local engine for --on-error skip")
    out = Path(out_dir)
    files, manifest = open_job(embedder, inputs, out, options, overwrite)
    if manifest.get("complete"):
        return manifest
    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        ray.data.DataContext.get_current().execution_options.preserve_order = True
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        # One CPU stays free for Ray's read tasks, which the actors would otherwise starve.
        cpus = max(1, int(resources.get("CPU", 1)) - 1)
        cpus_per_actor = min(cpus_per_actor, cpus)
        actors = gpus or max(1, cpus // cpus_per_actor)
        source, text_column = _read(ray, files, options.text_field)
        dataset = source.map_batches(
            EmbedActor,
            fn_constructor_kwargs=dict(model=str(embedder.spec.path), text_field=text_column, prompt=options.prompt,
                                       normalize=manifest["normalize"], truncate_dim=manifest["truncate_dim"],
                                       threads=cpus_per_actor),
            batch_size=options.chunk_size, batch_format="numpy", concurrency=actors,
            num_gpus=1 if gpus else 0, num_cpus=0 if gpus else cpus_per_actor,
        )  # fmt: skip
        sink = ShardSink(out, manifest, options)
        check = InputCheck(out, manifest["shards"])  # the rows of complete shards, read again, must be the same
        position, tokens, truncated = 0, 0, 0
        started = time.perf_counter()
        for batch in dataset.iter_batches(batch_size=options.chunk_size, batch_format="numpy"):
            count = len(batch["embedding"])
            first, position = position, position + count
            ids = _ids(batch, options.id_field, first)
            digests = [row_digest(i, h) for i, h in zip(ids, batch["text_digest"].tolist())]
            if position <= sink.start_position:  # already in a complete shard of an earlier run
                for p, i, d in zip(range(first, position), ids, digests):
                    check.check(p, i, d)
                continue
            check.finish()
            sink.add(ids, position - 1, np.asarray(batch["embedding"], dtype=np.float32), digests)
            tokens += int(batch["tokens"].sum())
            truncated += int(batch["truncated"].sum())
        check.finish()
        sink.flush()
        wall = time.perf_counter() - started
        return finish_job(out, manifest, truncated=truncated, skipped_rows=0, skipped_files=0, replaced_utf8_rows=0, empty_texts=0,
                          first_errors=[], tokens=tokens, tokens_per_s=tokens / wall if wall > 0 else 0.0,
                          model_busy_fraction=None, seconds=wall, engine=f"ray ({actors} actors)")  # fmt: skip
    finally:
        if started_ray:
            ray.shutdown()
