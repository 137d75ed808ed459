"""Embedder.encode: order, batching, streams, and every kind of bad input."""

import warnings

import numpy as np
import pytest
import torch

import fastembed_rt
from fastembed_rt import ops


def test_empty_list_gives_zero_rows(minilm):
    out = minilm.encode([])
    assert out.shape == (0, 384) and out.dtype == np.float32
    assert minilm.encode([], truncate_dim=32).shape == (0, 32)


def test_empty_and_whitespace_strings_embed_as_tokenized(minilm):
    assert minilm.count_tokens(["", "   ", "\t\n"]) == [2, 2, 2]  # [CLS] [SEP]
    out = minilm.encode(["", "   ", "hello"])
    np.testing.assert_allclose(out[0], out[1], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("bad,index,kind", [(["ok", None], 1, "NoneType"), ([3], 0, "int"), (["a", "b", b"c"], 2, "bytes")])
def test_non_string_is_named_by_index(minilm, bad, index, kind):
    with pytest.raises(TypeError, match=rf"texts\[{index}\] is {kind}, expected str"):
        minilm.encode(bad)


def test_bytes_and_lone_surrogates_are_named(minilm):
    with pytest.raises(TypeError, match=r"texts is bytes, expected str or a sequence of str: decode it first"):
        minilm.encode(b"abc")  # before: "texts[0] is int"
    with pytest.raises(TypeError, match=r"texts\[1\] is bytes, expected str: decode it first"):
        minilm.encode(["fine", b"abc"])
    with pytest.raises(ValueError, match=r"texts\[1\] is not valid Unicode: character 3 is a lone surrogate \(U\+D800\)"):
        minilm.encode(["fine", "ab \ud800 x"])  # before: tokenizers' "TextEncodeInput must be Union[...]"
    assert minilm.encode(["naïve café 中文 😀"]).shape == (1, 384)


def test_non_iterable_is_refused(minilm):
    with pytest.raises(TypeError, match="texts must be a string or a sequence of strings"):
        minilm.encode(42)


def test_truncation_is_reported_once_per_call_with_count(minilm):
    long_text = "word " * 400
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        minilm.encode([long_text, "short", long_text])
        minilm.encode([long_text])
    messages = [str(w.message) for w in caught if issubclass(w.category, fastembed_rt.TruncationWarning)]
    assert messages == [
        "2 of 3 texts exceeded max_seq_length=256 tokens and were truncated",
        "1 of 1 texts exceeded max_seq_length=256 tokens and were truncated",
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        minilm.encode(["short"])  # nothing truncated, nothing said


def test_order_independent_of_batching(minilm, real_texts):
    texts = real_texts[:60]
    reference = minilm.encode(texts, batch_tokens=100_000)
    for batch_tokens, max_seqs in [(1, 1), (300, 4), (2048, 512)]:
        got = minilm.encode(texts, batch_tokens=batch_tokens, max_batch_sequences=max_seqs)
        np.testing.assert_allclose(got, reference, atol=1e-5)
    np.testing.assert_allclose(minilm.encode(texts[7]), reference[7], atol=1e-5)  # a single string → [d]


def test_reference_path_matches_kernels(minilm, real_texts):
    texts = real_texts[:40]
    fast = minilm.encode(texts)
    with ops.use_reference():
        slow = minilm.encode(texts)
    np.testing.assert_allclose(fast, slow, atol=1e-5)


def test_encode_iter_streams_in_order(minilm, real_texts):
    texts = real_texts[:50]
    stream = (t for t in texts)  # a generator: no len(), read once
    chunks = list(minilm.encode_iter(stream, chunk_size=16))
    assert [len(c) for c in chunks] == [16, 16, 16, 2]
    np.testing.assert_allclose(np.concatenate(chunks), minilm.encode(texts), atol=1e-5)
    with pytest.raises(ValueError, match="chunk_size"):
        next(minilm.encode_iter(texts, chunk_size=0))


def test_normalize_and_truncate_options(minilm):
    texts = ["The cat sits outside", "A man is playing guitar"]
    raw = minilm.encode(texts, normalize=False)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)
    cut = minilm.encode(texts, truncate_dim=100)
    np.testing.assert_allclose(cut, raw[:, :100] / np.linalg.norm(raw[:, :100], axis=1, keepdims=True), atol=1e-6)
    np.testing.assert_allclose(minilm.encode(texts, truncate_dim=100, normalize=False), raw[:, :100], atol=1e-6)
    for bad in (0, 385, 2.5, True):
        with pytest.raises(ValueError, match="truncate_dim must be an int in"):
            minilm.encode(texts, truncate_dim=bad)
    with pytest.raises(TypeError, match="normalize must be True, False or None"):  # "no" was truthy: normalized
        minilm.encode(texts, normalize="no")
    with pytest.raises(ValueError, match="precision int8 takes its ranges from this call's embeddings, which needs at least 2"):
        minilm.encode(texts[:1], precision="int8")  # was: "pass ranges or calibration_embeddings", which encode does not take
    with pytest.raises(ValueError, match=r"similarity: a must be one vector or a \[n, d\] matrix, got shape \[1, 2, 384\]"):
        minilm.similarity(np.zeros((1, 2, 384)), raw)  # was: "dimensions differ (2 vs 384)"


def test_prompt_errors(minilm):
    with pytest.raises(KeyError, match="prompt_name 'query' is not among the model's prompts"):
        minilm.encode(["x"], prompt_name="query")
    with pytest.raises(ValueError, match="either prompt or prompt_name"):
        minilm.encode(["x"], prompt="a", prompt_name="b")


def test_similarity_is_cosine_for_minilm(minilm):
    a = minilm.encode(["A man is playing a guitar.", "A woman is slicing an onion."])
    b = minilm.encode(["Someone plays guitar.", "Stocks fell sharply today."])
    scores = minilm.similarity(a, b)
    assert scores.shape == (2, 2)
    np.testing.assert_allclose(scores, a @ b.T, rtol=1e-5)
    assert scores[0, 0] > scores[0, 1] and scores[0, 0] > scores[1, 0]
    with pytest.raises(ValueError, match="dimensions differ"):
        minilm.similarity(a, b[:, :10])


def test_bad_dtype_or_device_is_refused(minilm_path):
    with pytest.raises(ValueError, match="unsupported dtype 'int4'"):
        fastembed_rt.load(minilm_path, dtype="int4")
    # Before: torch's "Expected one of cpu, cuda, ipu, ..." (a traceback from `fastembed-rt serve --device gpu`), and
    # "Tensor.item() cannot be called on meta tensors".
    for device in ("gpu", "meta", "mps"):
        with pytest.raises(ValueError, match=f"device must be 'cpu', 'cuda' or 'cuda:N', got '{device}'"):
            fastembed_rt.load(minilm_path, device=device)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device 'cuda' asked for, but torch sees no CUDA GPU"):
            fastembed_rt.load(minilm_path, device="cuda")


def test_bfloat16_runs_close_to_float32(minilm_path, minilm, real_texts):
    texts = real_texts[:20]
    bf16 = fastembed_rt.load(minilm_path, dtype="bfloat16").encode(texts)
    cos = (bf16 * minilm.encode(texts)).sum(1)
    assert bf16.dtype == np.float32 and cos.min() > 0.99


def test_bfloat16_keeps_bfloat16_weights_and_computes_in_float32_where_it_is_not_native(minilm_path):
    """Where bfloat16 GEMMs are not native (AVX2: the suite's second pass), the linear weights and embedding tables
    stay bfloat16 (half the memory) and the activations are float32; with native ones, all of it is bfloat16."""
    model = fastembed_rt.load(minilm_path, dtype="bfloat16").model
    activations = torch.float32 if ops.widened_bfloat16() else torch.bfloat16
    layer = model.layers[0]
    assert model.word_embeddings.dtype == layer.up.dtype == layer.qkv.dtype == torch.bfloat16
    assert model.norm_weight.dtype == layer.ffn_norm_weight.dtype == activations
    hidden = model.forward(torch.tensor([101, 7592, 2088, 102] * 20), torch.tensor([0, 80], dtype=torch.int32), 80)
    assert hidden.dtype == activations


def test_one_spec_builds_several_embedders(minilm_path):
    """The embedder drops the loaded weights from its own copy of the spec, never from the caller's."""
    from fastembed_rt.engine import Embedder
    from fastembed_rt.loading import load_model_spec

    spec = load_model_spec(minilm_path)
    first, second = Embedder(spec, "cpu"), Embedder(spec, "cpu", dtype="int8")
    assert spec.weights and not first.spec.weights
    assert (first.encode("a query", normalize=True) * second.encode("a query", normalize=True)).sum() > 0.99
