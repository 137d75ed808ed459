"""Model directories: the files read, the forms accepted, and errors that name what is wrong."""

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import fastembed_rt
from fastembed_rt.loading import load_model_spec
from fastembed_rt.pooling import PoolingConfig
from fastembed_rt.weights import load_weights, read_safetensors


def copy_model(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_bundled_model_spec(minilm_path):
    spec = load_model_spec("all-MiniLM-L6-v2")
    assert spec.path == minilm_path
    assert spec.max_seq_length == 256
    assert spec.pooling == PoolingConfig(("mean",))
    assert spec.normalize and spec.similarity_fn_name == "cosine" and not spec.dense


@pytest.mark.parametrize(
    "config,modes",
    [
        ({"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}, ("cls",)),
        ({"pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": True}, ("max", "mean")),
        ({"pooling_mode_lasttoken": True}, ("lasttoken",)),
        ({}, ("mean",)),
        ({"pooling_mode": "weightedmean"}, ("weightedmean",)),
        ({"pooling_mode": ["cls", "mean_sqrt_len_tokens"], "include_prompt": False}, ("cls", "mean_sqrt_len_tokens")),
    ],
)
def test_pooling_config_forms(config, modes):
    parsed = PoolingConfig.from_json({"word_embedding_dimension": 8, **config})
    assert parsed.modes == modes
    assert parsed.include_prompt == config.get("include_prompt", True)


def test_unknown_pooling_mode_names_file(tmp_path, minilm_path):
    model = copy_model(minilm_path, tmp_path / "m")
    (model / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": "median"}))
    with pytest.raises(ValueError, match=r"1_Pooling/config.json: unknown pooling mode 'median'"):
        load_model_spec(model)


@pytest.mark.parametrize("missing", ["config.json", "tokenizer.json", "model.safetensors", "1_Pooling/config.json"])
def test_missing_file_is_named(missing, tmp_path, minilm_path):
    model = copy_model(minilm_path, tmp_path / "m")
    (model / missing).unlink()
    with pytest.raises(FileNotFoundError, match=missing.split("/")[-1].replace(".", r"\.")):
        load_model_spec(model)


def test_unsupported_architecture_lists_supported(tmp_path, minilm_path):
    model = copy_model(minilm_path, tmp_path / "m")
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "model_type": "t5"}))
    with pytest.raises(ValueError, match=r"model_type='t5'; supported: bert, roberta, xlm-roberta, camembert, distilbert"):
        fastembed_rt.load(model)


def test_unknown_name_is_explained(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # no Hub to ask, network or not
    with pytest.raises(FileNotFoundError, match="neither a directory, a bundled model name .* nor a Hugging Face Hub id"):
        fastembed_rt.load("no such model")
    with pytest.raises(FileNotFoundError, match="'no-such-model' is no local directory, is not in the Hugging Face cache"):
        fastembed_rt.load("no-such-model")


def test_safetensors_views_are_memory_mapped_and_exact(minilm_path, tmp_path):
    from safetensors.torch import load_file

    ours = read_safetensors(minilm_path / "model.safetensors")
    theirs = load_file(minilm_path / "model.safetensors")
    assert ours.keys() == theirs.keys()
    for name in theirs:
        assert torch.equal(ours[name], theirs[name]), name
    weight = ours["embeddings.word_embeddings.weight"]
    assert not weight.untyped_storage().resizable()  # a view of the map, not a private copy


def test_corrupt_safetensors_is_named(tmp_path):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes((10**9).to_bytes(8, "little") + b"{}")
    with pytest.raises(ValueError, match="model.safetensors: header length"):
        read_safetensors(bad)


def test_sharded_safetensors_and_pickle_free_bin(tmp_path, minilm_path):
    tensors = {k: v.clone() for k, v in read_safetensors(minilm_path / "model.safetensors").items()}
    names = sorted(tensors)
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    save_file({k: tensors[k] for k in names[::2]}, sharded / "model-00001-of-00002.safetensors")
    save_file({k: tensors[k] for k in names[1::2]}, sharded / "model-00002-of-00002.safetensors")
    weight_map = {k: f"model-0000{1 + i % 2}-of-00002.safetensors" for i, k in enumerate(names)}
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    loaded = load_weights(sharded)
    assert loaded.keys() == tensors.keys() and all(torch.equal(loaded[k], tensors[k]) for k in names)

    pickled = tmp_path / "bin"
    pickled.mkdir()
    torch.save(tensors, pickled / "pytorch_model.bin")
    loaded = load_weights(pickled)
    assert all(torch.equal(loaded[k], tensors[k]) for k in names)


def test_old_norm_names_load_as_transformers_renames_them(tmp_path, minilm_path, real_texts):
    """A checkpoint whose LayerNorms are saved as gamma / beta (TensorFlow-era BERT conversions) loads as the same
    model; other tensors named gamma or beta keep their names."""
    tensors = read_safetensors(minilm_path / "model.safetensors")
    renamed = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v.clone()
               for k, v in tensors.items()}  # fmt: skip
    assert sum(k.endswith(".gamma") for k in renamed) == 13
    renamed["scale.gamma"] = torch.ones(3)
    old = tmp_path / "old_names"
    shutil.copytree(minilm_path, old)
    save_file(renamed, old / "model.safetensors")
    loaded = load_weights(old)
    assert loaded.keys() == tensors.keys() | {"scale.gamma"}
    assert all(torch.equal(loaded[k], tensors[k]) for k in tensors)
    texts = real_texts[:8]
    np.testing.assert_array_equal(fastembed_rt.load(old).encode(texts), fastembed_rt.load(minilm_path).encode(texts))


def test_pickle_with_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(Exception, match="Weights only load failed"):
        load_weights(tmp_path)


def test_sentence_transformers_configs_are_read(tmp_path, minilm_path, real_texts):
    model = copy_model(minilm_path, tmp_path / "m")
    (model / "config_sentence_transformers.json").write_text(json.dumps({
        "prompts": {"query": "query: ", "passage": "passage: "},
        "default_prompt_name": "query",
        "similarity_fn_name": "dot",
        "truncate_dim": 64,
    }))  # fmt: skip
    (model / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 32, "do_lower_case": False}))
    spec = load_model_spec(model)
    assert spec.prompts["query"] == "query: " and spec.default_prompt_name == "query"
    assert spec.similarity_fn_name == "dot" and spec.truncate_dim == 64 and spec.max_seq_length == 32

    embedder = fastembed_rt.load(model)
    base = fastembed_rt.load(minilm_path)
    text = ["What is the capital of France?"]
    assert embedder.dimension == 64
    np.testing.assert_allclose(embedder.encode(text), base.encode(text, prompt="query: ", truncate_dim=64), atol=1e-6)
    np.testing.assert_allclose(embedder.encode(text, prompt_name="passage"), base.encode(text, prompt="passage: ", truncate_dim=64), atol=1e-6)
    with pytest.warns(fastembed_rt.TruncationWarning):
        assert max(embedder.count_tokens(real_texts[:50])) == 32
        embedder.encode(real_texts[:50])
    a, b = embedder.encode(["one", "two"]), embedder.encode(["three"])
    np.testing.assert_allclose(embedder.similarity(a, b), a @ b.T, rtol=1e-5)


def test_dense_and_normalize_modules_match_sentence_transformers(tmp_path, minilm_path, real_texts):
    from sentence_transformers import SentenceTransformer, models

    transformer = models.Transformer(str(minilm_path), max_seq_length=256)
    torch.manual_seed(0)
    dense = models.Dense(384, 96, activation_function=torch.nn.Tanh())
    st = SentenceTransformer(modules=[transformer, models.Pooling(384, "cls"), dense, models.Normalize()], device="cpu")
    st.save(str(tmp_path / "st"))
    texts = real_texts[:40]
    want = st.encode(texts)
    got = fastembed_rt.load(tmp_path / "st").encode(texts)
    assert got.shape == (40, 96)
    np.testing.assert_allclose(got, want, atol=2e-5)
    dense_dir = next((tmp_path / "st").glob("*Dense"))
    config = json.loads((dense_dir / "config.json").read_text())
    (dense_dir / "config.json").write_text(json.dumps({**config, "in_features": 768}))
    with pytest.raises(ValueError, match=r"Dense: tensor 'linear.weight' has shape \[96, 384\], but config.json makes it \[96, 768\]"):
        fastembed_rt.load(tmp_path / "st")


def edit_config(model, **changes):
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, **changes}))


@pytest.mark.parametrize("changes,message", [
    ({"hidden_size": 1_200_000_000}, "tensor 'encoder.layer.0.attention.self.query.weight' has shape [384, 384], but "
                                     "config.json makes it [1200000000, 1200000000]"),
    ({"intermediate_size": 1024}, "tensor 'encoder.layer.0.intermediate.dense.weight' has shape [1536, 384], but "
                                  "config.json makes it [1024, 384]"),
    ({"vocab_size": 50000}, "tensor 'embeddings.word_embeddings.weight' has shape [30522, 384], but config.json makes it "
                            "[50000, 384]"),
    ({"num_hidden_layers": 7}, "checkpoint is missing tensor 'encoder.layer.6.attention.self.query.weight'"),
])  # fmt: skip
def test_a_config_that_does_not_describe_the_weights_is_refused_at_load(tmp_path, minilm_path, changes, message):
    """Before: hidden_size 1,200,000,000 loaded, and encode failed with "shape '[3, 3, 12, 100000000]' is invalid"."""
    model = copy_model(minilm_path, tmp_path / "m")
    edit_config(model, **changes)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        fastembed_rt.load(model)


def test_a_config_without_a_needed_field_is_named(tmp_path, minilm_path):
    model = copy_model(minilm_path, tmp_path / "m")
    config = json.loads((model / "config.json").read_text())
    del config["num_attention_heads"]
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="config.json has no 'num_attention_heads', which model_type 'bert' needs"):
        fastembed_rt.load(model)


def test_a_garbage_tokenizer_file_is_named(tmp_path, minilm_path):
    model = copy_model(minilm_path, tmp_path / "m")
    (model / "tokenizer.json").write_bytes(b"\xff\xfe not a tokenizer \x00")
    with pytest.raises(ValueError, match=r"m/tokenizer.json: not a tokenizer the tokenizers library can read"):
        load_model_spec(model)
    (model / "tokenizer.json").write_text('{"version": "1.0", "model": 3}')
    with pytest.raises(ValueError, match=r"m/tokenizer.json: not a tokenizer"):
        load_model_spec(model)
