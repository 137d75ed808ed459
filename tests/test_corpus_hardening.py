"""Corpus jobs against accidents and hostile files: an input edited between a kill -9 and the resume (same
size, reordered, replaced), manifests that point outside the job folder or have the wrong shape, stray files,
corrupt input files, ids that are not strings or integers."""

import json
import signal
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fastembed_rt.corpus import JobOptions, embed_corpus, verify_output

from test_corpus import outputs, run_cli, tiny, write_jsonl  # noqa: F401  (tiny: a fixture)

OPTIONS = JobOptions(shard_size=64, chunk_size=64)


def rows(n: int) -> list[dict]:
    return [{"id": f"d{i}", "text": f"row {i:05d} says something about topic {i % 31}"} for i in range(n)]


def same_size_edit(line: str) -> str:
    """The line with its text changed and its byte count kept."""
    row = json.loads(line)
    row["text"] = row["text"].replace("says", "said")
    edited = json.dumps(row)
    assert len(edited) == len(line)
    return edited


@pytest.fixture(scope="module")
def killed_job(tiny_bert_dir, tmp_path_factory):
    """A job killed with SIGKILL after its first shards, and the command that resumes it."""
    tmp = tmp_path_factory.mktemp("killed")
    source = write_jsonl(tmp / "in.jsonl", rows(30_000))
    out = tmp / "out"
    command = ["embed", source, "--model", tiny_bert_dir, "--shard-size", 1024, "--chunk-size", 512, "--quiet", "--out", out]
    process = subprocess.Popen([sys.executable, "-m", "fastembed_rt.cli", *map(str, command)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 300
    while time.time() < deadline and not (
        (out / "manifest.json").is_file() and json.loads((out / "manifest.json").read_text())["shards"]
    ):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    manifest = json.loads((out / "manifest.json").read_text())
    assert not manifest["complete"] and manifest["shards"]
    return source, out, command


def refused_resume(source, command, lines: list[str]) -> str:
    original = source.read_text()
    source.write_text("\n".join(lines) + "\n")
    try:
        result = run_cli(*command, check=False)
    finally:
        source.write_text(original)
    assert result.returncode != 0
    return result.stderr


def test_resume_refuses_an_input_edited_at_the_same_size(killed_job):
    source, out, command = killed_job
    lines = source.read_text().splitlines()
    size = source.stat().st_size
    lines[9] = same_size_edit(lines[9])
    assert len("\n".join(lines) + "\n") == size  # what the manifest used to compare: name and size
    error = refused_resume(source, command, lines)
    assert f"row 9 (id 'd9', {source}:10) is not the row it was made from" in error
    assert "shard-00000.parquet" in error and "--overwrite" in error


def test_resume_refuses_reordered_replaced_and_shortened_inputs(killed_job, tmp_path):
    source, out, command = killed_job
    lines = source.read_text().splitlines()
    swapped = lines[:]
    swapped[20], swapped[21] = swapped[21], swapped[20]
    assert f"row 20 (id 'd21', {source}:21)" in refused_resume(source, command, swapped)
    replaced = [json.dumps(r) for r in rows(30_000)[::-1]]
    assert f"row 0 (id 'd29999', {source}:1)" in refused_resume(source, command, replaced)
    kept = "\n".join(lines[:100]) + "\n"
    padding = " " * (source.stat().st_size - len(kept) - 1)  # a blank jsonl line: same size, 100 rows
    assert "the input now has 100 of them (rows were removed)" in refused_resume(source, command, [kept + padding])


def test_resume_after_the_refusals_completes_and_verifies(killed_job):
    source, out, command = killed_job
    run_cli(*command)
    manifest, ids, _ = outputs(out)
    assert manifest["complete"] and ids == [f"d{i}" for i in range(30_000)]
    assert verify_output(out) == []
    lines = source.read_text().splitlines()
    original = source.read_text()
    lines[29_000] = same_size_edit(lines[29_000])
    source.write_text("\n".join(lines) + "\n")
    try:  # verify reads the input again and names the row whose text changed
        assert verify_output(out) == [f"input row 29000 (id 'd29000', {source}:29001) changed since it was embedded: "
                                      "its text is not the one the vector was made from"]  # fmt: skip
    finally:
        source.write_text(original)


@pytest.fixture
def finished(tiny, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", rows(150))
    embed_corpus(tiny, source, tmp_path / "out", OPTIONS, progress=False)
    return tmp_path / "out"


def edit_manifest(out, change) -> None:
    path = out / "manifest.json"
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps(change(manifest)))


def test_verify_never_follows_a_manifest_path_out_of_the_job_folder(finished, tmp_path):
    outside = tmp_path / "secret.txt"
    outside.write_text("not part of the job")

    def escape(manifest):
        manifest["shards"][0]["files"][0]["file"] = "../secret.txt"
        manifest["shards"][1]["files"][0]["file"] = "../../../../etc/passwd"
        manifest["shards"][2]["files"][0]["file"] = str(outside)
        return manifest

    edit_manifest(finished, escape)
    problems = verify_output(finished)
    assert problems[:3] == [
        f"{finished / 'manifest.json'}: shards[0].files[0] names '../secret.txt', which is not a file in the job folder",
        f"{finished / 'manifest.json'}: shards[1].files[0] names '../../../../etc/passwd', which is not a file in the job folder",
        f"{finished / 'manifest.json'}: shards[2].files[0] names {str(outside)!r}, which is not a file in the job folder",
    ]
    assert not any("checksum" in p for p in problems)  # nothing outside was opened and hashed


@pytest.mark.parametrize("content,message", [
    ("[]", "expected a JSON object, got list"),
    ("{}", "field 'shards' is missing or not a list"),
    ('{"shards": 3', "manifest.json: not valid JSON"),
    ("null", "expected a JSON object, got NoneType"),
])  # fmt: skip
def test_verify_explains_a_manifest_of_the_wrong_shape(finished, content, message):
    (finished / "manifest.json").write_text(content)
    problems = verify_output(finished)
    assert problems and message in problems[0]
    result = run_cli("verify", finished, check=False)
    assert result.returncode == 1 and message in result.stdout and "Traceback" not in result.stderr


def test_verify_reports_files_the_manifest_does_not_list(finished):
    (finished / "shard-00099.parquet").write_bytes(b"stray")
    (finished / "notes.txt").write_text("left here")
    assert verify_output(finished) == ["notes.txt is in the job folder but not in the manifest",
                                       "shard-00099.parquet is in the job folder but not in the manifest"]  # fmt: skip


def test_resume_refuses_a_damaged_manifest(finished, tiny):
    (finished / "manifest.json").write_text("[]")
    with pytest.raises(ValueError, match="manifest.json is damaged or from another version \\(expected a JSON object"):
        embed_corpus(tiny, finished.parent / "in.jsonl", finished, OPTIONS, progress=False)


def test_a_corrupt_file_in_an_input_directory_is_named_or_skipped_and_counted(tiny_bert_dir, tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    write_jsonl(inputs / "a.jsonl", rows(5))
    (inputs / "b.parquet").write_bytes(b"PAR1 this is not parquet at all")
    pq.write_table(pa.table({"id": ["c0", "c1"], "text": ["third file", "still read"]}), inputs / "c.parquet")
    result = run_cli("embed", inputs, "--model", tiny_bert_dir, "--out", tmp_path / "stop", "--quiet", check=False)
    assert result.returncode == 2 and f"{inputs / 'b.parquet'}: cannot read (ArrowInvalid" in result.stderr
    result = run_cli("embed", inputs, "--model", tiny_bert_dir, "--out", tmp_path / "skip", "--quiet", "--on-error", "skip")
    manifest, ids, _ = outputs(tmp_path / "skip")
    assert ids == [f"d{i}" for i in range(5)] + ["c0", "c1"]
    assert manifest["skipped_files"] == 1 and manifest["first_errors"][0].startswith(f"{inputs / 'b.parquet'}: cannot read")
    assert "skipped 0 rows and 1 files" in result.stdout
    assert verify_output(tmp_path / "skip") == []


def test_ids_that_are_not_strings_or_integers_are_refused(tiny, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"id": 7, "text": "an integer id"}\n{"id": [1], "text": "a list id"}\n'
                      '{"id": 1.5, "text": "a float id"}\n{"id": true, "text": "a boolean id"}\n')  # fmt: skip
    with pytest.raises(ValueError, match=f"{source}:2: field 'id' is a list, expected a string or an integer"):
        embed_corpus(tiny, source, tmp_path / "out", OPTIONS, progress=False)
    manifest = embed_corpus(tiny, source, tmp_path / "out", JobOptions(shard_size=64, chunk_size=64, on_error="skip"),
                            progress=False, overwrite=True)  # fmt: skip
    assert outputs(tmp_path / "out")[1] == ["7"] and manifest["skipped_rows"] == 3
    assert [e.split(": ", 1)[1] for e in manifest["first_errors"]] == [
        "field 'id' is a list, expected a string or an integer",
        "field 'id' is a number with a fraction, expected a string or an integer",
        "field 'id' is a boolean, expected a string or an integer",
    ]


def test_verify_refuses_a_boolean_row_count(finished):
    """JSON true is a Python int subclass: it must not pass as a count."""
    manifest = json.loads((finished / "manifest.json").read_text())
    manifest["shards"][0]["rows"] = True
    (finished / "manifest.json").write_text(json.dumps(manifest))
    assert any("shards[0].rows is missing or not a non-negative integer" in p for p in verify_output(finished))
