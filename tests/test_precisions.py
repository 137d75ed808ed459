"""Weight precisions on the CPU: each one's quality gate on real data, and the fast path against the
reference path at the same precision."""

import numpy as np
import pytest

import fastembed_rt
from fastembed_rt import _C, evaluation, isa, ops

# The gates: per-vector cosine to float32, and STS-B dev Spearman within this many points.
GATES = {"bfloat16": (0.999, 0.3), "int8": (0.99, 0.5)}


@pytest.fixture(scope="module")
def gate_texts(real_texts, data_dir):
    """A fixed sample: 300 bench documents (long ones truncated at 256 tokens) and 300 STS-B sentences."""
    lines = (data_dir / "stsb" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:301]
    return real_texts[:300] + [line.split("\t")[1] for line in lines]


@pytest.fixture(scope="module")
def float32_vectors(minilm, gate_texts):
    return minilm.encode(gate_texts)


@pytest.fixture(scope="module")
def float32_sts(minilm, data_dir):
    return evaluation.evaluate_sts(minilm, data_dir / "stsb" / "dev.tsv")["spearman"]


@pytest.mark.parametrize("dtype", GATES)
def test_quality_gate_cosine(minilm_path, gate_texts, float32_vectors, dtype):
    vectors = fastembed_rt.load(minilm_path, dtype=dtype).encode(gate_texts)
    cosine = (vectors * float32_vectors).sum(axis=1)
    assert cosine.min() >= GATES[dtype][0], f"{dtype}: min cosine {cosine.min():.5f} at text {cosine.argmin()}"


@pytest.mark.parametrize("dtype", GATES)
def test_quality_gate_sts(minilm_path, data_dir, float32_sts, dtype):
    model = fastembed_rt.load(minilm_path, dtype=dtype)
    spearman = evaluation.evaluate_sts(model, data_dir / "stsb" / "dev.tsv")["spearman"]
    assert abs(spearman - float32_sts) <= GATES[dtype][1], f"{dtype}: {spearman:.2f} vs float32 {float32_sts:.2f}"


# int8's two paths differ slightly before quantizing (bf16 QKV rounding, summation order), which moves a few
# codes across rounding boundaries: measured min 0.9989 on this sample.
@pytest.mark.parametrize("dtype,min_cosine", [("float32", 0.99999), ("bfloat16", 0.999), ("int8", 0.998)])
def test_fast_path_matches_reference_path(minilm_path, gate_texts, dtype, min_cosine):
    model = fastembed_rt.load(minilm_path, dtype=dtype)
    texts = gate_texts[::5]
    fast = model.encode(texts)
    with ops.use_reference():
        reference = model.encode(texts)
    assert (fast * reference).sum(axis=1).min() >= min_cosine


@pytest.mark.parametrize("level", _C.supported_isas())
def test_int8_model_keeps_int8_weights_and_float_attention_values(level, minilm_path):
    """Where bfloat16 is fast, the attention's input projection stays one bfloat16 layer; elsewhere queries and keys
    take one int8 layer and the values a float32 one (on the fused path too: test_fused_encoder)."""
    with isa.use(level):
        model, fast_bfloat16 = fastembed_rt.load(minilm_path, dtype="int8"), ops.fast_bfloat16()
    layer = model.model.layers[0]
    assert layer.up.int8 and layer.down.int8 and layer.out.int8
    if fast_bfloat16:
        assert (layer.qkv.kind, layer.qkv.out_features, layer.value) == ("bfloat16", 1152, None)
    else:
        assert (layer.qkv.kind, layer.qkv.out_features, layer.value.kind, layer.value.out_features) == ("int8", 768, "float32", 384)
    assert model.dtype == fastembed_rt.load(minilm_path).dtype


def test_single_text_and_batch_agree_at_every_precision(minilm_path, gate_texts):
    for dtype in ("float32", "bfloat16", "int8"):
        model = fastembed_rt.load(minilm_path, dtype=dtype)
        batch = model.encode(gate_texts[:8])
        single = np.stack([model.encode(t) for t in gate_texts[:8]])
        # int8 scales activations per token, so a text's vector does not depend on its batch-mates; but single
        # texts take the fused encoder, whose summation order can move the odd int8 code (measured >= 0.9991).
        # bfloat16 single texts keep float32 activations in the fused encoder, batches round them to bfloat16
        # (measured >= 0.99998).
        assert (batch * single).sum(axis=1).min() >= {"float32": 0.99999, "bfloat16": 0.9999, "int8": 0.999}[dtype]


def test_unknown_dtype_is_named(minilm_path):
    with pytest.raises(ValueError, match="unsupported dtype 'int4'.*int8"):
        fastembed_rt.load(minilm_path, dtype="int4")


@pytest.mark.parametrize("level", _C.supported_isas())
@pytest.mark.parametrize("kind", ["embedder", "cross-encoder", "splade", "colbert"])
def test_bfloat16_models_let_go_of_their_float32_file(level, kind, tmp_path, minilm_path, splade_tiny_path):
    """A bfloat16 model holds no view of its float32 safetensors file once loaded, so the file is unmapped: on AVX2
    (float32 activations over bfloat16 weights) one float32 norm left as a view kept MiniLM's 90 MB resident, and
    a cross-encoder's float32 head and a ColBERT's projection did the same everywhere."""
    import gc
    import shutil

    from fastembed_rt.testing import cross_encoder_from
    from tests.models.test_colbert import stanford_colbert

    folder = tmp_path / kind
    if kind == "cross-encoder":
        cross_encoder_from(minilm_path, folder)
    elif kind == "colbert":
        stanford_colbert(folder)
    else:
        shutil.copytree(minilm_path if kind == "embedder" else splade_tiny_path, folder)
    with isa.use(level):
        model = fastembed_rt.load(folder, dtype="bfloat16")
    gc.collect()
    mapped = [line.split()[-1] for line in open("/proc/self/maps") if str(folder) in line]
    assert mapped == [], f"{kind} at {level}: {mapped}"
    del model
