"""Rerankers against sentence-transformers' CrossEncoder and transformers, on tiny random checkpoints of every
family made here, and the API's truncation, ranking and bad-input behaviour."""

import json
import shutil

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, processors

import fastembed_rt
from fastembed_rt import ops
from fastembed_rt.reranker import DEFAULT_INSTRUCTION, YES_NO_PREFIX, YES_NO_SUFFIX
from fastembed_rt.testing import cross_encoder_from, principal_head
from fastembed_rt.tokenization import TextTokenizer, clone_tokenizer

from .test_backbone_parity import tiny as tiny_backbone
from .test_hf_parity import tiny_config as tiny_bert_family

FAMILIES = ["bert", "xlm-roberta", "distilbert", "mpnet", "modernbert", "modernbert-mean", "gte-token-types",
            "nomic_bert", "jina_embeddings_v3", "qwen3", "llama"]  # fmt: skip


def classifier_config(kind: str, labels: int = 1):
    if kind in ("bert", "xlm-roberta", "distilbert"):
        config = tiny_bert_family(kind)
    elif kind == "modernbert-mean":
        config = tiny_backbone("modernbert")
        config.classifier_pooling = "mean"
    else:
        config = tiny_backbone(kind)
    config.num_labels = labels
    config.pad_token_id = 0  # [PAD] of the tokenizer below, which decoders' classifiers look for
    return config


def write_tokenizer(directory, minilm_path, roberta_template: bool = False, token_types: bool = False):
    """MiniLM's WordPiece tokenizer (BERT's pair template with token types), or with RoBERTa's pair template;
    token_types: transformers' tokenizer then gives them to the model, as BertTokenizer does."""
    tokenizer = Tokenizer.from_file(str(minilm_path / "tokenizer.json"))
    if roberta_template:
        tokenizer.post_processor = processors.RobertaProcessing(("[SEP]", 102), ("[CLS]", 101))
    tokenizer.save(str(directory / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "pad_token": "[PAD]", "unk_token": "[UNK]",
              "cls_token": "[CLS]", "sep_token": "[SEP]", "mask_token": "[MASK]", "model_max_length": 512,
              "model_input_names": ["input_ids", "attention_mask"] + (["token_type_ids"] if token_types else [])}  # fmt: skip
    (directory / "tokenizer_config.json").write_text(json.dumps(config))


def save_classifier(kind, directory, minilm_path, labels: int = 1):
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(classifier_config(kind, labels), attn_implementation="eager").eval()
    with torch.no_grad():
        for name, p in model.named_parameters():  # random norms and biases too
            torch.nn.init.normal_(p, std=0.5 if "norm" in name.lower() else 0.1)
    model.save_pretrained(directory, safe_serialization=True)
    write_tokenizer(directory, minilm_path, roberta_template=kind in ("xlm-roberta", "mpnet", "jina_embeddings_v3"),
                    token_types=kind in ("bert", "gte-token-types", "nomic_bert"))
    return model


@pytest.fixture(scope="module")
def sts_pairs(data_dir):
    rows = [line.split("\t") for line in (data_dir / "stsb" / "dev.tsv").read_text().splitlines()[1:40]]
    return [(r[1], r[2]) for r in rows] + [("a", "b"), ("what?", "")]


@pytest.mark.parametrize("kind", FAMILIES)
def test_scores_and_ranks_match_sentence_transformers(kind, tmp_path, minilm_path, sts_pairs):
    from sentence_transformers import CrossEncoder

    save_classifier(kind, tmp_path, minilm_path)
    want = CrossEncoder(str(tmp_path), device="cpu", max_length=64).predict(sts_pairs, batch_size=7)
    reranker = fastembed_rt.load(tmp_path)
    assert isinstance(reranker, fastembed_rt.Reranker)
    got = reranker.predict(sts_pairs, batch_tokens=300)
    assert got.shape == want.shape == (len(sts_pairs),)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    documents = [d for _, d in sts_pairs[:12]]
    ranked = reranker.rank(sts_pairs[0][0], documents)
    want_ranked = CrossEncoder(str(tmp_path), device="cpu", max_length=64).rank(sts_pairs[0][0], documents)
    want_scores = {r["corpus_id"]: r["score"] for r in want_ranked}
    for ours, theirs in zip(ranked, want_ranked):  # the same order, but for near-ties within float32 noise
        assert ours["corpus_id"] == theirs["corpus_id"] or abs(want_scores[ours["corpus_id"]] - theirs["score"]) < 1e-6


@pytest.mark.parametrize("kind", ["bert", "modernbert", "qwen3"])
def test_logits_match_transformers_with_several_labels(kind, tmp_path, minilm_path, sts_pairs):
    from transformers import AutoTokenizer

    model = save_classifier(kind, tmp_path, minilm_path, labels=3)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    reranker = fastembed_rt.load(tmp_path)
    assert reranker.num_labels == 3 and reranker.labels == ["LABEL_0", "LABEL_1", "LABEL_2"]
    pairs = sts_pairs[:9]
    with torch.no_grad():
        for query, document in pairs:  # one at a time: no padding in the reference
            inputs = tokenizer(query, document, return_tensors="pt")
            want = model(**inputs).logits[0].numpy()
            np.testing.assert_allclose(reranker.predict((query, document), raw_scores=True), want, rtol=1e-5, atol=1e-5)
    scores = reranker.predict(pairs)  # identity for several labels, as sentence-transformers
    np.testing.assert_allclose(scores, reranker.predict(pairs, raw_scores=True))
    probabilities = reranker.predict(pairs, apply_softmax=True)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="3 labels"):
        reranker.rank("q", ["d"])


def test_activation_named_by_the_checkpoint(tmp_path, minilm_path, sts_pairs):
    from sentence_transformers import CrossEncoder

    save_classifier("bert", tmp_path, minilm_path)
    config = json.loads((tmp_path / "config.json").read_text())
    for key, value in [("sentence_transformers", {"activation_fn": "torch.nn.modules.linear.Identity"}),
                       ("sbert_ce_default_activation_function", "torch.nn.modules.activation.Tanh")]:  # fmt: skip
        (tmp_path / "config.json").write_text(json.dumps({**config, key: value}))
        want = CrossEncoder(str(tmp_path), device="cpu").predict(sts_pairs[:5])
        np.testing.assert_allclose(fastembed_rt.load(tmp_path).predict(sts_pairs[:5]), want, rtol=1e-5, atol=1e-6)
    (tmp_path / "config.json").write_text(json.dumps({**config, "sentence_transformers": {"activation_fn": "torch.nn.Mish"}}))
    with pytest.raises(ValueError, match="unsupported activation_fn 'torch.nn.Mish'"):
        fastembed_rt.load(tmp_path)


def yes_no_tokenizer(directory):
    """A word-level tokenizer that knows the chat template's words and special tokens, and "yes" and "no"."""
    from tokenizers import AddedToken, models, pre_tokenizers

    words = set((YES_NO_PREFIX + YES_NO_SUFFIX + DEFAULT_INSTRUCTION + " <Instruct>: <Query>: <Document>: yes no").split())
    words |= {f"w{i}" for i in range(200)}
    vocab = {w: i for i, w in enumerate(["[UNK]", *sorted(words)])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.add_special_tokens([AddedToken(t, special=True) for t in ("<|im_start|>", "<|im_end|>", "<think>", "</think>")])
    tokenizer.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "[UNK]",
                                                                   "pad_token": "[UNK]", "model_max_length": 131072}))  # fmt: skip
    return tokenizer.get_vocab_size()


def save_yes_no_llm(directory, tied: bool):
    import transformers as tf

    vocab = yes_no_tokenizer(directory)
    config = tf.Qwen3Config(vocab_size=vocab, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                            num_key_value_heads=2, head_dim=24, max_position_embeddings=512, tie_word_embeddings=tied)  # fmt: skip
    torch.manual_seed(0)
    model = tf.Qwen3ForCausalLM(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            torch.nn.init.normal_(p, std=0.5 if "norm" in name else 0.1)
    model.save_pretrained(directory, safe_serialization=True)
    return model


@pytest.mark.parametrize("tied", [True, False])
def test_yes_no_reranker_matches_the_model_cards_computation(tmp_path, tied):
    """Qwen3-Reranker's model card: prompt template around each pair, P(yes) = softmax([no, yes]) at the last token."""
    from transformers import AutoTokenizer

    model = save_yes_no_llm(tmp_path, tied)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    yes, no = tokenizer.convert_tokens_to_ids("yes"), tokenizer.convert_tokens_to_ids("no")
    rng = np.random.default_rng(0)
    pairs = [(" ".join(f"w{i}" for i in rng.integers(0, 200, rng.integers(1, 6))),
              " ".join(f"w{i}" for i in rng.integers(0, 200, rng.integers(0, 40)))) for _ in range(6)]  # fmt: skip
    prefix = tokenizer.encode(YES_NO_PREFIX, add_special_tokens=False)
    suffix = tokenizer.encode(YES_NO_SUFFIX, add_special_tokens=False)
    want = []
    with torch.no_grad():
        for query, document in pairs:
            middle = tokenizer(f"<Instruct>: {DEFAULT_INSTRUCTION}\n<Query>: {query}\n<Document>: {document}")["input_ids"]
            logits = model(input_ids=torch.tensor([prefix + middle + suffix])).logits[0, -1]
            want.append(torch.log_softmax(torch.stack([logits[no], logits[yes]]), 0)[1].exp().item())
    reranker = fastembed_rt.load_reranker(tmp_path)
    assert reranker.yes_no and reranker.max_length == 512
    np.testing.assert_allclose(reranker.predict(pairs), want, rtol=1e-5, atol=1e-6)
    raw = reranker.predict(pairs, raw_scores=True)  # the log-odds, as sentence-transformers' LogitScore
    np.testing.assert_allclose(1 / (1 + np.exp(-raw)), want, rtol=1e-5, atol=1e-6)
    other = reranker.predict(pairs, instruction="w1 w2")
    assert not np.allclose(other, want)


class Recording:
    """A tokenizer, noting the longest text it is given."""

    def __init__(self, tokenizer):
        self.tokenizer, self.longest = tokenizer, 0
        self.truncation = tokenizer.truncation

    def _note(self, items):
        for item in items:
            self.longest = max(self.longest, *(len(t) for t in (item if isinstance(item, tuple) else (item,))))

    def get_added_tokens_decoder(self):
        return self.tokenizer.get_added_tokens_decoder()

    def encode(self, *texts, **kwargs):
        self._note([texts])
        return self.tokenizer.encode(*texts, **kwargs)

    def encode_batch(self, items, **kwargs):
        self._note(items)
        return self.tokenizer.encode_batch(items, **kwargs)


def test_documents_are_truncated_first_and_a_long_query_is_refused(tmp_path, minilm_path):
    save_classifier("bert", tmp_path, minilm_path)
    reranker = fastembed_rt.load(tmp_path)  # 80 positions
    query, document = "what is the answer", "the answer is " + "very " * 500 + "long"
    encoded = reranker.encode_pairs([query], [document])
    tokens = reranker.spec.tokenizer.encode(query, document).ids
    assert encoded.ids[0] == tokens[: reranker.max_length - 1] + [102] and encoded.overflowed == [True]
    assert encoded.token_types[0][:6] == [0] * 6 and encoded.token_types[0][-1] == 1
    long_query = "word " * 200
    with pytest.raises(fastembed_rt.QueryTooLong, match="pair 1: the query leaves no room"):
        reranker.predict([(query, document), (long_query, "short")])
    scores = reranker.predict([(query, document), (long_query, "short")], truncate=True)
    assert scores.shape == (2,) and np.isfinite(scores).all()
    # a document cut between words before tokenizing keeps the same kept tokens as the whole text
    huge = "answer " * 20000
    assert reranker.encode_pairs([query], [huge]).ids == [reranker.spec.tokenizer.encode(query, huge).ids[:79] + [102]]


def test_a_long_document_or_text_without_whitespace_is_read_in_part(tmp_path, minilm_path):
    """A Chinese document (no whitespace to cut at) was tokenized whole for every pair, and so was every single
    text sent to TEI's /predict: a few 290,000-character texts held a server's tokenizer for seconds. Now they are
    cut inside a word, with the same tokens as the whole text; a text of one long word is still read whole."""
    save_classifier("bert", tmp_path, minilm_path)
    reranker = fastembed_rt.load(tmp_path)  # 80 positions
    pairs, singles = (clone_tokenizer(reranker.spec.tokenizer, 80, strategy=s) for s in ("only_second", "longest_first"))
    chinese, one_word = "中文字符没有空格的长句子。" * 5000, "x" * 5000
    for document in (chinese, one_word, "短" * 700):
        assert reranker.encode_pairs(["a query"], [document]).ids == [pairs.encode("a query", document).ids]
    got = reranker.encode_inputs([(chinese,), (one_word,)], truncate=True)
    assert got.ids == [singles.encode(t).ids for t in (chinese, one_word)] and got.overflowed == [True, False]
    reranker._tokenizer, reranker._fallback = Recording(reranker._tokenizer), Recording(reranker._fallback)
    reranker._singles = TextTokenizer(reranker._fallback, 80)
    reranker.encode_pairs(["a query"], [chinese])
    reranker.encode_inputs([(chinese,)], truncate=True)
    assert max(reranker._tokenizer.longest, reranker._fallback.longest) <= 80 * 8


def test_rank_orders_ties_and_bad_input(tmp_path, minilm_path):
    save_classifier("bert", tmp_path, minilm_path)
    reranker = fastembed_rt.load(tmp_path)
    documents = ["the cat", "a dog", "the cat", "fish"]
    ranked = reranker.rank("pets", documents, return_documents=True)
    scores = reranker.predict([("pets", d) for d in documents])
    assert [r["corpus_id"] for r in ranked] == sorted(range(4), key=lambda i: (-scores[i], i))
    assert ranked[[r["corpus_id"] for r in ranked].index(0)]["score"] == pytest.approx(float(scores[0]))
    assert all(r["text"] == documents[r["corpus_id"]] for r in ranked)
    assert [r["corpus_id"] for r in reranker.rank("pets", documents, top_k=2)] == [r["corpus_id"] for r in ranked[:2]]
    assert reranker.rank("pets", []) == []
    assert set(reranker.rank("pets", ["x"])[0]) == {"corpus_id", "score"}
    with pytest.raises(ValueError, match="top_k must be a positive int"):
        reranker.rank("pets", documents, top_k=0)
    with pytest.raises(TypeError, match=r"documents\[1\] is int"):
        reranker.rank("pets", ["a", 3])
    with pytest.raises(TypeError, match=r"pairs\[0\]\[1\] is NoneType"):
        reranker.predict([("a", None)])
    with pytest.raises(TypeError, match=r"pairs\[1\] must be a \(query, document\) pair, got tuple of length 3"):
        reranker.predict([("a", "b"), ("a", "b", "c")])
    with pytest.raises(ValueError, match=r"pairs\[0\]\[0\] is not valid Unicode"):
        reranker.predict([("\ud800", "b")])
    with pytest.raises(ValueError, match=r"documents\[1\] is not valid Unicode"):
        reranker.encode_pairs(["q", "q"], ["fine", "\ud800"])


def test_an_embedding_model_is_not_a_reranker(minilm_path, tmp_path):
    assert isinstance(fastembed_rt.load(minilm_path), fastembed_rt.Embedder)
    with pytest.raises(ValueError, match="not a reranker checkpoint"):
        fastembed_rt.load_reranker(minilm_path)


def arguana(data_dir, name: str, count: int, words: int | None = None) -> list[str]:
    lines = (data_dir / "arguana" / name).read_text().splitlines()[:count]
    return [" ".join(json.loads(line)["text"].split()[:words]) for line in lines]


@pytest.fixture(scope="module")
def minilm_cross_encoder(tmp_path_factory, minilm_path, data_dir):
    """all-MiniLM-L6-v2's real encoder and pooler under a principal-component head (testing.principal_head), fitted
    on calibration queries other than the tested ones: real activations, and documents spread as a trained head would."""
    directory = cross_encoder_from(minilm_path, tmp_path_factory.mktemp("minilm-ce"))
    return principal_head(directory, arguana(data_dir, "queries.jsonl", 16, 40)[10:], arguana(data_dir, "corpus.jsonl", 90)[60:])


@pytest.mark.parametrize("dtype", ["bfloat16", "int8"])
def test_precisions_keep_the_ranking(minilm_cross_encoder, dtype, data_dir):
    """Per query, Spearman of bfloat16 / int8 scores against float32 on 60 real ArguAna passages."""
    from scipy.stats import spearmanr

    queries, documents = arguana(data_dir, "queries.jsonl", 3, 40), arguana(data_dir, "corpus.jsonl", 60)
    reference = fastembed_rt.load(minilm_cross_encoder)
    quantized = fastembed_rt.load(minilm_cross_encoder, dtype=dtype)
    for query in queries:
        want = reference.predict([(query, d) for d in documents], raw_scores=True)
        got = quantized.predict([(query, d) for d in documents], raw_scores=True)
        assert spearmanr(want, got).statistic >= 0.99, dtype


@pytest.mark.parametrize("kind", FAMILIES)
def test_int8_rerankers_keep_the_feed_forward_input_projections_in_float(kind, tmp_path, minilm_path):
    """In every architecture (GTE reorders its gate and up rows before building the layer), while the other
    projections are int8."""
    save_classifier(kind, tmp_path, minilm_path)
    for layer in fastembed_rt.load(tmp_path, dtype="int8").model.layers:
        up = layer.gate_up if hasattr(layer, "gate_up") else layer.up
        assert (up.kind, layer.down.kind) == ("bfloat16" if ops.fast_bfloat16() else "float32", "int8"), kind


def test_every_backbone_has_a_reranker_head():
    from fastembed_rt.models.heads import HEADS
    from fastembed_rt.models.registry import ARCHITECTURES

    assert set(HEADS) == set(ARCHITECTURES)


@pytest.mark.parametrize("dtype", ["bfloat16", "int8"])
def test_yes_no_reranker_at_every_precision(tmp_path, dtype):
    save_yes_no_llm(tmp_path, tied=False)
    pairs = [("w1 w2", "w3 w4 w5"), ("w7", "w9 w9 w1"), ("w1 w2 w3", "w1")]
    want = fastembed_rt.load_reranker(tmp_path).predict(pairs, raw_scores=True)
    got = fastembed_rt.load_reranker(tmp_path, dtype=dtype).predict(pairs, raw_scores=True)
    np.testing.assert_allclose(got, want, atol=0.05 * np.abs(want).max() + 1e-3)


def test_a_huge_query_is_not_tokenized_per_document(tmp_path, minilm_path):
    """A 2 MB query against 16 documents: refused (or cut, with truncate) after the tokenizer read about
    max_length x 8 characters of it, with the same first tokens as the whole query."""

    save_classifier("bert", tmp_path, minilm_path)
    reranker = fastembed_rt.load(tmp_path)
    whole = reranker._fallback.encode("animal rights " * 2000, "a document")
    reranker._tokenizer, reranker._fallback = Recording(reranker._tokenizer), Recording(reranker._fallback)
    huge = "animal rights " * 150_000
    with pytest.raises(fastembed_rt.QueryTooLong, match="pair 0"):
        reranker.encode_pairs([huge] * 16, ["a document"] * 16)
    encoded = reranker.encode_pairs([huge] * 16, ["a document"] * 16, truncate=True)
    assert max(reranker._tokenizer.longest, reranker._fallback.longest) <= reranker.max_length * 8
    assert encoded.ids[0] == whole.ids and len(encoded.ids[0]) == reranker.max_length
    long_words = "x" * 700  # over the character cap, but one token: kept whole
    assert reranker.encode_pairs([long_words], ["doc"]).ids[0] == reranker.spec.tokenizer.encode(long_words, "doc").ids[:80]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "int8"])
def test_the_last_layer_runs_on_the_head_rows_alone(minilm_cross_encoder, dtype, data_dir, monkeypatch):
    """A [CLS] head reads one row per pair, so the encoder's last layer computes that row alone past its keys and
    values: the scores are the whole forward's."""
    reranker = fastembed_rt.load(minilm_cross_encoder, dtype=dtype)
    pairs = [(q, d) for q in arguana(data_dir, "queries.jsonl", 2, 40) for d in arguana(data_dir, "corpus.jsonl", 20)]
    pairs.append(("a", "b"))
    model_class, seen = type(reranker.model), []
    forward = model_class.forward

    def spy(self, *args, **kwargs):
        seen.append(kwargs.get("rows"))
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(model_class, "forward", spy)
    got = reranker.predict(pairs, raw_scores=True, batch_tokens=1000)
    assert seen and all(rows is not None for rows in seen)
    monkeypatch.setattr(model_class, "takes_rows", False)
    seen.clear()
    want = reranker.predict(pairs, raw_scores=True, batch_tokens=1000)
    assert seen and all(rows is None for rows in seen)
    tolerance = 1e-5 if dtype == "float32" else 2e-2
    np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("tokens", [[1, 5, 9], [40, 1, 130]], ids=str)  # the fused encoder's batches, the op path's
def test_encoder_rows_are_the_full_forwards_rows(minilm_cross_encoder, tokens):
    model = fastembed_rt.load(minilm_cross_encoder).model
    g = torch.Generator().manual_seed(sum(tokens))
    ids = torch.randint(1000, 20000, (sum(tokens),), generator=g)
    cu = torch.tensor([0, *torch.tensor(tokens).cumsum(0).tolist()], dtype=torch.int32)
    rows = cu[:-1].long()
    got = model.forward(ids, cu, max(tokens), rows=rows)
    torch.testing.assert_close(got, model.forward(ids, cu, max(tokens))[rows], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="rows and key_lengths"):
        model.forward(ids, cu, max(tokens), key_lengths=torch.tensor(tokens), rows=rows)
