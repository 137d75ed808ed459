"""The fused C++ encoder (one call for the whole forward of a small batch) against the op-by-op path, with the
kernels of every ISA this CPU runs from AVX2 up; below AVX2 small batches take the op path."""

import numpy as np
import pytest
import torch

import fastembed_rt
from fastembed_rt import _C, isa, ops
from fastembed_rt.models import bert
from fastembed_rt.tokenization import pack


FUSED_ISAS = [name for name in _C.supported_isas() if name != "scalar"]


@pytest.fixture(params=[(dtype, level) for level in FUSED_ISAS for dtype in ("float32", "bfloat16", "int8")], ids="-".join)
def model(request, minilm_path):
    dtype, level = request.param
    with isa.use(level):  # the fused encoder packs its layers for the ISA active when it is built
        yield fastembed_rt.load(minilm_path, dtype=dtype)


TOKEN_FLOOR = {"float32": 0.99999, "bfloat16": 0.995, "int8": 0.99}


def kind(model) -> str:
    return "int8" if model.int8 else str(model.dtype).removeprefix("torch.")


def forward(model, ids, fused, monkeypatch):
    monkeypatch.setattr(bert, "FUSED_MAX_TOKENS", 10**9 if fused else 0)
    batch = pack(ids)
    with torch.inference_mode():
        return model.model.forward(batch.input_ids, batch.cu_seqlens, batch.max_seqlen)


@pytest.mark.parametrize("texts", [["hi"], ["how do I reset my password"], ["a", "two words", "", "a longer query about the weather"]], ids=len)
def test_matches_op_path(model, texts, monkeypatch):
    assert model.model.fused() is not None
    ids = model.tokenizer.encode(texts).ids
    fused, op_path = forward(model, ids, True, monkeypatch), forward(model, ids, False, monkeypatch)
    cosine = torch.nn.functional.cosine_similarity(fused.float(), op_path.float(), dim=1)
    # int8: summation-order differences move the odd code across a rounding boundary, which on a text of a
    # few tokens shifts a hidden state by up to ~0.5% (measured min token cosine 0.9946 for "hi"; each path
    # is as far from the reference int8 path, and both 0.994 from float32).
    # bfloat16: the fused encoder keeps activations in float32 between the bfloat16 GEMMs, where the op path
    # rounds them to bfloat16 (measured min token cosine 0.997).
    assert cosine.min() >= TOKEN_FLOOR[kind(model)]
    if model.dtype == torch.float32 and not model.int8:
        torch.testing.assert_close(fused, op_path, rtol=1e-4, atol=1e-4)


def test_small_batches_take_the_fused_path_and_large_ones_do_not(model, monkeypatch):
    assert model.model.fused() is not None
    calls = []
    original = model.model._fused.forward
    monkeypatch.setattr(model.model, "_fused", type("Spy", (), {"forward": lambda self, *a: calls.append(1) or original(*a)})())
    model.encode("short query")
    assert calls == [1]
    model.encode(["word " * 60])
    assert calls == [1]
    with ops.use_reference():
        model.encode("short query")
    assert calls == [1]


def test_vectors_agree_with_sentence_level_tolerance(model):
    texts = ["what is the capital of france", "best pizza near me", "x"]
    single = np.stack([model.encode(t) for t in texts])  # fused
    with ops.use_reference():
        reference = model.encode(texts)
    # int8 paths agree to ~0.997 on texts this short (measured; the reference's bfloat16 QKV rounds differently);
    # bfloat16 ones to ~0.99996 (float32 activations in the fused encoder, bfloat16 in the reference).
    assert (single * reference).sum(axis=1).min() >= {"float32": 0.99999, "bfloat16": 0.9999, "int8": 0.995}[kind(model)]


def test_binding_checks_ids_and_lengths(model):
    fused = model.model.fused()
    cu = np.array([0, 2], dtype=np.int32)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        fused.forward(np.array([1, 10**9], dtype=np.int64), cu)
    with pytest.raises(ValueError, match="does not match total_tokens"):
        fused.forward(np.array([1, 2, 3], dtype=np.int64), cu)
    long = np.ones(600, dtype=np.int64)
    with pytest.raises(ValueError, match="has 600 tokens; the model has 512 positions"):
        fused.forward(long, np.array([0, 600], dtype=np.int32))


def test_binding_checks_layers_and_tables(model):
    encoder, fused = model.model, model.model.fused()
    layer = encoder.layers[0]
    norms = [t.float().numpy() for t in (layer.attn_norm_weight, layer.attn_norm_bias)]
    with pytest.raises(ValueError, match=r"qkv: expected a \[1152, 384\] layer, got \[384, 384\]"):
        fused.add_layer(layer.out.panels(), layer.out.panels(), *norms, layer.up.panels(), layer.down.panels(), *norms)
    value = layer.value and layer.value.panels()
    with pytest.raises(ValueError, match=r"down: expected a \[384, 1536\] layer, got \[1536, 384\]"):
        fused.add_layer(layer.qkv.panels(), layer.out.panels(), *norms, layer.up.panels(), layer.up.panels(), *norms, value=value)
    # Queries and keys in one layer take the values in another, of float32 weights.
    rest = (layer.out.panels(), *norms, layer.up.panels(), layer.down.panels(), *norms)
    queries_keys = ops.Linear(torch.randn(768, 384), int8=True).panels()
    with pytest.raises(ValueError, match=r"qkv \(queries and keys\): expected a \[768, 384\] layer, got \[1152, 384\]"):
        fused.add_layer(ops.Linear(torch.randn(1152, 384)).panels(), *rest, value=ops.Linear(torch.randn(384, 384)).panels())
    with pytest.raises(ValueError, match=r"value: expected a \[384, 384\] layer, got \[768, 384\]"):
        fused.add_layer(queries_keys, *rest, value=queries_keys)
    with pytest.raises(ValueError, match="value: expected float32 weights"):
        fused.add_layer(queries_keys, *rest, value=ops.Linear(torch.randn(384, 384), int8=True).panels())
    word = encoder.word_embeddings.bfloat16().view(torch.int16).numpy()
    with pytest.raises(TypeError, match="position_embeddings: expected dtype int16"):
        _C.FusedEncoder(word, encoder.position_embeddings.float().numpy(), None, *norms, 12, 1e-12, 1, 0)


def test_below_avx2_small_batches_take_the_op_path(minilm_path):
    with isa.use("scalar"):
        model = fastembed_rt.load(minilm_path)
        assert model.model.fused() is None
        with ops.use_reference():
            want = model.encode("short query")
        np.testing.assert_allclose(model.encode("short query"), want, atol=1e-5)
