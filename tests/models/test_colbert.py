"""ColBERT against PyLate (run from .venv-pylate, which scripts/install.sh --test builds) on tiny random checkpoints
in both layouts: token vectors of queries (expanded, attending or not to the expansion tokens, or not expanded)
and documents (skiplist), and MaxSim scores."""

import json
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import fastembed_rt
from fastembed_rt.colbert import ColBERT, load_colbert
from fastembed_rt.multivector import MultiVectorEmbeddings
from fastembed_rt.tokenization import CHARS_PER_KEPT_TOKEN, clone_tokenizer

REPO = Path(__file__).resolve().parents[2]
PYLATE_PYTHON = REPO / ".venv-pylate" / "bin" / "python"
PUNCTUATION = list(".,!?;:")
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[unused0]", "[unused1]"]
WORDS = 90


def texts(count, low, high, seed):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        n = int(rng.integers(low, high + 1))
        tokens = [f"w{rng.integers(WORDS)}" if rng.random() > 0.2 else str(rng.choice(PUNCTUATION)) for _ in range(n)]
        out.append(" ".join(tokens))
    return out


QUERIES = texts(9, 1, 14, seed=1) + ["", "w3 w3 ?"]
DOCUMENTS = texts(13, 0, 40, seed=2) + ["! , .", "w1", "w2 xyz w4"]  # all punctuation; one token; an unknown word


def tiny_bert(directory: Path, hidden=32, layers=2, heads=2, family="bert") -> Path:
    """A random BERT, XLM-RoBERTa or ModernBERT backbone with a WordPiece vocabulary that holds punctuation and
    markers."""
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIALS + PUNCTUATION + [f"w{i}" for i in range(WORDS)])}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                             special_tokens=[("[CLS]", 2), ("[SEP]", 3)])  # fmt: skip
    torch.manual_seed(0)
    shape = dict(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                 intermediate_size=2 * hidden, max_position_embeddings=80)  # fmt: skip
    if family == "bert":
        model = transformers.BertModel(transformers.BertConfig(**shape))
    elif family == "xlm-roberta":
        model = transformers.XLMRobertaModel(transformers.XLMRobertaConfig(**shape, pad_token_id=0), add_pooling_layer=False)
    else:  # sliding-window layers narrower than the documents (but where every query token sees a key)
        config = transformers.ModernBertConfig(**shape, pad_token_id=0, cls_token_id=2, sep_token_id=3, bos_token_id=2,
                                               eos_token_id=3, local_attention=20, global_attn_every_n_layers=2)  # fmt: skip
        model = transformers.ModernBertModel(config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3) if p.dim() > 1 else p.normal_(0, 0.1)
    model.save_pretrained(directory)
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                            pad_token="[PAD]", mask_token="[MASK]", model_max_length=80).save_pretrained(directory)  # fmt: skip
    return directory


def stanford_colbert(directory: Path, dim=12, metadata=None) -> Path:
    """An HF_ColBERT checkpoint as Stanford's ColBERT saves it: bert.* tensors and `linear` in one file."""
    from safetensors.torch import load_file, save_file

    tiny_bert(directory)
    tensors = {"bert." + k: v for k, v in load_file(directory / "model.safetensors").items()}
    tensors["linear.weight"] = torch.randn(dim, 32, generator=torch.Generator().manual_seed(4)) * 0.3
    save_file(tensors, directory / "model.safetensors")
    config = json.loads((directory / "config.json").read_text())
    config["architectures"] = ["HF_ColBERT"]
    (directory / "config.json").write_text(json.dumps(config))
    if metadata is not None:
        (directory / "artifact.metadata").write_text(json.dumps(metadata))
    return directory


# The cases checked against PyLate: {name: (how to make the input folder, the build spec or None)}. PyLate builds
# a sentence-transformers layout from a tiny BERT and its settings; a Stanford layout is made here and only read.
EXPANSIONS = {
    "expansion": {"query_length": 12, "document_length": 20},
    "attended-expansion": {"query_length": 16, "document_length": 30, "attend_to_expansion_tokens": True},
    "no-expansion": {"query_length": 10, "document_length": 24, "do_query_expansion": False},
    "markers-and-skiplist": {"query_length": 12, "document_length": 20, "query_prefix": "[unused0]",
                             "document_prefix": "[unused1]", "skiplist_words": ["!", "w5"]},
}  # fmt: skip
STANFORD_METADATA = {"defaults": None, "metadata": {"query_token_id": "[unused0]", "doc_token_id": "[unused1]",
                                                    "query_maxlen": 9, "doc_maxlen": 25, "attend_to_mask_tokens": False}}  # fmt: skip


def reference_cases():
    short = {"query_length": 12, "document_length": 20}
    cases = {f"{name}-bias{bias}": ("bert", {"dim": 12, "bias": bias, "settings": settings})
             for name, settings in EXPANSIONS.items() for bias in (False, True)}  # fmt: skip
    cases |= {f"residual-{dim}": ("bert", {"dim": dim, "bias": True, "residual": True, "settings": short}) for dim in (12, 32)}
    cases |= {family: (family, {"dim": 12, "bias": False, "settings": {"query_length": 12, "document_length": 40}})
              for family in ("xlm-roberta", "modernbert")}  # fmt: skip
    cases |= {f"stanford-{name}": ("stanford", metadata) for name, metadata in STANFORD_METADATA.items()}
    return cases


@pytest.fixture(scope="module")
def pylate_references(tmp_path_factory) -> dict:
    """{case: (model folder, PyLate's token vectors and scores)}, all cases from one run of .venv-pylate."""
    assert PYLATE_PYTHON.exists(), "the ColBERT reference needs .venv-pylate: run scripts/setup_pylate.sh"
    root = tmp_path_factory.mktemp("pylate")
    jobs, folders = [], {}
    for name, (source, spec) in reference_cases().items():
        if source == "stanford":
            folders[name], build = stanford_colbert(root / name / "stanford", metadata=spec), None
        else:
            folders[name] = root / name / "colbert"
            build = {**spec, "base": str(tiny_bert(root / name / "base", family=source))}
        jobs.append({"model": str(folders[name]), "build": build, "queries": QUERIES, "documents": DOCUMENTS,
                     "out": str(root / name / "ref.npz")})  # fmt: skip
    (root / "jobs.json").write_text(json.dumps(jobs))
    run = subprocess.run([str(PYLATE_PYTHON), str(Path(__file__).with_name("pylate_reference.py")), str(root / "jobs.json")],
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    references = {}
    for name, folder in folders.items():
        ref = np.load(root / name / "ref.npz")
        references[name] = folder, {"queries": [ref[f"q{i}"] for i in range(len(QUERIES))],
                                    "documents": [ref[f"d{i}"] for i in range(len(DOCUMENTS))], "scores": ref["scores"]}  # fmt: skip
    return references


def assert_matches(ours: MultiVectorEmbeddings, want: list, what: str):
    assert len(ours) == len(want)
    for i, (a, b) in enumerate(zip(ours, want)):
        assert a.shape == b.shape, f"{what} {i}: {a.shape} tokens vs PyLate's {b.shape}"
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5, err_msg=f"{what} {i}")


def check_against_pylate(model: ColBERT, ref: dict):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = model.encode(QUERIES, is_query=True, batch_tokens=64)
        d = model.encode(DOCUMENTS, batch_tokens=97)
    assert_matches(q, ref["queries"], "query")
    assert_matches(d, ref["documents"], "document")
    np.testing.assert_allclose(model.similarity(q, d), ref["scores"], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("expansion", list(EXPANSIONS))
@pytest.mark.parametrize("bias", [False, True])
def test_pylate_layout_matches_pylate(pylate_references, expansion, bias):
    model_dir, ref = pylate_references[f"{expansion}-bias{bias}"]
    model = fastembed_rt.load(model_dir)
    assert isinstance(model, ColBERT) and model.dimension == 12
    check_against_pylate(model, ref)


@pytest.mark.parametrize("dim", [12, 32], ids=["residual-projected", "residual-identity"])
def test_pylate_residual_dense_matches_pylate(pylate_references, tmp_path, dim):
    """PyLate's Dense(use_residual=True): x added to the projection, through its own linear when the widths differ."""
    model_dir, ref = pylate_references[f"residual-{dim}"]
    model = fastembed_rt.load(model_dir)
    assert model.dimension == dim and model.projection[0].use_residual
    assert (model.projection[0].residual_weight is None) == (dim == 32)
    check_against_pylate(model, ref)
    if dim == 12:  # a residual linear the file lacks is named
        from safetensors.torch import load_file, save_file

        model_dir = shutil.copytree(model_dir, tmp_path / "colbert")
        dense = next(p.parent for p in model_dir.glob("*/model.safetensors") if "residual.weight" in load_file(p))
        save_file({k: v for k, v in load_file(dense / "model.safetensors").items() if k != "residual.weight"}, dense / "model.safetensors")
        with pytest.raises(ValueError, match="needs 'residual.weight'"):
            fastembed_rt.load(model_dir)


@pytest.mark.parametrize("family", ["xlm-roberta", "modernbert"])
def test_other_backbones_match_pylate(pylate_references, family):
    model_dir, ref = pylate_references[family]
    model = fastembed_rt.load(model_dir)
    assert model.spec.config["model_type"] == family
    check_against_pylate(model, ref)


@pytest.mark.parametrize("metadata", list(STANFORD_METADATA))
def test_stanford_layout_matches_pylate(pylate_references, metadata):
    model_dir, ref = pylate_references[f"stanford-{metadata}"]
    model = load_colbert(model_dir)
    assert model.spec.query_prefix_id == 5 and model.spec.document_prefix_id == 6  # [unused0], [unused1]
    check_against_pylate(model, ref)


def test_expansion_tokens_are_not_attended(tmp_path):
    """A query's real tokens do not change when it is expanded (the expansion tokens are keys of no query)."""
    model = load_colbert(stanford_colbert(tmp_path / "m"))
    ids = model.tokenize(["w1 w2 w3"], is_query=True).ids
    real = 6  # CLS, marker, 3 words, SEP
    assert len(ids[0]) == model.query_length and ids[0][real:] == [4] * (model.query_length - real)  # [MASK]s
    expanded = model.embed_token_ids(ids, is_query=True)[0]
    alone = model.embed_token_ids([ids[0][:real]], is_query=True)[0]
    np.testing.assert_allclose(expanded[:real], alone, rtol=1e-5, atol=1e-6)
    assert not np.allclose(expanded[real], expanded[real - 1])


def test_a_long_text_is_read_in_part_with_the_whole_texts_tokens(tmp_path):
    """ColBERT tokenized every text whole: 4 MB of text held a server's tokenizer for seconds to keep 80 tokens.
    Now only its head is read (cut between words, or inside one where there is no whitespace), with the tokens
    of the whole text."""
    model = load_colbert(stanford_colbert(tmp_path / "m"))
    spaced, unspaced = "w1 w2, w3. " * 100_000, "w1,w2.w3;" * 100_000
    for is_query in (True, False):
        whole = clone_tokenizer(model.spec.tokenizer, model._limit(is_query))
        for text in (spaced, unspaced):
            want = whole.encode(text).ids
            want.insert(1, model.spec.query_prefix_id if is_query else model.spec.document_prefix_id)
            assert model.tokenize([text], is_query).ids[0][: len(want)] == want
        seen = []
        tokenizer = model._tokenizers[is_query]
        inner = tokenizer._encode_batch
        tokenizer._encode_batch = lambda texts, **kwargs: seen.extend(map(len, texts)) or inner(texts, **kwargs)
        model.tokenize([spaced], is_query)
        tokenizer._encode_batch = inner
        assert max(seen) <= model._limit(is_query) * CHARS_PER_KEPT_TOKEN


def test_large_batches_and_the_fused_path_agree(tmp_path):
    """Single short queries take the fused C++ encoder, long batches the op-by-op path: the same vectors."""
    model = load_colbert(stanford_colbert(tmp_path / "m"))
    together = model.encode(QUERIES, is_query=True)
    for i, text in enumerate(QUERIES):
        np.testing.assert_allclose(model.encode(text, is_query=True)[0], together[i], rtol=1e-5, atol=1e-5)


def test_precisions_stay_close_to_float32(tmp_path):
    model_dir = stanford_colbert(tmp_path / "m")
    want = load_colbert(model_dir).encode(DOCUMENTS)
    for dtype in ("bfloat16", "int8"):
        got = load_colbert(model_dir, dtype=dtype).encode(DOCUMENTS)
        cos = np.sum(got.vectors * want.vectors, axis=1)  # unit vectors
        assert cos.min() > 0.98, (dtype, cos.min())


def test_rank_orders_documents_by_maxsim(tmp_path):
    model = load_colbert(stanford_colbert(tmp_path / "m"))
    ranked = model.rank("w1 w2", DOCUMENTS[:6], top_k=4, return_documents=True)
    scores = model.similarity(model.encode("w1 w2", is_query=True), model.encode(DOCUMENTS[:6]))[0]
    assert [r["corpus_id"] for r in ranked] == list(np.argsort(-scores, kind="stable")[:4])
    assert ranked[0]["text"] == DOCUMENTS[ranked[0]["corpus_id"]]
    np.testing.assert_allclose([r["score"] for r in ranked], np.sort(scores)[::-1][:4], rtol=1e-6)


def test_bad_input_and_checkpoints_are_named(tmp_path):
    model_dir = stanford_colbert(tmp_path / "m")
    model = load_colbert(model_dir)
    with pytest.raises(TypeError, match="texts\\[1\\] is int"):
        model.encode(["w1", 3])
    with pytest.raises(TypeError, match="queries: a single \\[tokens, dim\\] array is one text"):
        model.similarity(np.zeros((3, 12), np.float32), [np.zeros((2, 12), np.float32)])
    with pytest.raises(ValueError, match="documents: item 1: dimension 5 differs from item 0's \\(12\\)"):
        model.similarity([np.zeros((3, 12), np.float32)], [np.zeros((2, 12), np.float32), np.zeros((2, 5), np.float32)])
    with pytest.raises(ValueError, match="top_k must be a positive int"):
        model.rank("w1", ["w2"], top_k=0)
    from safetensors.torch import load_file, save_file

    tensors = load_file(model_dir / "model.safetensors")
    del tensors["linear.weight"]
    save_file(tensors, model_dir / "model.safetensors")
    with pytest.raises(ValueError, match="needs its projection 'linear.weight'"):
        load_colbert(model_dir)
    bad = stanford_colbert(tmp_path / "bad", metadata={"query_token_id": "[Qx]"})
    with pytest.raises(ValueError, match="artifact.metadata: query_prefix: the tokenizer has no token '\\[Qx\\]'"):
        load_colbert(bad)
    long = load_colbert(stanford_colbert(tmp_path / "long", metadata={"doc_maxlen": 500}))
    assert long.document_length == 80  # capped at the position table
    with pytest.warns(fastembed_rt.TruncationWarning, match="1 of 1 documents exceeded document_length=80"):
        assert len(long.encode(" ".join(["w1"] * 100))[0]) == 80
