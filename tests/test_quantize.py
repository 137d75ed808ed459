"""quantize_embeddings is bit-identical to sentence-transformers'."""

import numpy as np
import pytest
from sentence_transformers.quantization import quantize_embeddings as st_quantize

from fastembed_rt import quantize_embeddings
from fastembed_rt.quantize import PRECISIONS


@pytest.fixture(scope="module")
def real_embeddings(minilm, real_texts):
    return minilm.encode(real_texts[:300])


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("shape", [(1000, 384), (3, 7), (17, 1), (5, 1032)])
def test_random_bit_identical(precision, shape):
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape).astype(np.float32)
    x[0, 0] = 0.0  # exactly zero → bit 0
    calibration = rng.standard_normal((50, shape[1])).astype(np.float32)
    for kwargs in ({}, {"calibration_embeddings": calibration}, {"ranges": np.vstack((calibration.min(0), calibration.max(0)))}):
        if precision.endswith("int8") and shape[0] < 2 and not kwargs:
            continue
        got, want = quantize_embeddings(x, precision, **kwargs), st_quantize(x, precision, **kwargs)
        assert got.dtype == want.dtype and got.shape == want.shape
        assert np.array_equal(got, want)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_real_embeddings_bit_identical(precision, real_embeddings):
    got = quantize_embeddings(real_embeddings[100:], precision, calibration_embeddings=real_embeddings[:100])
    want = st_quantize(real_embeddings[100:], precision, calibration_embeddings=real_embeddings[:100])
    assert np.array_equal(got, want) and got.dtype == want.dtype


def test_constant_dimension_and_empty():
    x = np.ones((4, 3), dtype=np.float32)
    assert np.array_equal(quantize_embeddings(x, "int8"), st_quantize(x, "int8"))
    assert quantize_embeddings(np.zeros((0, 9), np.float32), "int8").shape == (0, 9)
    assert quantize_embeddings(np.zeros((0, 9), np.float32), "ubinary").shape == (0, 2)


def test_errors():
    x = np.ones((4, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="unsupported precision 'int4'"):
        quantize_embeddings(x, "int4")
    with pytest.raises(TypeError, match="must be floating point"):
        quantize_embeddings(x.astype(np.int8), "int8")
    with pytest.raises(ValueError, match=r"ranges must be \[2\]\[3\] finite numbers \(int8 calibration\), got shape \[2, 4\]"):
        quantize_embeddings(x, "int8", ranges=np.zeros((2, 4)))
    with pytest.raises(ValueError, match="at least 2 embeddings"):
        quantize_embeddings(x[:1], "uint8")


@pytest.mark.parametrize("low,high", [(np.nan, 1.0), (0.0, np.inf), (1.0, 0.0), (-3e38, 3e38)])
def test_ranges_that_would_quantize_to_garbage_are_refused(low, high):
    """Before: NaN ranges gave NaN-derived codes, min > max garbage codes and +-3e38 (whose width overflows float32)
    all-NaN scores, each without a word."""
    ranges = np.array([[0.0, low, 0.0], [1.0, high, 1.0]])
    with pytest.raises(ValueError, match=r"ranges: dimension 1 has min .* and max .*; each needs finite min <= max"):
        quantize_embeddings(np.ones((4, 3), np.float32), "int8", ranges=ranges)


def test_embeddings_holding_nan_or_inf_are_named():
    """Before: NaN became code 0 and inf code 127 (int8) without a word."""
    x = np.ones((4, 3), dtype=np.float32)
    x[2, 1] = np.nan
    for precision in ("int8", "uint8"):
        with pytest.raises(ValueError, match=r"embeddings contain NaN or inf \(row 2"):
            quantize_embeddings(x, precision, ranges=np.array([[0.0] * 3, [1.0] * 3]))


def test_encode_precision(minilm):
    texts = ["first text", "a second one", "and a third"]
    floats = minilm.encode(texts)
    assert np.array_equal(minilm.encode(texts, precision="ubinary"), st_quantize(floats, "ubinary"))
    assert np.array_equal(minilm.encode(texts, precision="int8"), st_quantize(floats, "int8"))
