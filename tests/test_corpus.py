"""Offline corpus jobs: sharded outputs, crash and resume, bounded memory, bad input, verify."""

import json
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import fastembed_rt
from fastembed_rt.corpus import JobOptions, embed_corpus, read_shard, verify_output


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def synthetic_rows(n, start=0):
    return [{"id": f"doc-{i}", "text": f"document {i} talks about topic {i % 97} and item {i % 13}"} for i in range(start, start + n)]


def outputs(directory):
    manifest = json.loads((directory / "manifest.json").read_text())
    ids, vectors = [], []
    for shard in manifest["shards"]:
        shard_ids, shard_vectors = read_shard(directory, shard)
        ids += shard_ids
        vectors.append(shard_vectors)
    return manifest, ids, np.concatenate(vectors)


def run_cli(*args, check=True, **kwargs):
    result = subprocess.run([sys.executable, "-m", "fastembed_rt.cli", *map(str, args)], capture_output=True, text=True,
                            timeout=600, **kwargs)  # fmt: skip
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def tiny(tiny_bert_dir):
    return fastembed_rt.load(tiny_bert_dir, device="cpu")


def test_job_matches_encode_in_shards(tiny, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", synthetic_rows(1000))
    options = JobOptions(shard_size=256, chunk_size=64)
    manifest = embed_corpus(tiny, source, tmp_path / "out", options, progress=False)
    assert manifest["complete"] and manifest["rows"] == 1000 and len(manifest["shards"]) == 4
    assert [s["first_position"] for s in manifest["shards"]] == [0, 256, 512, 768]
    assert manifest["shards"][-1]["last_position"] == 999 and manifest["shards"][-1]["rows"] == 232
    assert 0 < manifest["model_busy_fraction"] <= 1 and len(manifest["model_revision"]) == 64
    _, ids, vectors = outputs(tmp_path / "out")
    assert ids == [f"doc-{i}" for i in range(1000)]
    np.testing.assert_allclose(vectors, tiny.encode([r["text"] for r in synthetic_rows(1000)]), atol=1e-5)
    assert verify_output(tmp_path / "out") == []
    again = embed_corpus(tiny, source, tmp_path / "out", options, progress=False)  # complete: nothing to do
    assert again["shards"] == manifest["shards"]


@pytest.mark.parametrize("precision,fmt", [("float16", "parquet"), ("int8", "npy"), ("ubinary", "parquet"), ("binary", "npy")])
def test_precisions_and_formats(precision, fmt, tiny, tmp_path):
    rows = synthetic_rows(300)
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    manifest = embed_corpus(tiny, source, tmp_path / "out", JobOptions(precision=precision, format=fmt, shard_size=128, chunk_size=128),
                            progress=False)  # fmt: skip
    _, ids, vectors = outputs(tmp_path / "out")
    floats = tiny.encode([r["text"] for r in rows])
    if precision == "float16":
        np.testing.assert_allclose(vectors.astype(np.float32), floats, atol=1e-3)
    elif precision == "int8":  # ranges calibrated on the first chunk and kept in the manifest
        want = fastembed_rt.quantize_embeddings(floats, "int8", ranges=np.asarray(manifest["ranges"], dtype=np.float32))
        assert vectors.dtype == np.int8 and np.abs(vectors.astype(int) - want).max() <= 1
    else:
        assert np.array_equal(vectors, fastembed_rt.quantize_embeddings(floats, precision))
    assert verify_output(tmp_path / "out") == []


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_interrupt_then_resume_equals_uninterrupted_run(sig, tiny_bert_dir, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", synthetic_rows(20_000))
    common = ["embed", source, "--model", tiny_bert_dir, "--shard-size", 1024, "--chunk-size", 512, "--quiet"]
    run_cli(*common, "--out", tmp_path / "whole")

    crashed = tmp_path / "crashed"
    # A shell's background job inherits SIGINT ignored, and Python then never raises KeyboardInterrupt:
    # give the child the default disposition, as a terminal would.
    process = subprocess.Popen([sys.executable, "-m", "fastembed_rt.cli", *map(str, common), "--out", str(crashed)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    deadline = time.time() + 300
    while time.time() < deadline:
        manifest_path = crashed / "manifest.json"
        if manifest_path.is_file() and len(json.loads(manifest_path.read_text())["shards"]) >= 3:
            break
        time.sleep(0.05)
    process.send_signal(sig)
    process.wait(timeout=120)
    interrupted = json.loads((crashed / "manifest.json").read_text())
    assert not interrupted["complete"] and 3 <= len(interrupted["shards"]) < 20
    assert verify_output(crashed) == ["the job is not complete (run the same command again to resume)"]

    run_cli(*common, "--out", crashed)
    _, whole_ids, whole_vectors = outputs(tmp_path / "whole")
    manifest, ids, vectors = outputs(crashed)
    assert manifest["complete"] and manifest["rows"] == 20_000
    assert ids == whole_ids
    assert np.array_equal(vectors, whole_vectors)
    assert run_cli("verify", crashed).stdout.strip().endswith("verified: output matches its manifest")


def test_streaming_200k_lines_keeps_memory_bounded(tiny_bert_dir, tmp_path):
    source = tmp_path / "big.txt"
    with open(source, "w") as f:
        for i in range(200_000):
            f.write(f"item {i}\n")  # short: the rows, not the tokens, are what would pile up
    script = textwrap.dedent(f"""
        import json, re
        import fastembed_rt
        from fastembed_rt.corpus import JobOptions, embed_corpus

        def rss_kb(field):
            return int(re.search(field + r":\\s+(\\d+)", open("/proc/self/status").read()).group(1))

        model = fastembed_rt.load({str(tiny_bert_dir)!r}, device="cpu")
        with open({str(source)!r}) as f:  # the model's working memory for one chunk is not growth with the corpus
            model.encode([next(f) for _ in range(2048)])
        before = rss_kb("VmRSS")
        open("/proc/self/clear_refs", "w").write("5")  # restart the peak (VmHWM) from here
        manifest = embed_corpus(model, {str(source)!r}, {str(tmp_path / "out")!r},
                                JobOptions(shard_size=8192, chunk_size=2048, format="npy"), progress=False)
        print(json.dumps({{"growth_mb": (rss_kb("VmHWM") - before) / 1024, "rows": manifest["rows"],
                          "dim": manifest["dimension"]}}))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=900)
    print(result.stdout)  # the measured growth, shown with -s or on failure
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["rows"] == 200_000 and report["dim"] == 384
    # The vectors alone are 200,000 x 384 x 4 bytes = 293 MB: holding them, or the texts, would not fit.
    assert report["growth_mb"] < 300, report


def test_bad_rows_stop_with_file_and_line_or_are_skipped_and_counted(tiny_bert_dir, tmp_path):
    source = tmp_path / "in.jsonl"
    lines = [json.dumps(r) for r in synthetic_rows(10)]
    lines[3] = '{"id": "broken", "text": '
    lines[6] = json.dumps({"id": "no-text", "title": "x"})
    source.write_text("\n".join(lines) + "\n")
    result = run_cli("embed", source, "--model", tiny_bert_dir, "--out", tmp_path / "stop", "--quiet", check=False)
    assert result.returncode == 2 and f"{source}:4: malformed JSON" in result.stderr

    result = run_cli("embed", source, "--model", tiny_bert_dir, "--out", tmp_path / "skip", "--on-error", "skip", "--quiet")
    manifest, ids, _ = outputs(tmp_path / "skip")
    assert manifest["skipped_rows"] == 2 and manifest["rows"] == 8
    assert f"{source}:7: no field 'text'" in result.stdout
    assert "broken" not in ids and "no-text" not in ids
    assert verify_output(tmp_path / "skip") == []


def test_malformed_csv_row_stops_with_file_and_line(tiny, tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("id,text\na,first\nb,second,unexpected\nc,third\n")
    with pytest.raises(ValueError, match=r"in.csv:3: expected 2 fields, got 3"):
        embed_corpus(tiny, source, tmp_path / "out", JobOptions(shard_size=64, chunk_size=64), progress=False)
    manifest = embed_corpus(tiny, source, tmp_path / "out", JobOptions(shard_size=64, chunk_size=64, on_error="skip"),
                            progress=False, overwrite=True)  # fmt: skip
    assert manifest["rows"] == 2 and manifest["skipped_rows"] == 1


def test_utf8_empty_duplicates_csv_and_directory_inputs(tiny, tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "a.txt").write_bytes(b"plain line\n\xff\xfe broken bytes\n\n")
    with open(inputs / "b.csv", "w", newline="") as f:
        f.write('id,text\nx1,"a field, with a comma"\nx1,"a quoted\nnewline"\n')
    pq.write_table(pa.table({"id": ["p1", "p2"], "text": ["parquet one", "   "]}), inputs / "c.parquet")
    manifest = embed_corpus(tiny, inputs, tmp_path / "out", JobOptions(shard_size=64, chunk_size=64), progress=False)
    _, ids, vectors = outputs(tmp_path / "out")
    assert ids == ["0", "1", "2", "x1", "x1", "p1", "p2"]
    assert manifest["replaced_utf8_rows"] == 1 and manifest["empty_texts"] == 2 and manifest["duplicate_ids"] == 1
    texts = ["plain line", "\ufffd\ufffd broken bytes", "", "a field, with a comma", "a quoted\nnewline", "parquet one", "   "]
    np.testing.assert_allclose(vectors, tiny.encode(texts), atol=1e-5)


def test_different_job_in_same_directory_needs_overwrite(tiny, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", synthetic_rows(50))
    embed_corpus(tiny, source, tmp_path / "out", JobOptions(shard_size=64, chunk_size=64), progress=False)
    with pytest.raises(ValueError, match="holds a different job \\(differs in: precision\\)"):
        embed_corpus(tiny, source, tmp_path / "out", JobOptions(precision="int8", shard_size=64, chunk_size=64), progress=False)
    manifest = embed_corpus(tiny, source, tmp_path / "out", JobOptions(precision="int8", shard_size=64, chunk_size=64),
                            overwrite=True, progress=False)  # fmt: skip
    assert manifest["precision"] == "int8" and manifest["rows"] == 50
    with pytest.raises(ValueError, match="must be a positive multiple of chunk_size"):
        JobOptions(shard_size=100, chunk_size=64)


def test_verify_catches_truncated_shard_and_missing_id(tiny, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", synthetic_rows(200))
    embed_corpus(tiny, source, tmp_path / "out", JobOptions(shard_size=64, chunk_size=64), progress=False)
    shard = tmp_path / "out" / "shard-00001.parquet"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    assert verify_output(tmp_path / "out") == ["shard-00001.parquet: checksum mismatch (truncated or modified)"]
    result = run_cli("verify", tmp_path / "out", check=False)
    assert result.returncode == 1 and "checksum mismatch" in result.stdout

    shard.write_bytes(data)
    with open(source, "a") as f:
        f.write(json.dumps({"id": "late-arrival", "text": "added after the job"}) + "\n")
    assert verify_output(tmp_path / "out") == [f"input id 'late-arrival' (row 200, {source}:201) is missing from the output"]


def test_ray_engine_matches_local_engine(tiny, tiny_bert_dir, tmp_path):
    import ray

    from fastembed_rt.distributed import embed_ray

    rows = synthetic_rows(700)
    rows[5]["text"] = ""
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    options = JobOptions(precision="int8", shard_size=256, chunk_size=128)
    embed_corpus(tiny, source, tmp_path / "local", options, progress=False)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        manifest = embed_ray(tiny, source, tmp_path / "ray", options)
        # The CLI joins the same running cluster by address.
        result = run_cli("embed", source, "--model", tiny_bert_dir, "--out", tmp_path / "ray-cli", "--engine", "ray",
                         "--ray-address", "auto", "--precision", "int8", "--shard-size", 256, "--chunk-size", 128)  # fmt: skip
    finally:
        ray.shutdown()
    assert "texts      700 in 3 shards (int8, parquet)" in result.stdout
    assert outputs(tmp_path / "ray-cli")[1] == outputs(tmp_path / "local")[1]
    assert manifest["complete"] and manifest["engine"].startswith("ray")
    local_manifest, local_ids, local_vectors = outputs(tmp_path / "local")
    _, ray_ids, ray_vectors = outputs(tmp_path / "ray")
    assert ray_ids == local_ids
    assert manifest["ranges"] == local_manifest["ranges"]  # calibrated on the same first chunk
    assert [s["rows"] for s in manifest["shards"]] == [s["rows"] for s in local_manifest["shards"]]
    # Different batch compositions may move a float by an ulp, and so an int8 code by one step at most.
    assert np.abs(ray_vectors.astype(int) - local_vectors.astype(int)).max() <= 1
    assert (ray_vectors == local_vectors).mean() > 0.999
    assert verify_output(tmp_path / "ray") == []
