"""Command-line inputs that lost data, crashed with a traceback or answered wrongly (found by an audit): each now
refused with one line that names the problem, and nothing on disk is touched."""

import json

import numpy as np
import pytest

import fastembed_rt
from fastembed_rt import evaluation
from fastembed_rt.cli import main
from fastembed_rt.corpus import JobOptions, embed_corpus

from test_corpus import tiny  # noqa: F401  (a fixture)

OPTIONS = JobOptions(shard_size=64, chunk_size=64)


def refused(argv, capsys) -> str:
    assert main([str(a) for a in argv]) == 2
    return capsys.readouterr().err


def test_an_input_inside_the_output_directory_is_refused_not_deleted(tiny, tmp_path):
    """Before: `embed dl --out dl --overwrite` deleted dl (the input and an unrelated file) before reading it."""
    folder = tmp_path / "dl"
    folder.mkdir()
    (folder / "in.jsonl").write_text('{"text": "a"}\n')
    (folder / "notes.md").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(ValueError, match="lies inside the output directory"):
            embed_corpus(tiny, folder, folder, OPTIONS, overwrite=overwrite, progress=False)
    assert sorted(p.name for p in folder.iterdir()) == ["in.jsonl", "notes.md"]


def test_overwrite_replaces_an_earlier_job_never_a_folder_of_other_files(tiny, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "a"}\n{"text": "b"}\n{"text": "c"}\n')
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not an earlier job's output that --overwrite may replace"):
        embed_corpus(tiny, source, other, OPTIONS, overwrite=True, progress=False)
    assert (other / "keep.txt").read_text() == "mine"
    embed_corpus(tiny, source, tmp_path / "job", OPTIONS, progress=False)
    assert embed_corpus(tiny, source, tmp_path / "job", JobOptions(shard_size=64, chunk_size=64, precision="int8"),
                        overwrite=True, progress=False)["precision"] == "int8"  # fmt: skip


def test_rerank_refuses_to_write_over_its_input(tmp_path, minilm_path, capsys):
    """Before: exit 0, and the candidates file held the results."""
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"query": "q", "candidates": ["a"]}\n')
    assert "is the --input file" in refused(["rerank", minilm_path, "--input", rows, "--out", rows], capsys)
    assert rows.read_text() == '{"query": "q", "candidates": ["a"]}\n'


@pytest.mark.parametrize("ids, message", [
    (["only one"], r"must be a list of the index's 3 ids, got a list of 1"),
    ({"a": 1}, r"must be a list of the index's 3 ids, got a JSON dict"),
    (5, r"must be a list of the index's 3 ids, got a JSON int"),
])  # fmt: skip
def test_search_checks_the_ids_file_of_an_index(tmp_path, minilm_path, minilm, ids, message, capsys):
    """Before: IndexError, "np.int64(0)" or "'int' object is not subscriptable" tracebacks."""
    fastembed_rt.Index.build(minilm.encode(["a", "b", "c"])).save(tmp_path / "idx")
    (tmp_path / "idx" / "ids.json").write_text(json.dumps(ids))
    err = refused(["search", tmp_path / "idx", "--query", "hello", "--model", minilm_path], capsys)
    assert "ids.json" in err and message.replace("\\", "") in err
    (tmp_path / "idx" / "ids.json").write_text("{broken")
    assert "ids.json is not valid JSON" in refused(["search", tmp_path / "idx", "--query", "hi", "--model", minilm_path], capsys)


@pytest.mark.parametrize("name, content, message", [
    ("modules.json", [{"type": 5}], "expected a list of modules, each an object with a string \"type\""),
    ("modules.json", {"a": 1}, "expected a list of modules"),
    ("config.json", [], "config.json: expected a JSON object, got list"),
])  # fmt: skip
def test_model_files_of_the_wrong_shape_are_named(tmp_path, minilm_path, name, content, message):
    """Before: AttributeError tracebacks ("'int' object has no attribute 'rsplit'", "'list' object has no
    attribute 'get'")."""
    import shutil

    model = tmp_path / "model"
    shutil.copytree(minilm_path, model)
    (model / name).write_text(json.dumps(content))
    with pytest.raises(ValueError, match=message):
        fastembed_rt.load(model)


@pytest.mark.parametrize("argv, message", [
    (["bench", "--threads", "-1"], "--threads must be a positive integer, got -1"),  # was set_num_threads' RuntimeError
    (["bench", "--e2e", "--limit", "0"], "--limit must be a positive integer, got 0"),  # was ZeroDivisionError
    (["bench", "--device", "gpu"], "device must be 'cpu', 'cuda' or 'cuda:N', got 'gpu'"),
])  # fmt: skip
def test_bench_options_are_checked_before_measuring(argv, message, capsys):
    assert message in refused(argv, capsys)


def test_an_empty_api_key_is_refused_not_read_as_no_key(capsys, monkeypatch):
    """Before: `serve --api-key ''` started a server without authentication."""
    monkeypatch.delenv("FASTEMBED_RT_API_KEY", raising=False)
    assert "api-key must not be empty" in refused(["serve", "--model", "all-MiniLM-L6-v2", "--api-key", ""], capsys)


def test_a_csv_quote_that_never_closes_is_named_not_swallowed(tiny, tmp_path):
    """Before: exit 0 with 2 rows, every row after the open quote merged into one text."""
    source = tmp_path / "in.csv"
    source.write_text('id,text\na,first\nb,"open quote\nc,third\nd,fourth\n')
    with pytest.raises(ValueError, match=r"in.csv:3: malformed CSV \(unexpected end of data; a quoted field"):
        embed_corpus(tiny, source, tmp_path / "out", OPTIONS, progress=False)
    manifest = embed_corpus(tiny, source, tmp_path / "out", JobOptions(shard_size=64, chunk_size=64, on_error="skip"),
                            overwrite=True, progress=False)  # fmt: skip
    assert manifest["rows"] == 1 and manifest["skipped_rows"] == 1


def write_beir(folder, corpus, queries, qrels):
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(row) + "\n" for row in corpus))
    (folder / "queries.jsonl").write_text("".join(json.dumps(row) + "\n" for row in queries))
    (folder / "qrels" / "test.tsv").write_text(qrels)


def test_beir_ids_given_as_integers_match_their_judgments(tmp_path):
    """Before: integer _ids never matched the qrels' string ids: nDCG@10 0.00, exit 0."""
    write_beir(tmp_path, [{"_id": 1, "text": "a"}, {"_id": 2, "title": "t", "text": "b"}], [{"_id": 7, "text": "q"}],
               "query-id\tcorpus-id\tscore\n7\t2\t1\n")  # fmt: skip
    corpus, queries, qrels = evaluation.read_beir(tmp_path)
    assert corpus == {"1": "a", "2": "t b"} and queries == {"7": "q"} and qrels == {"7": {"2": 1}}


@pytest.mark.parametrize("corpus, qrels, message", [
    ([{"text": "a"}], "q\td\t1\n", r"corpus.jsonl: row 1: _id must be a string or an integer, got null"),  # was "'_id'"
    ([{"_id": "d", "title": 5, "text": "a"}], "q\td\t1\n", "row 1: title must be a string, got int"),  # was a TypeError
    ([{"_id": "d", "text": "a"}], "q\td 1\n", r"test.tsv:1: expected query-id<TAB>corpus-id<TAB>score"),  # was unpacking
    ([{"_id": "d", "text": "a"}], "q\td\thigh\n", r"test.tsv:1: the score 'high' is not an integer"),
    ([{"_id": "d", "text": "a"}], "other\td\t1\n", "no query of queries.jsonl \\(1\\) has judgments"),  # was 0 queries, nan
])  # fmt: skip
def test_a_beir_folder_that_cannot_be_scored_is_named(tmp_path, corpus, qrels, message):
    write_beir(tmp_path, corpus, [{"_id": "q", "text": "query"}], qrels)
    with pytest.raises(ValueError, match=message):
        evaluation.read_beir(tmp_path)


@pytest.mark.parametrize("content, message", [
    ("score\ta\tb\n", "Spearman needs at least 2 rows with different scores; it has 0 rows"),  # was "Spearman nan"
    ("score\ta\tb\n1\tx\ty\n1\tz\tw\n", "at least 2 rows with different scores"),
    ("score\ta\tb\nabc\tx\ty\n", r":2: the score 'abc' is not a finite number"),
    ("score\ta\tb\nnan\tx\ty\n2\tz\tw\n", r":2: the score 'nan' is not a finite number"),  # was Spearman -50
])  # fmt: skip
def test_an_sts_file_that_cannot_be_scored_is_named(tiny, tmp_path, content, message):
    tsv = tmp_path / "sts.tsv"
    tsv.write_text(content)
    with pytest.raises(ValueError, match=message):
        evaluation.evaluate_sts(tiny, tsv)
    tsv.write_bytes(b"score\ta\tb\n1\t\xff\ty\n")
    with pytest.raises(ValueError, match=r"sts.tsv:2: not valid UTF-8"):
        evaluation.evaluate_sts(tiny, tsv)


@pytest.mark.parametrize("out, extra, message", [
    ("e.parquet", ["--format", "npy"], "--format npy but --out"),  # was e.parquet.npy, reported as e.parquet
    ("e.npy", ["--precision", "binary"], "--precision binary applies to sharded jobs"),  # was float32, silently
    ("e.npy", ["--on-error", "skip"], "--on-error skip applies to sharded jobs"),  # stopped anyway
    ("job", ["--index", "idx"], "--index builds an index from a single-file output"),  # no index was built
])  # fmt: skip
def test_embed_refuses_options_its_output_form_does_not_use(tmp_path, out, extra, message, capsys):
    source = tmp_path / "in.txt"
    source.write_text("one\ntwo\n")
    assert message in refused(["embed", source, "--out", tmp_path / out, "--quiet", *extra], capsys)
    assert not (tmp_path / out).exists() and not (tmp_path / "idx").exists()


def test_an_upper_case_suffix_writes_the_file_it_names(tmp_path, minilm, capsys):
    source = tmp_path / "in.txt"
    source.write_text("one\ntwo\n")
    assert main(["embed", str(source), "--out", str(tmp_path / "E.NPY"), "--quiet"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["E.NPY", "in.txt"]  # was E.NPY.npy
    np.testing.assert_allclose(np.load(tmp_path / "E.NPY"), minilm.encode(["one", "two"]), atol=1e-5)
