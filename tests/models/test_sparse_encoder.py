"""SparseEncoder against sentence-transformers' SparseEncoder and transformers' *ForMaskedLM on tiny random
checkpoints: SPLADE on BERT and DistilBERT MLMs (tied and untied decoders, max and sum pooling, both
activations), inference-free Router queries, BGE-M3's sparse head (its formula written out here), pruning,
decoding, bad input, and the memory the fused head saves."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import fastembed_rt
from fastembed_rt.sparse import SparseEmbeddings
from fastembed_rt.testing import synthetic_texts, synthetic_tokenizer

VOCAB = 120
TEXTS = synthetic_texts(24, 0, 40, VOCAB, seed=3) + ["", "w1", "w7 w7 w7 w2"]


def save_tokenizer(directory, vocab=VOCAB):
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(tokenizer_object=synthetic_tokenizer(vocab), unk_token="[UNK]", cls_token="[CLS]",
                                        sep_token="[SEP]", pad_token="[PAD]", mask_token="[MASK]", model_max_length=64)  # fmt: skip
    tokenizer.save_pretrained(directory)


def masked_lm(directory, family="bert", tied=True, vocab=VOCAB, hidden=32, seed=0):
    """A random *ForMaskedLM checkpoint in the Hugging Face layout, with a shifted decoder bias so that a third or
    so of the logits are positive (as in trained SPLADE heads)."""
    import transformers

    torch.manual_seed(seed)
    if family == "bert":
        config = transformers.BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
                                         intermediate_size=64, max_position_embeddings=64, tie_word_embeddings=tied)  # fmt: skip
        model = transformers.BertForMaskedLM(config)
    else:
        config = transformers.DistilBertConfig(vocab_size=vocab, dim=hidden, n_layers=2, n_heads=2, hidden_dim=64,
                                               max_position_embeddings=64, tie_word_embeddings=tied)  # fmt: skip
        model = transformers.DistilBertForMaskedLM(config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2) if p.dim() > 1 else p.normal_(0, 0.1)
        model.get_output_embeddings().bias.normal_(-0.5, 0.5)
    model.save_pretrained(directory)
    save_tokenizer(directory, vocab)
    return directory, model.eval()


def sentence_transformers_splade(source, directory, pooling="max", activation="relu"):
    from sentence_transformers import SparseEncoder
    from sentence_transformers.sparse_encoder.modules import MLMTransformer, SpladePooling

    model = SparseEncoder(modules=[MLMTransformer(str(source)), SpladePooling(pooling, activation)], device="cpu")
    model.save(str(directory))
    return SparseEncoder(str(directory), device="cpu")


def dense_of(st_embeddings) -> np.ndarray:
    return st_embeddings.to_dense().numpy() if st_embeddings.is_sparse else st_embeddings.numpy()


def assert_same_vectors(ours: SparseEmbeddings, want: np.ndarray):
    got = ours.to_dense()
    assert got.shape == want.shape
    assert np.array_equal(got != 0, want != 0), "the non-zero sets differ"
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("family, tied", [("bert", True), ("bert", False), ("distilbert", True), ("distilbert", False)])
@pytest.mark.parametrize("pooling, activation", [("max", "relu"), ("sum", "relu"), ("max", "log1p_relu")])
def test_matches_sentence_transformers_sparse_encoder(tmp_path, family, tied, pooling, activation):
    source, _ = masked_lm(tmp_path / "mlm", family, tied, seed=len(family) + tied)
    st = sentence_transformers_splade(source, tmp_path / "st", pooling, activation)
    ours = fastembed_rt.load(tmp_path / "st")
    assert isinstance(ours, fastembed_rt.SparseEncoder) and ours.dimension == VOCAB
    assert_same_vectors(ours.encode(TEXTS, batch_tokens=97), dense_of(st.encode(TEXTS, convert_to_tensor=True)))
    # the same pruning keeps the same terms
    pruned = ours.encode(TEXTS, max_active_dims=5)
    assert_same_vectors(pruned, dense_of(st.encode(TEXTS, convert_to_tensor=True, max_active_dims=5)))
    assert max(np.diff(pruned.indptr)) <= 5


@pytest.mark.parametrize("family", ["bert", "distilbert"])
def test_plain_masked_lm_folder_is_splade_of_its_logits(tmp_path, family):
    """A *ForMaskedLM folder without sentence-transformers files: max over tokens of log1p(relu(logits))."""
    from transformers import AutoTokenizer

    directory, model = masked_lm(tmp_path / "mlm", family, tied=True, seed=7)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    weights = torch.log1p(torch.relu(logits)) * batch["attention_mask"][..., None]
    want = weights.amax(dim=1).numpy()
    ours = fastembed_rt.load(directory)
    assert_same_vectors(ours.encode(TEXTS), want)


def test_inference_free_queries_match_sentence_transformers(tmp_path):
    from sentence_transformers import SparseEncoder
    from sentence_transformers.base.modules import Router
    from sentence_transformers.sparse_encoder.modules import MLMTransformer, SparseStaticEmbedding, SpladePooling
    from transformers import AutoTokenizer

    source, _ = masked_lm(tmp_path / "mlm", seed=11)
    idf = torch.rand(VOCAB) * 3
    idf[10:20] = 0  # terms without weight stay out of the vectors
    static = SparseStaticEmbedding(tokenizer=AutoTokenizer.from_pretrained(source), weight=idf, frozen=True)
    router = Router.for_query_document(query_modules=[static], document_modules=[MLMTransformer(str(source)), SpladePooling("max")])
    SparseEncoder(modules=[router], device="cpu").save(str(tmp_path / "st"))
    st = SparseEncoder(str(tmp_path / "st"), device="cpu")
    ours = fastembed_rt.load(tmp_path / "st")
    assert ours.query_is_inference_free
    queries = ours.encode_query(TEXTS)
    assert_same_vectors(queries, dense_of(st.encode_query(TEXTS, convert_to_tensor=True)))
    assert_same_vectors(ours.encode_document(TEXTS), dense_of(st.encode_document(TEXTS, convert_to_tensor=True)))
    assert_same_vectors(ours.encode(TEXTS), dense_of(st.encode(TEXTS, convert_to_tensor=True)))  # the default route
    # a query is its distinct tokens' weights: no model ran
    idx, val = queries.row(TEXTS.index("w7 w7 w7 w2"))
    ids = sorted({AutoTokenizer.from_pretrained(source).convert_tokens_to_ids(w) for w in ("w7", "w2")})
    assert idx.tolist() == [i for i in ids if idf[i] != 0] and np.allclose(val, idf[idx].numpy())


def test_bge_m3_sparse_head_matches_flagembedding_formula(tmp_path):
    """token weight = relu(sparse_linear(last hidden state)); per distinct id the largest; CLS/EOS/PAD/UNK dropped."""
    import transformers

    torch.manual_seed(5)
    config = transformers.XLMRobertaConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                           intermediate_size=64, max_position_embeddings=80, pad_token_id=0)  # fmt: skip
    model = transformers.XLMRobertaModel(config, add_pooling_layer=False).eval()
    model.save_pretrained(tmp_path)
    save_tokenizer(tmp_path)
    linear = torch.nn.Linear(32, 1)
    torch.save(linear.state_dict(), tmp_path / "sparse_linear.pt")
    ours = fastembed_rt.load_sparse(tmp_path)
    got = ours.encode(TEXTS)
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path)
    special = {tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id, tokenizer.unk_token_id}
    for i, text in enumerate(TEXTS):
        ids = tokenizer(text, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            weights = torch.relu(linear(model(input_ids=ids).last_hidden_state))[0, :, 0]
        want = {}
        for w, token in zip(weights.tolist(), ids[0].tolist()):
            if token not in special and w > 0:
                want[token] = max(want.get(token, 0.0), w)
        idx, val = got.row(i)
        assert idx.tolist() == sorted(want), f"text {i}"
        np.testing.assert_allclose(val, [want[t] for t in sorted(want)], rtol=1e-5, atol=1e-6)


def test_sparse_embeddings_convert_and_decode(tmp_path):
    scipy = pytest.importorskip("scipy")
    source, _ = masked_lm(tmp_path / "mlm", seed=2)
    model = fastembed_rt.load(source)
    vectors = model.encode(TEXTS[:6])
    dense = vectors.to_dense()
    assert vectors.indices.dtype == np.int32 and vectors.values.dtype == np.float32
    for idx, _ in vectors:
        assert np.all(np.diff(idx) > 0), "indices sorted and distinct"
    assert isinstance(vectors.to_scipy(), scipy.sparse.csr_matrix)
    assert np.array_equal(vectors.to_scipy().toarray(), dense)
    coo = vectors.to_torch()
    assert coo.is_sparse and torch.equal(coo.to_dense(), torch.from_numpy(dense))
    np.testing.assert_allclose(model.similarity(vectors, vectors), dense @ dense.T, rtol=1e-5)
    decoded = model.decode(vectors, top_k=3)
    for (idx, val), pairs in zip(vectors, decoded):
        order = np.argsort(-val, kind="stable")[:3]
        assert pairs == [(f"w{idx[j] - 5}" if idx[j] >= 5 else pairs[k][0], float(val[j])) for k, j in enumerate(order)]
    subset = vectors[[4, 1]]
    assert np.array_equal(subset.to_dense(), dense[[4, 1]])
    assert np.array_equal(SparseEmbeddings.concatenate([vectors[:2], vectors[2:]]).to_dense(), dense)


def test_quantized_precisions_stay_close_to_float32(tmp_path):
    source, _ = masked_lm(tmp_path / "mlm", hidden=64, seed=4)
    texts = synthetic_texts(40, 5, 60, VOCAB, seed=9)
    base = fastembed_rt.load(source).encode(texts).to_dense()
    for dtype in ("bfloat16", "int8"):
        other = fastembed_rt.load(source, dtype=dtype).encode(texts).to_dense()
        cosine = (base * other).sum(1) / (np.linalg.norm(base, axis=1) * np.linalg.norm(other, axis=1))
        assert cosine.min() >= 0.99, (dtype, cosine.min())


def test_bad_input_and_refusals(tmp_path):
    source, _ = masked_lm(tmp_path / "mlm", seed=6)
    model = fastembed_rt.load(source)
    with pytest.raises(TypeError, match=r"texts\[1\] is int"):
        model.encode(["a", 3])
    with pytest.raises(ValueError, match="max_active_dims must be a positive int"):
        model.encode(["w1"], max_active_dims=0)
    with pytest.raises(ValueError, match="task must be 'query' or 'document'"):
        model.encode(["w1"], task="passage")
    with pytest.raises(ValueError, match="is a sparse"):
        from fastembed_rt.engine import load_embedder

        load_embedder(source)
    pooling = tmp_path / "st"
    sentence_transformers_splade(source, pooling)
    config = json.loads((pooling / "1_SpladePooling" / "config.json").read_text())
    (pooling / "1_SpladePooling" / "config.json").write_text(json.dumps({**config, "pooling_strategy": "mean"}))
    with pytest.raises(ValueError, match=r"1_SpladePooling/config.json: unsupported pooling_strategy 'mean'"):
        fastembed_rt.load(pooling)
    with pytest.raises(ValueError, match="not a sparse model"):
        fastembed_rt.load_sparse("all-MiniLM-L6-v2")
    with pytest.raises(ValueError, match="indices must lie"):
        SparseEmbeddings.from_rows([([0, VOCAB], [1.0, 2.0])], VOCAB)
    with pytest.raises(ValueError, match="index 3 appears twice"):
        SparseEmbeddings.from_rows([([3, 3], [1.0, 2.0])], VOCAB)


def test_fused_head_keeps_memory_bounded(tmp_path):
    """A 4,096-token batch of 100-token texts onto 30,522 terms: the logits alone would be 500 MB."""
    from fastembed_rt.testing import random_bert

    directory = random_bert(tmp_path / "bert", hidden=64, layers=1, heads=2, intermediate=128, vocab_size=30522)
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "architectures": ["BertForMaskedLM"]}))
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(directory / "model.safetensors"))
    tensors |= {"cls.predictions.transform.dense.weight": torch.randn(64, 64) * 0.1,
                "cls.predictions.transform.dense.bias": torch.zeros(64),
                "cls.predictions.transform.LayerNorm.weight": torch.ones(64),
                "cls.predictions.transform.LayerNorm.bias": torch.zeros(64), "cls.predictions.bias": torch.zeros(30522)}  # fmt: skip
    save_file(tensors, str(directory / "model.safetensors"))
    script = textwrap.dedent(f"""
        import json, re
        import fastembed_rt
        from fastembed_rt.testing import synthetic_texts

        def rss_kb(field):
            return int(re.search(field + r":\\s+(\\d+)", open("/proc/self/status").read()).group(1))

        model = fastembed_rt.load({str(directory)!r}, device="cpu")
        texts = synthetic_texts(41, 98, 98, 30522, seed=1)  # 100 tokens each with CLS and SEP: 4,100 tokens
        model.encode(texts[:2])
        before = rss_kb("VmRSS")
        open("/proc/self/clear_refs", "w").write("5")  # restart the peak (VmHWM) from here
        vectors = model.encode(texts, batch_tokens=4100)
        print(json.dumps({{"growth_mb": (rss_kb("VmHWM") - before) / 1024, "vectors": len(vectors)}}))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    print(result.stdout)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["vectors"] == 41 and report["growth_mb"] < 64, report


def test_unsupported_modules_and_bad_head_files_are_named(tmp_path):
    source, _ = masked_lm(tmp_path / "mlm", seed=8)
    st = tmp_path / "st"
    sentence_transformers_splade(source, st)
    modules = json.loads((st / "modules.json").read_text())
    (st / "modules.json").write_text(json.dumps(modules + [{"idx": 2, "name": "2", "path": "", "type": "x.SparseAutoEncoder"}]))
    with pytest.raises(ValueError, match=r"unsupported modules \['SparseAutoEncoder'\]"):
        fastembed_rt.load(st)
    (source / "config.json").write_text((source / "config.json").read_text().replace("ForMaskedLM", "Model"))
    (source / "sparse_linear.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="sparse_linear.pt: not a weights-only state dict"):
        fastembed_rt.load_sparse(source)
