"""Rotary / relative-position encoders and decoder LLMs against Hugging Face transformers, on tiny random
configs made here: last hidden states within 1e-4 (float32), pooled + normalized vectors at cosine >= 0.99999,
on one packed batch of mixed lengths (1 and past every sliding window included)."""

import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from .test_hf_parity import both_hidden_states

LENGTHS = [1, 7, 2, 33, 5, 70, 19]  # past the sliding windows below (8, 16, and ModernBERT's +-8)
VOCAB = 30522


def tiny(kind: str):
    import transformers as tf

    decoder = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
                   num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-6)  # fmt: skip
    encoder = dict(vocab_size=VOCAB, hidden_size=48, intermediate_size=72, num_hidden_layers=2, num_attention_heads=4,
                   max_position_embeddings=256)  # fmt: skip
    configs = {
        "mpnet": lambda: tf.MPNetConfig(**encoder),
        "modernbert": lambda: tf.ModernBertConfig(**{**encoder, "num_hidden_layers": 4}, local_attention=16,
                                                  global_attn_every_n_layers=3, pad_token_id=0, bos_token_id=101,
                                                  eos_token_id=102, cls_token_id=101, sep_token_id=102),
        "modernbert-biases": lambda: tf.ModernBertConfig(**encoder, local_attention=16, norm_bias=True, attention_bias=True,
                                                         mlp_bias=True, hidden_activation="gelu_pytorch_tanh", pad_token_id=0,
                                                         bos_token_id=101, eos_token_id=102, cls_token_id=101, sep_token_id=102),
        "gte": lambda: tf.GteConfig(**encoder, type_vocab_size=0),
        "gte-token-types": lambda: tf.GteConfig(**encoder, type_vocab_size=2),
        "nomic_bert": lambda: tf.NomicBertConfig(**encoder),
        "jina_embeddings_v3": lambda: tf.JinaEmbeddingsV3Config(**encoder),
        "llama": lambda: tf.LlamaConfig(**decoder),
        "llama3-rope": lambda: tf.LlamaConfig(**decoder, rope_parameters={
            "rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 32}),
        "llama-linear-rope-bias": lambda: tf.LlamaConfig(**decoder, attention_bias=True, mlp_bias=True,
                                                         rope_parameters={"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0}),
        "mistral": lambda: tf.MistralConfig(**decoder, sliding_window=8),
        "qwen2": lambda: tf.Qwen2Config(**decoder, use_sliding_window=True, sliding_window=16, max_window_layers=1),
        "qwen3": lambda: tf.Qwen3Config(**decoder, head_dim=24),
        "gemma3": lambda: tf.Gemma3TextConfig(**decoder, head_dim=16, sliding_window=8, query_pre_attn_scalar=24,
                                              layer_types=["sliding_attention", "full_attention", "sliding_attention"]),
        "gemma3-bidirectional": lambda: tf.Gemma3TextConfig(**decoder, head_dim=16, sliding_window=8,
                                                            use_bidirectional_attention=True,
                                                            layer_types=["sliding_attention", "full_attention", "sliding_attention"]),
    }  # fmt: skip
    return configs[kind]()


def save_random(config, directory, minilm_path):
    from transformers import AutoModel

    torch.manual_seed(0)
    model = AutoModel.from_config(config, attn_implementation="eager").eval()
    with torch.no_grad():
        for name, p in model.named_parameters():  # random norms and biases too, not just ones and zeros
            torch.nn.init.normal_(p, std=0.5 if "norm" in name else 0.08)
    model.save_pretrained(directory, safe_serialization=True)
    shutil.copy(minilm_path / "tokenizer.json", directory / "tokenizer.json")
    return model


ENCODERS = ["mpnet", "modernbert", "modernbert-biases", "gte", "gte-token-types", "nomic_bert", "jina_embeddings_v3"]
DECODERS = ["llama", "llama3-rope", "llama-linear-rope-bias", "mistral", "qwen2", "qwen3", "gemma3", "gemma3-bidirectional"]
KINDS = ENCODERS + DECODERS


@pytest.mark.parametrize("kind", KINDS)
def test_hidden_states_and_pooled_vectors_match_transformers(kind, tmp_path, minilm_path):
    hf_model = save_random(tiny(kind), tmp_path, minilm_path)
    got, want, batch, spec = both_hidden_states(tmp_path, hf_model, LENGTHS, VOCAB)
    assert got.shape == want.shape
    error = (got - want).abs().max().item()
    assert error <= 1e-4, f"{kind}: max abs error {error:.3g}"
    # Pooled as the architecture pools by default (decoders: the last token), then normalized.
    if kind in DECODERS:
        assert spec.pooling.modes == ("lasttoken",)
        got_pooled, want_pooled = got[batch.cu_seqlens[1:].long() - 1], want[batch.cu_seqlens[1:].long() - 1]
    else:
        assert spec.pooling.modes == ("mean",)
        got_pooled, want_pooled = (torch.stack([t[a:b].mean(0) for a, b in zip(batch.cu_seqlens[:-1], batch.cu_seqlens[1:])])
                                   for t in (got, want))  # fmt: skip
    cos = F.cosine_similarity(F.normalize(got_pooled, dim=1), F.normalize(want_pooled, dim=1))
    assert cos.min().item() >= 0.99999
    assert np.isfinite(got.numpy()).all()


@pytest.mark.parametrize("kind", ["qwen3", "gemma3-bidirectional", "modernbert"])
def test_sentence_transformers_directory_with_prompts(kind, tmp_path, minilm_path):
    """A full sentence-transformers directory (the decoders: last-token pooling + Normalize, with an instruction
    prompt, as Qwen3-Embedding ships) gives sentence-transformers' vectors."""
    import json

    from sentence_transformers import SentenceTransformer

    import fastembed_rt

    save_random(tiny(kind), tmp_path, minilm_path)
    for name in ("tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(minilm_path / name, tmp_path / name)
    pooling = "lasttoken" if kind in DECODERS else "mean"
    (tmp_path / "1_Pooling").mkdir()
    dimension = tiny(kind).hidden_size
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": dimension, "pooling_mode": pooling}))
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
               {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]  # fmt: skip
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    (tmp_path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 128, "do_lower_case": False}))
    prompts = {"query": "Instruct: Given a web search query, retrieve relevant passages\nQuery: ", "document": ""}
    (tmp_path / "config_sentence_transformers.json").write_text(json.dumps({"prompts": prompts, "default_prompt_name": None,
                                                                            "similarity_fn_name": "cosine"}))  # fmt: skip
    texts = ["what is the capital of france", "x", "a much longer query about the weather " * 6, ""]
    want = SentenceTransformer(str(tmp_path), device="cpu").encode(texts, prompt_name="query")
    got = fastembed_rt.load(tmp_path).encode(texts, prompt_name="query")
    cos = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cos.min() >= 0.99999


@pytest.mark.parametrize("kind", ["modernbert", "gte", "qwen3", "gemma3", "llama"])
@pytest.mark.parametrize("dtype", ["bfloat16", "int8"])
def test_every_precision_runs_close_to_float32(kind, dtype, tmp_path, minilm_path):
    """bfloat16 and int8 on the rotary encoders and decoders (int8 keeps the QKV GEMM in bfloat16 where that is
    fast, so the q/k norms meet bfloat16 there)."""
    import fastembed_rt

    save_random(tiny(kind), tmp_path, minilm_path)
    texts = ["a short text", "another one, a little longer than the first", "x"]
    want = fastembed_rt.load(tmp_path).encode(texts, normalize=True)
    got = fastembed_rt.load(tmp_path, dtype=dtype).encode(texts, normalize=True)
    assert (got * want).sum(1).min() >= 0.98, kind


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "mpnet"])  # MPNet's relative bias: no rows path
def test_last_layer_on_the_head_rows_alone(kind, tmp_path, minilm_path):
    """forward(rows=one token per sequence) runs the last layer past its keys and values for those rows only, where
    their queries see every key (no sliding window there; causal: the last tokens), else the whole layer: the full
    forward's rows either way."""
    import fastembed_rt

    save_random(tiny(kind), tmp_path, minilm_path)
    model = fastembed_rt.load(tmp_path).model
    assert model.takes_rows
    lengths = [1, 9, 40, 3]
    ids = torch.randint(5, VOCAB, (sum(lengths),), generator=torch.Generator().manual_seed(len(kind)))
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    full = model.forward(ids, cu, max(lengths))
    for rows in (cu[1:].long() - 1, cu[:-1].long()):  # the last tokens; the first (under a causal mask: the whole layer)
        torch.testing.assert_close(model.forward(ids, cu, max(lengths), rows=rows), full[rows], rtol=1e-5, atol=1e-5)
