"""A truncating tokenizer reads only the head (or tail) of a long text, and gives exactly the tokens the whole
text gives: for WordPiece (MiniLM), byte-level BPE and Metaspace Unigram tokenizers, both directions, texts
around the cut, without whitespace, with long whitespace runs and with words too long to cut near."""

import random

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from fastembed_rt.tokenization import CHARS_PER_KEPT_TOKEN, TextTokenizer


def trained(kind: str, texts: list[str]) -> Tokenizer:
    if kind == "bpe":
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=2000, special_tokens=["<s>", "</s>"],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
        bos, eos = "<s>", "</s>"
    else:
        tokenizer = Tokenizer(models.Unigram())
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=2000, special_tokens=["<s>", "</s>", "<unk>"], unk_token="<unk>")
        bos, eos = "<s>", "</s>"
    tokenizer.train_from_iterator(texts, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", special_tokens=[(bos, tokenizer.token_to_id(bos)), (eos, tokenizer.token_to_id(eos))]
    )
    return tokenizer


@pytest.fixture(scope="module")
def tokenizers_under_test(minilm, real_texts):
    return {"wordpiece": minilm.spec.tokenizer, "bpe": trained("bpe", real_texts), "unigram": trained("unigram", real_texts)}


def awkward_long_texts(real_texts: list[str], max_length: int) -> list[str]:
    rng = random.Random(0)
    limit = max_length * CHARS_PER_KEPT_TOKEN
    joined = [" ".join(rng.sample(real_texts, 40))[: rng.randint(limit - 50, 12 * limit)] for _ in range(12)]
    return joined + [
        "x" * (3 * limit),  # no whitespace to cut at: read whole
        "word\n\n" + " " * (2 * limit) + "tail words here",  # few tokens in the head: read whole
        ("y" * 300 + " ") * (limit // 50),  # words of 300 characters: a few tokens per 2,048 characters
        "  leading and trailing whitespace  " * (limit // 20),
        " ".join(["supercalifragilistic"] * limit),
        "é😀 中文字符 ünïcödé " * (limit // 10),
        "中文字符没有空格的长句子。" * (limit // 4),  # no whitespace: cut inside a "word", kept if words say so
        ("https://example.com/a/very/long/path?query=value&other=thing#" * (limit // 20)),
        "中文" * limit + " tail",  # whitespace only far past the limit
        "short text",
        "",
    ]


@pytest.mark.parametrize("kind", ["wordpiece", "bpe", "unigram"])
@pytest.mark.parametrize("direction", ["right", "left"])
@pytest.mark.parametrize("max_length", [1, 7, 256])
def test_long_texts_tokenize_as_if_read_whole(tokenizers_under_test, real_texts, kind, direction, max_length):
    whole = Tokenizer.from_str(tokenizers_under_test[kind].to_str())
    whole.no_padding()
    whole.enable_truncation(max_length=max_length, direction=direction)
    texts = awkward_long_texts(real_texts, max_length)
    expected = whole.encode_batch(texts)
    got = TextTokenizer(whole, max_length).encode(texts)
    for i, (e, ids, over) in enumerate(zip(expected, got.ids, got.overflowed)):
        assert ids == e.ids, (i, texts[i][:80])
        assert over == bool(e.overflowing), i


class SpyTokenizer:
    """A tokenizer that notes the length of every text it is given."""

    def __init__(self, inner):
        self.inner = inner
        self.truncation = inner.truncation
        self.seen = []

    def get_added_tokens_decoder(self):
        return self.inner.get_added_tokens_decoder()

    def encode_batch(self, texts, add_special_tokens):
        self.seen.extend(len(t) for t in texts)
        return self.inner.encode_batch(texts, add_special_tokens=add_special_tokens)


def test_only_the_head_of_a_long_text_reaches_the_tokenizer(minilm):
    """The cost attack of a 35 KB text truncated to 256 tokens: the tokenizer sees at most 8 characters per
    kept token of it (it saw all 35 KB before)."""
    text = ("The quick brown fox jumps over the lazy dog. " * 800)[:35000]
    spy = SpyTokenizer(minilm.spec.tokenizer)
    got = TextTokenizer(spy, minilm.max_seq_length).encode([text] * 3)
    assert got.overflowed == [True] * 3 and len(got.ids[0]) == 256
    assert got.ids[0] == minilm.spec.tokenizer.encode(text).ids
    assert max(spy.seen) <= 256 * CHARS_PER_KEPT_TOKEN


def test_only_the_head_of_a_long_text_without_whitespace_is_read(minilm):
    """Chinese text has no whitespace to cut at: 290,000 characters were tokenized whole (1.5 s here) to keep 256
    tokens, and a server request with four such texts held up every other request for 2.3 s. Now it is cut inside
    a word, and kept when the cut word's tokens all fell past the limit (each Chinese character is a word to
    BERT's normalizer), with the same tokens as the whole text."""
    text = "中文字符没有空格的长句子。" * 22_000
    spy = SpyTokenizer(minilm.spec.tokenizer)
    got = TextTokenizer(spy, minilm.max_seq_length).encode([text])
    assert got.overflowed == [True] and got.ids[0] == minilm.spec.tokenizer.encode(text).ids
    assert max(spy.seen) <= 256 * CHARS_PER_KEPT_TOKEN
