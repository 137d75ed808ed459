"""Synthetic models for tests and benchmarks: random-weight BERT checkpoints in the Hugging Face layout with
a generated WordPiece tokenizer, written with safetensors alone (no download, no transformers import)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, pre_tokenizers, processors

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def synthetic_tokenizer(vocab_size: int) -> Tokenizer:
    """BERT-style WordPiece over the words w0, w1, ...: "[CLS] text [SEP]", one token per known word."""
    vocab = {token: i for i, token in enumerate(SPECIALS + [f"w{i}" for i in range(vocab_size - len(SPECIALS))])}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return tokenizer


def synthetic_texts(count: int, min_words: int, max_words: int, vocab_size: int, seed: int = 0) -> list[str]:
    """Texts of known words, each min_words..max_words long (that many tokens plus CLS and SEP)."""
    rng = random.Random(seed)
    words = vocab_size - len(SPECIALS)
    return [" ".join(f"w{rng.randrange(words)}" for _ in range(rng.randint(min_words, max_words))) for _ in range(count)]


def random_bert(directory: str | Path, *, hidden: int = 768, layers: int = 12, heads: int = 12, intermediate: int = 3072,
                max_positions: int = 512, vocab_size: int = 30522, seed: int = 0) -> Path:  # fmt: skip
    """Writes a random-weight BertModel checkpoint (config.json, model.safetensors, tokenizer.json) and returns
    its directory. Weights are N(0, 0.02) and LayerNorms identity, as BERT initializes them."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)

    def normal(*shape):
        return (torch.randn(*shape, generator=g) * 0.02).contiguous()

    tensors = {
        "embeddings.word_embeddings.weight": normal(vocab_size, hidden),
        "embeddings.position_embeddings.weight": normal(max_positions, hidden),
        "embeddings.token_type_embeddings.weight": normal(2, hidden),
        "embeddings.LayerNorm.weight": torch.ones(hidden),
        "embeddings.LayerNorm.bias": torch.zeros(hidden),
    }
    for i in range(layers):
        p = f"encoder.layer.{i}."
        for name, (rows, cols) in {"attention.self.query": (hidden, hidden), "attention.self.key": (hidden, hidden),
                                   "attention.self.value": (hidden, hidden), "attention.output.dense": (hidden, hidden),
                                   "intermediate.dense": (intermediate, hidden), "output.dense": (hidden, intermediate)}.items():  # fmt: skip
            tensors[p + name + ".weight"] = normal(rows, cols)
            tensors[p + name + ".bias"] = normal(rows)
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            tensors[p + norm + ".weight"] = torch.ones(hidden)
            tensors[p + norm + ".bias"] = torch.zeros(hidden)
    tensors["pooler.dense.weight"], tensors["pooler.dense.bias"] = normal(hidden, hidden), torch.zeros(hidden)
    save_file(tensors, str(directory / "model.safetensors"))
    config = {
        "architectures": ["BertModel"], "model_type": "bert", "hidden_size": hidden, "num_hidden_layers": layers,
        "num_attention_heads": heads, "intermediate_size": intermediate, "max_position_embeddings": max_positions,
        "vocab_size": vocab_size, "type_vocab_size": 2, "layer_norm_eps": 1e-12, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02, "pad_token_id": 0,
    }  # fmt: skip
    (directory / "config.json").write_text(json.dumps(config, indent=1))
    synthetic_tokenizer(vocab_size).save(str(directory / "tokenizer.json"))
    return directory


def cross_encoder_from(encoder_dir: str | Path, directory: str | Path, seed: int = 0) -> Path:
    """A BertForSequenceClassification checkpoint (one label) made of a BERT encoder checkpoint (e.g. the bundled
    all-MiniLM-L6-v2, or random_bert's) and a random classifier (and pooler, where the encoder has none)."""
    from safetensors.torch import load_file

    encoder_dir, directory = Path(encoder_dir), Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = json.loads((encoder_dir / "config.json").read_text())
    hidden = config["hidden_size"]
    g = torch.Generator().manual_seed(seed)
    tensors = {"bert." + name: tensor for name, tensor in load_file(str(encoder_dir / "model.safetensors")).items()}
    if "bert.pooler.dense.weight" not in tensors:
        tensors["bert.pooler.dense.weight"] = torch.randn(hidden, hidden, generator=g) * 0.02
        tensors["bert.pooler.dense.bias"] = torch.zeros(hidden)
    tensors["classifier.weight"] = torch.randn(1, hidden, generator=g) / hidden**0.5
    tensors["classifier.bias"] = torch.zeros(1)
    save_file(tensors, str(directory / "model.safetensors"))
    config = {**config, "architectures": ["BertForSequenceClassification"], "num_labels": 1}
    (directory / "config.json").write_text(json.dumps(config, indent=1))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        if (encoder_dir / name).is_file():
            (directory / name).write_bytes((encoder_dir / name).read_bytes())
    return directory


def principal_head(directory: str | Path, queries: list[str], documents: list[str]) -> Path:
    """Rewrites a one-label BERT cross-encoder's classifier (cross_encoder_from's) to the first principal component of
    how its pooled pairs spread around their query's mean, over calibration pairs (every query with every document).
    Such a head ranks documents along the direction in which they differ most, as a trained head does; a random one
    would mostly measure noise. For precision gates and benchmarks of real encoders that have no trained head."""
    from safetensors.torch import load_file

    from .engine import load
    from .tokenization import pack

    directory = Path(directory)
    reranker = load(directory)
    encoded = reranker.encode_pairs([q for q in queries for _ in documents], documents * len(queries))
    batch = pack(encoded.ids, token_types=encoded.token_types)
    with torch.inference_mode():
        hidden = reranker.model.forward(batch.input_ids, batch.cu_seqlens, batch.max_seqlen, token_types=batch.token_types)
        pooled = torch.tanh(reranker.head.steps[0](hidden[batch.cu_seqlens[:-1].long()].float()))
    per_query = pooled.view(len(queries), len(documents), -1)
    spread = (per_query - per_query.mean(1, keepdim=True)).flatten(0, 1)
    tensors = load_file(str(directory / "model.safetensors"))
    tensors["classifier.weight"] = torch.linalg.svd(spread, full_matrices=False).Vh[:1].contiguous()
    save_file(tensors, str(directory / "model.safetensors"))
    return directory


def row_cosines(a, b) -> np.ndarray:
    """The cosine of each row of a with the same row of b, in float64: how the tests compare vectors to a reference."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
