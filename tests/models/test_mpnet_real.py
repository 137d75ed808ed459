"""The real all-mpnet-base-v2 (from PyPI) against sentence-transformers on real texts."""

import fastembed_rt
from fastembed_rt.testing import row_cosines


def test_all_mpnet_base_v2_matches_sentence_transformers(mpnet_path, real_texts):
    from sentence_transformers import SentenceTransformer

    texts = real_texts[:32]  # short STS-B sentences and long ArguAna documents (8 to 345 of its tokens)
    ours = fastembed_rt.load(mpnet_path)
    assert ours.dimension == 768 and ours.max_seq_length == 384
    got = ours.encode(texts)
    # batches of 8 (sorted by length, as sentence-transformers does) pad far less than 32: 12.7 s against 32 s here
    want = SentenceTransformer(str(mpnet_path), device="cpu").encode(texts, batch_size=8)
    cosines = row_cosines(got, want)
    assert cosines.min() >= 0.99999, cosines.min()


def test_all_mpnet_base_v2_int8_keeps_the_precision_gate(mpnet_path, real_texts):
    """int8 (7-bit output and up projections, QKV in float) stays within the int8 gate of float32 on real texts:
    per-vector cosine >= 0.99."""
    texts = real_texts[:32]
    want = fastembed_rt.load(mpnet_path).encode(texts)
    got = fastembed_rt.load(mpnet_path, dtype="int8").encode(texts)
    cosines = row_cosines(got, want)
    assert cosines.min() >= 0.99, cosines.min()
