"""Rotary encoders and decoder LLMs on the CPU: fastembed_rt against Hugging Face transformers in one run.

Two random-weight models, built here: a ModernBERT-base shape (22 layers, hidden 768, alternating global and
128-token sliding-window attention) and a Qwen3-Embedding-0.6B shape (28 layers, hidden 1024, 16 query / 8 kv
heads of 128, q/k norms). Both read ../shared/data/bench texts through all-MiniLM-L6-v2's tokenizer (so the
vocabulary is 30,522 and the token counts are real). Transformers runs them as sentence-transformers would:
length-sorted batches of 32, padded, its default attention, then mean (ModernBERT) or last-token (Qwen3)
pooling by hand. Reports tokens/s, the ratio, and the lowest cosine between the two systems' vectors.

    .venv/bin/python benchmarks/bench_backbones.py [--limit 200] [--models modernbert,qwen3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import fastembed_rt
from fastembed_rt.loading import resolve_model_path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_csv import append_rows  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MAX_TOKENS = 512


def configs():
    import transformers as tf

    return {
        "modernbert": (tf.ModernBertConfig(vocab_size=30522, hidden_size=768, intermediate_size=1152, num_hidden_layers=22,
                                           num_attention_heads=12, local_attention=128, global_attn_every_n_layers=3,
                                           max_position_embeddings=8192, pad_token_id=0, bos_token_id=101, eos_token_id=102,
                                           cls_token_id=101, sep_token_id=102), "mean"),
        "qwen3": (tf.Qwen3Config(vocab_size=30522, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                                 num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=32768,
                                 rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}), "lasttoken"),
    }  # fmt: skip


def build(kind: str, directory: Path):
    from transformers import AutoModel

    config, pooling = configs()[kind]
    torch.manual_seed(0)
    model = AutoModel.from_config(config).eval()
    model.save_pretrained(directory, safe_serialization=True)
    minilm = resolve_model_path("all-MiniLM-L6-v2")
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(minilm / name, directory / name)
    (directory / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": MAX_TOKENS}))
    return model, pooling


def hf_encode(model, tokenizer, texts: list[str], pooling: str) -> np.ndarray:
    order = np.argsort([-len(t) for t in texts], kind="stable")
    out = np.empty((len(texts), model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(texts), 32):
            idx = order[start : start + 32]
            batch = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"]
            if pooling == "mean":
                pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
            else:  # right padding: the last real token
                pooled = hidden[torch.arange(len(idx)), mask.sum(1) - 1]
            out[idx] = F.normalize(pooled.float(), dim=1).numpy()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=200, help="bench texts (the first N of the corpus)")
    parser.add_argument("--models", default="modernbert,qwen3")
    args = parser.parse_args()
    from transformers import AutoTokenizer

    rows = [json.loads(line)["text"] for line in open(DATA / "bench" / "corpus.jsonl", encoding="utf-8")][: args.limit]
    print(f"{len(rows)} bench texts, {torch.get_num_threads()} threads, torch {torch.__version__}", flush=True)
    results = []
    for kind in args.models.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            directory = Path(tmp)
            hf_model, pooling = build(kind, directory)
            ours = fastembed_rt.load(directory, device="cpu")
            tokens = sum(ours.count_tokens(rows))
            tokenizer = AutoTokenizer.from_pretrained(directory)
            ours.encode(rows[:8])  # warm-up
            hf_encode(hf_model, tokenizer, rows[:8], pooling)
            start = time.perf_counter()
            got = ours.encode(rows, normalize=True)
            ours_s = time.perf_counter() - start
            start = time.perf_counter()
            want = hf_encode(hf_model, tokenizer, rows, pooling)
            hf_s = time.perf_counter() - start
            cos = float(((got * want).sum(1)).min())
            ratio = hf_s / ours_s
            print(f"{kind:11} {tokens:,} tokens: fastembed_rt {tokens / ours_s:8,.0f} tokens/s, transformers "
                  f"{tokens / hf_s:8,.0f} tokens/s, ratio {ratio:.2f}, min cosine {cos:.6f}", flush=True)  # fmt: skip
            results.append([kind, len(rows), tokens, round(tokens / ours_s), round(tokens / hf_s), round(ratio, 3), cos,
                            torch.get_num_threads(), torch.__version__])  # fmt: skip
            del hf_model, ours
    append_rows("backbones.csv", ["model", "texts", "tokens", "ours_tokens_per_s", "hf_tokens_per_s", "ratio", "min_cosine",
                                  "threads", "torch"], results)  # fmt: skip


if __name__ == "__main__":
    main()
