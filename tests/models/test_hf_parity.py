"""Our packed models against Hugging Face transformers on tiny random-weight configs made in the test."""

import shutil

import numpy as np
import pytest
import torch

import fastembed_rt
from fastembed_rt.loading import load_model_spec
from fastembed_rt.models.registry import build_model
from fastembed_rt.tokenization import pack

LENGTHS = [1, 7, 2, 33, 5, 64]


def tiny_config(kind):
    import transformers as tf

    common = dict(vocab_size=30522, max_position_embeddings=80)
    if kind == "bert":
        return tf.BertConfig(hidden_size=36, num_hidden_layers=2, num_attention_heads=3, intermediate_size=52, type_vocab_size=2, **common)
    if kind in ("roberta", "xlm-roberta", "camembert"):
        cls = {"roberta": tf.RobertaConfig, "xlm-roberta": tf.XLMRobertaConfig, "camembert": tf.CamembertConfig}[kind]
        return cls(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=40, type_vocab_size=1,
                   pad_token_id=1, hidden_act="gelu_new", **common)  # fmt: skip
    if kind == "distilbert":
        return tf.DistilBertConfig(dim=40, n_layers=2, n_heads=5, hidden_dim=56, **common)
    raise ValueError(kind)


def save_tiny_model(kind, directory, minilm_path):
    from transformers import AutoModel

    torch.manual_seed(0)
    model = AutoModel.from_config(tiny_config(kind), attn_implementation="eager").eval()
    for p in model.parameters():  # random LayerNorm and bias values too, not just ones and zeros
        torch.nn.init.normal_(p, std=0.3)
    model.save_pretrained(directory, safe_serialization=True)
    shutil.copy(minilm_path / "tokenizer.json", directory / "tokenizer.json")
    return model


def hf_hidden_states(model, ids_per_seq):
    longest = max(len(s) for s in ids_per_seq)
    pad_id = model.config.pad_token_id or 0
    input_ids = torch.full((len(ids_per_seq), longest), pad_id, dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    for i, seq in enumerate(ids_per_seq):
        input_ids[i, : len(seq)] = torch.tensor(seq)
        mask[i, : len(seq)] = 1
    with torch.no_grad():
        hidden = model(input_ids=input_ids, attention_mask=mask).last_hidden_state
    return torch.cat([hidden[i, : len(seq)] for i, seq in enumerate(ids_per_seq)])


def both_hidden_states(directory, hf_model, lengths, vocab=30522):
    """Ours on one packed batch of random token ids of these lengths, and transformers' on a padded batch:
    (ours [T, H], transformers' [T, H], the PackedBatch, the ModelSpec)."""
    g = torch.Generator().manual_seed(1)
    ids = [torch.randint(5, vocab, (n,), generator=g).tolist() for n in lengths]
    spec = load_model_spec(directory)
    ours = build_model(spec.config, spec.weights, torch.device("cpu"), torch.float32)
    batch = pack(ids)
    return ours.forward(batch.input_ids, batch.cu_seqlens, batch.max_seqlen), hf_hidden_states(hf_model, ids), batch, spec


@pytest.mark.parametrize("kind", ["bert", "roberta", "xlm-roberta", "camembert", "distilbert"])
def test_last_hidden_states_match_transformers(kind, tmp_path, minilm_path):
    hf_model = save_tiny_model(kind, tmp_path, minilm_path)
    got, want, _, _ = both_hidden_states(tmp_path, hf_model, LENGTHS)
    assert got.shape == want.shape
    assert (got - want).abs().max().item() <= 1e-4


def test_plain_hugging_face_directory_embeds_with_mean_pooling(tmp_path, minilm_path):
    """No modules.json: mean pooling and no normalization, as sentence-transformers does for such a directory."""
    from sentence_transformers import SentenceTransformer

    save_tiny_model("bert", tmp_path, minilm_path)
    texts = ["a short one", "", "a somewhat longer sentence with more words in it", "x"]
    got = fastembed_rt.load(tmp_path, device="cpu").encode(texts)
    want = SentenceTransformer(str(tmp_path), device="cpu").encode(texts)
    np.testing.assert_allclose(got, want, atol=1e-4)
