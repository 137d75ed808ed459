"""The fastembed-rt command, run as a real subprocess on small files."""

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fastembed_rt import isa

TEXTS = ["The cat sits outside", "", "A man is playing guitar", "word " * 300]


def run_cli(*args, check=True):
    result = subprocess.run([sys.executable, "-m", "fastembed_rt.cli", *map(str, args)], capture_output=True, text=True, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def expected(minilm):
    return minilm.encode(TEXTS)


@pytest.mark.parametrize("fmt", ["txt", "jsonl", "parquet"])
@pytest.mark.parametrize("out_format", ["npy", "parquet"])
def test_embed_files(fmt, out_format, tmp_path, expected):
    source = tmp_path / f"in.{fmt}"
    ids = [f"doc-{i}" for i in range(len(TEXTS))]
    if fmt == "txt":
        source.write_text("\n".join(TEXTS) + "\n")
    elif fmt == "jsonl":
        source.write_text("".join(json.dumps({"id": i, "body": t}) + "\n" for i, t in zip(ids, TEXTS)))
    else:
        pq.write_table(pa.table({"id": ids, "body": TEXTS}), source)
    out = tmp_path / f"out.{out_format}"
    result = run_cli("embed", source, "--out", out, "--text-field", "body", "--quiet")
    assert "texts      4" in result.stdout and "tokens/s" in result.stdout
    assert "1 of 4 texts exceeded max_seq_length=256" in result.stdout
    want_ids = ids if fmt != "txt" else [str(i) for i in range(4)]
    if out_format == "npy":
        np.testing.assert_allclose(np.load(out), expected, atol=1e-5)
        if fmt != "txt":
            assert json.loads(out.with_suffix(".ids.json").read_text()) == want_ids
    else:
        table = pq.read_table(out)
        assert table.column("id").to_pylist() == want_ids
        assert pa.types.is_fixed_size_list(table.schema.field("embedding").type)
        np.testing.assert_allclose(np.array(table.column("embedding").to_pylist(), dtype=np.float32), expected, atol=1e-5)


def test_embed_defaults_to_bundled_sample(tmp_path):
    out = tmp_path / "sample.npy"
    result = run_cli("embed", "--out", out, "--quiet", "--truncate-dim", "64")
    assert "sample_corpus.jsonl" in result.stdout and "texts      300" in result.stdout
    assert np.load(out).shape == (300, 64)


def test_malformed_jsonl_names_file_and_line(tmp_path):
    source = tmp_path / "bad.jsonl"
    source.write_text('{"text": "fine"}\n{"text": oops}\n')
    result = run_cli("embed", source, "--out", tmp_path / "o.npy", check=False)
    assert result.returncode == 2
    assert f"{source}:2: malformed JSON" in result.stderr


@pytest.mark.parametrize("content,message", [('{"title": "x"}\n', "bad.jsonl:1: no field 'text'"), ('{"text": 5}\n', "field 'text' is int")])
def test_bad_jsonl_rows(tmp_path, content, message):
    source = tmp_path / "bad.jsonl"
    source.write_text(content)
    result = run_cli("embed", source, "--out", tmp_path / "o.npy", check=False)
    assert result.returncode == 2 and message in result.stderr


def test_unsupported_input_format(tmp_path):
    source = tmp_path / "in.xml"
    source.write_text("<a/>")
    result = run_cli("embed", source, "--out", tmp_path / "o.npy", check=False)
    assert result.returncode == 2 and "unsupported input format '.xml'" in result.stderr


def test_info_lists_ops_features_and_architectures():
    from fastembed_rt import _C

    out = run_cli("info").stdout
    assert "fastembed_rt" in out and "torch" in out and "tokenizers" in out
    cpu_line = next(line for line in out.splitlines() if line.startswith("cpu "))
    listed = set(cpu_line.split(":", 1)[1].split())
    assert listed == {name for name, present in _C.cpu_features().items() if present}
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith("  ") and len(line.split()) == 3}
    assert rows["pool"][0] == rows["attention"][0] == rows["layer_norm"][0] == "cpp"
    # int8: our packed kernels where AMX tiles run or torch._int_mm has no fast kernel (test_linear's dispatch test)
    packed = isa.active() != "scalar" and (isa.amx_int8() or not isa.int_mm_fast())
    assert rows["int8_feed_forward"][0] == ("packed" if packed else "cpp")
    assert rows["attention"][1] == "cpp"  # bfloat16
    bfloat16 = next(line for line in out.splitlines() if line.strip().startswith("bfloat16 "))
    if isa.onednn_bfloat16():  # the attention kernel the CPU takes for bfloat16 is named
        kernel = {"amx": "on AMX tiles", "dot": "AVX512_BF16 dot products", "widened": "float32 arithmetic"}
        assert kernel[_C.bf16_attention_products()] in bfloat16
    assert ("fused encoder  on" in out) == _C.fused_encoder_supported("float32")
    assert "distilbert" in out and "xlm-roberta" in out


def test_info_models_lists_every_architecture_and_unsupported_ones_are_refused(tmp_path, minilm_path):
    import shutil

    import fastembed_rt
    from fastembed_rt.models.registry import ARCHITECTURES

    lines = run_cli("info", "--models").stdout.splitlines()
    assert lines[0].split() == ["model_type", "attention", "positions", "default", "pooling", "reranker", "head"]
    table = {line.split()[0]: line for line in lines[1:]}
    assert set(table) == set(ARCHITECTURES) >= {"bert", "mpnet", "modernbert", "nomic_bert", "gte", "jina_embeddings_v3",
                                                "llama", "mistral", "qwen2", "qwen3", "gemma3_text"}  # fmt: skip
    assert "lasttoken" in table["qwen3"] and "yes/no" in table["qwen3"] and " mean " in table["modernbert"]
    assert "sliding" in table["modernbert"] and "relative" in table["mpnet"]
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "t5", "max_position_embeddings": 512}))
    shutil.copy(minilm_path / "tokenizer.json", tmp_path / "tokenizer.json")
    with pytest.raises(ValueError, match="unsupported architecture model_type='t5'; supported: bert, .*qwen3"):
        fastembed_rt.load(tmp_path)


def test_bench_times_every_implementation_against_the_reference(tmp_path, capsys):
    from fastembed_rt.cli import main

    csv_path = tmp_path / "bench.csv"
    assert main(["bench", "--ops", "layer_norm,gelu,int8_linear", "--repeats", "2", "--csv", str(csv_path)]) == 0
    out = capsys.readouterr().out
    assert "ceilings: GB/s" in out and "GEMM int8" in out
    rows = [line.split() for line in out.splitlines() if line.startswith(("layer_norm", "gelu", "int8_linear"))]
    assert {(r[0], r[2]) for r in rows} >= {("layer_norm", "cpp"), ("layer_norm", "reference"), ("gelu", "cpp"),
                                           ("int8_linear", "cpp"), ("int8_linear", "reference")}  # fmt: skip
    lines = csv_path.read_text().splitlines()
    assert lines[0].startswith("date,isa,device,versions,op,implementation")
    assert len(lines) == 1 + len(rows)
    assert all("torch" in line and line.split(",")[1] == isa.active() for line in lines[1:])


def test_bench_csv_from_before_the_isa_column_gets_it(tmp_path):
    from fastembed_rt.benchmark import append_csv

    path = tmp_path / "old.csv"
    path.write_text("date,device,op\n2026-11-26T19:42:38,AMD EPYC,attention\n")
    append_csv(path, ["device", "op"], [["Xeon", "gelu"]])
    lines = path.read_text().splitlines()
    assert lines[:2] == ["date,isa,device,op", "2026-11-26T19:42:38,unrecorded,AMD EPYC,attention"]
    assert lines[2].endswith(f",{isa.active()},Xeon,gelu") and len(lines) == 3


def test_bench_e2e_against_sentence_transformers(tmp_path, capsys):
    from fastembed_rt.cli import main

    csv_path = tmp_path / "bench.csv"
    assert main(["bench", "--e2e", "--limit", "24", "--csv", str(csv_path)]) == 0
    out = capsys.readouterr().out
    for system in ("sentence-transformers float32", "fastembed_rt float32", "fastembed_rt bfloat16", "fastembed_rt int8"):
        assert system in out
    assert len(csv_path.read_text().splitlines()) == 5
