"""BGE-M3's three outputs from one forward pass, on a tiny random XLM-R with random heads, against FlagEmbedding's
formulas written out here over transformers' XLMRobertaModel."""

import numpy as np
import pytest
import torch

import fastembed_rt
from fastembed_rt.testing import synthetic_texts

from .test_sparse_encoder import VOCAB, save_tokenizer

TEXTS = synthetic_texts(20, 0, 50, VOCAB, seed=4) + ["", "w1", "w7 w7 w2"]


def tiny_bge_m3(directory, colbert_dim=16):
    import transformers

    torch.manual_seed(7)
    config = transformers.XLMRobertaConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                           intermediate_size=64, max_position_embeddings=80, pad_token_id=0)  # fmt: skip
    model = transformers.XLMRobertaModel(config, add_pooling_layer=False).eval()
    model.save_pretrained(directory)
    save_tokenizer(directory)
    sparse, colbert = torch.nn.Linear(32, 1), torch.nn.Linear(32, colbert_dim)
    torch.save(sparse.state_dict(), directory / "sparse_linear.pt")
    torch.save(colbert.state_dict(), directory / "colbert_linear.pt")
    return model, sparse, colbert


def test_three_outputs_match_flagembedding(tmp_path):
    import transformers

    model, sparse_linear, colbert_linear = tiny_bge_m3(tmp_path)
    ours = fastembed_rt.load_bge_m3(tmp_path)
    calls = []
    forward = ours.model.forward
    ours.model.forward = lambda *a, **k: calls.append(1) or forward(*a, **k)
    got = ours.encode(TEXTS, output="all", batch_tokens=120)
    batches = len(calls)
    assert batches >= 2  # one forward per batch, not one per output
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path)
    special = {tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id, tokenizer.unk_token_id}
    for i, text in enumerate(TEXTS):
        ids = tokenizer(text, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            state = model(input_ids=ids).last_hidden_state[0]
            dense = torch.nn.functional.normalize(state[0], dim=-1)
            colbert = torch.nn.functional.normalize(colbert_linear(state[1:]), dim=-1)
            weights = torch.relu(sparse_linear(state))[:, 0]
        np.testing.assert_allclose(got["dense"][i], dense.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got["multivector"][i], colbert.numpy(), rtol=1e-5, atol=1e-6)
        lexical = {}
        for w, token in zip(weights.tolist(), ids[0].tolist()):
            if token not in special and w > 0:
                lexical[token] = max(lexical.get(token, 0.0), w)
        idx, val = got["sparse"].row(i)
        assert idx.tolist() == sorted(lexical), f"text {i}"
        np.testing.assert_allclose(val, [lexical[t] for t in sorted(lexical)], rtol=1e-5, atol=1e-6)
    # each output alone is the same as from "all"
    np.testing.assert_array_equal(ours.encode(TEXTS, output="dense", batch_tokens=120), got["dense"])
    assert np.array_equal(ours.encode(TEXTS, output="sparse", batch_tokens=120).to_dense(), got["sparse"].to_dense())
    np.testing.assert_array_equal(ours.encode(TEXTS, output="multivector", batch_tokens=120).vectors, got["multivector"].vectors)
    # FlagEmbedding's colbert_score: MaxSim over the query's tokens, divided by their count
    q, d = got["multivector"][0], got["multivector"][1]
    want = (q @ d.T).max(axis=1).sum() / len(q)
    np.testing.assert_allclose(ours.colbert_score(got["multivector"].take([0]), got["multivector"].take([1]))[0, 0], want, rtol=1e-5)


def test_bad_heads_are_named(tmp_path):
    tiny_bge_m3(tmp_path)
    torch.save({"weight": torch.zeros(16, 31)}, tmp_path / "colbert_linear.pt")
    with pytest.raises(ValueError, match="colbert_linear.pt: expected 'weight' \\[dim, 32\\], got \\(16, 31\\)"):
        fastembed_rt.load_bge_m3(tmp_path)
    (tmp_path / "colbert_linear.pt").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="colbert_linear.pt: not a weights-only state dict"):
        fastembed_rt.load_bge_m3(tmp_path)
    (tmp_path / "colbert_linear.pt").unlink()
    with pytest.raises(FileNotFoundError, match="colbert_linear.pt is missing"):
        fastembed_rt.load_bge_m3(tmp_path)
    model = fastembed_rt.load_sparse(tmp_path)  # the sparse head alone still loads
    with pytest.raises(ValueError, match="output must be one of dense, sparse, multivector, all"):
        tiny_bge_m3(tmp_path / "again") and fastembed_rt.load_bge_m3(tmp_path / "again").encode("w1", output="colbert")
    assert model.dimension == VOCAB
