"""The synthetic checkpoints that GPU tests and benchmarks use load in Hugging Face transformers too."""

import numpy as np
import torch
from transformers import BertModel, PreTrainedTokenizerFast

import fastembed_rt
from fastembed_rt.testing import random_bert, synthetic_texts


def test_random_bert_loads_in_transformers_and_matches(tmp_path):
    directory = random_bert(tmp_path, hidden=64, layers=2, heads=4, intermediate=128, max_positions=64, vocab_size=500)
    texts = synthetic_texts(6, 1, 60, 500, seed=3)  # some past 64 tokens: truncated alike
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(directory / "tokenizer.json"), pad_token="[PAD]")
    batch = tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    assert batch["input_ids"][0, 0] == 2 and (batch["input_ids"] != 1).all()  # [CLS] first, no unknown words
    with torch.no_grad():
        hidden = BertModel.from_pretrained(directory).eval()(**batch).last_hidden_state
    mask = batch["attention_mask"][..., None].float()
    expected = ((hidden * mask).sum(1) / mask.sum(1)).numpy()
    ours = fastembed_rt.load(directory).encode(texts, normalize=False)
    np.testing.assert_allclose(ours, expected, atol=1e-5)
