"""Rerankers against sentence-transformers' CrossEncoder, ONNX Runtime and transformers, one run.

    python benchmarks/bench_rerank.py [--models minilm,bge,qwen3] [--threads T] [--rounds R]

Workload: ArguAna queries (their first 40 words) against ArguAna passages (truncated at 512 tokens).
- minilm: a MiniLM-L6 cross-encoder (ms-marco-MiniLM-L6-v2's shape): the bundled all-MiniLM-L6-v2 encoder under a
  principal-component head (fastembed_rt.testing.principal_head: real activations, documents spread along the
  direction they differ most, as a trained head's scores do), 5 queries x 100 passages. Peers: sentence-transformers
  CrossEncoder.predict (float32), ONNX Runtime float32 and int8 (dynamic quantization) fed as fastembed's
  TextCrossEncoder feeds it (tokenizers, length-sorted padded batches of 64).
- bge: a bge-reranker-base-shaped XLM-RoBERTa cross-encoder (12 layers, 768 wide, MiniLM's WordPiece vocabulary),
  random weights, 1 query x 100 passages. Peers as for minilm.
- qwen3: a Qwen3-Reranker-0.6B-shaped LLM (28 layers, 1024 wide, 151,669-token vocabulary), random weights, a
  word-level tokenizer over the passages' words, passages cut at 128 words, 1 query x 16 passages. Peer:
  transformers Qwen3ForCausalLM as the model card computes the score (left-padded batches of 8, the last
  position's logits, softmax over no/yes).
Prints pairs/s and its ratio to the peer (sentence-transformers, or transformers), the latency of one 1-query x
20-document request (16 for qwen3; p50 of 10, of 3 for bge and qwen3), and per-query Spearman of each system's
scores against our float32 (min over queries); appends each model's rows to benchmarks/results/rerank.csv. Every
system encodes the pairs once per round, in turn, and its best round counts (one round for bge and qwen3).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import fastembed_rt  # first: it sets the OpenMP spin policy and the ISA cap before torch loads
import numpy as np
import torch
from results_csv import append_rows
from scipy.stats import spearmanr

from fastembed_rt.testing import cross_encoder_from, principal_head

ROOT = Path(__file__).resolve().parents[1]
ARGUANA = ROOT.parent / "shared" / "data" / "arguana"
MAX_LENGTH = 512


def arguana(name: str, start: int, count: int, words: int | None = None) -> list[str]:
    lines = (ARGUANA / name).read_text(encoding="utf-8").splitlines()[start : start + count]
    return [" ".join(json.loads(line)["text"].split()[:words]) for line in lines]


# --- models ------------------------------------------------------------------------------------------------
def minilm_cross_encoder(directory: Path) -> Path:
    minilm = fastembed_rt.loading.resolve_model_path("all-MiniLM-L6-v2")
    cross_encoder_from(minilm, directory)
    (directory / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer", "model_max_length": MAX_LENGTH,
                                                                 "do_lower_case": True}))  # fmt: skip
    # calibration: queries and passages other than the measured ones
    return principal_head(directory, arguana("queries.jsonl", 100, 6, 40), arguana("corpus.jsonl", 1000, 30))


def bge_shaped(directory: Path) -> Path:
    import transformers as tf
    from tokenizers import Tokenizer, processors

    config = tf.XLMRobertaConfig(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                 intermediate_size=3072, max_position_embeddings=514, type_vocab_size=1, pad_token_id=1,
                                 num_labels=1)  # fmt: skip
    torch.manual_seed(0)
    tf.XLMRobertaForSequenceClassification(config).save_pretrained(directory)
    tokenizer = Tokenizer.from_file(str(fastembed_rt.loading.resolve_model_path("all-MiniLM-L6-v2") / "tokenizer.json"))
    tokenizer.post_processor = processors.RobertaProcessing(("[SEP]", 102), ("[CLS]", 101))
    tokenizer.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast", "pad_token": "[PAD]",
                                                                 "model_max_length": MAX_LENGTH}))  # fmt: skip
    return directory


def qwen3_shaped(directory: Path, texts: list[str]) -> Path:
    import transformers as tf
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers

    from fastembed_rt.reranker import DEFAULT_INSTRUCTION, YES_NO_PREFIX, YES_NO_SUFFIX

    words = sorted(set(" ".join([YES_NO_PREFIX, YES_NO_SUFFIX, DEFAULT_INSTRUCTION, "<Instruct>: <Query>: <Document>: yes no",
                                 *texts]).split()))  # fmt: skip
    vocab_size = 151669
    vocab = {w: i for i, w in enumerate(["[UNK]", *words, *(f"<unused{i}>" for i in range(vocab_size - len(words) - 5))])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.add_special_tokens([AddedToken(t, special=True) for t in ("<|im_start|>", "<|im_end|>", "<think>", "</think>")])
    tokenizer.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast", "pad_token": "[UNK]",
                                                                 "model_max_length": 8192}))  # fmt: skip
    config = tf.Qwen3Config(vocab_size=vocab_size, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                            num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=40960,
                            tie_word_embeddings=True, rope_theta=1000000.0)  # fmt: skip
    torch.manual_seed(0)
    tf.Qwen3ForCausalLM(config).save_pretrained(directory)
    return directory


# --- peers -------------------------------------------------------------------------------------------------
def sentence_transformers_predict(directory: Path):
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(str(directory), device="cpu", max_length=MAX_LENGTH)
    return lambda pairs: np.asarray(model.predict(pairs, batch_size=32), dtype=np.float32)


def export_onnx(directory: Path, out: Path) -> tuple[Path, Path]:
    """float32 export of the transformers cross-encoder, and its int8 dynamic quantization."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(str(directory), attn_implementation="eager").eval()
    names = ["input_ids", "attention_mask", "token_type_ids"]
    dummy = torch.ones(2, 16, dtype=torch.long)
    mask = dummy.clone()
    mask[1, 9:] = 0  # a padded row, so that tracing cannot drop the mask

    class Logits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits

    fp32, int8 = out / "model.onnx", out / "model_int8.onnx"
    dynamic = {name: {0: "batch", 1: "sequence"} for name in names} | {"logits": {0: "batch"}}
    torch.onnx.export(Logits(), (dummy, mask, torch.zeros_like(dummy)), str(fp32), dynamo=False, input_names=names,
                      output_names=["logits"], dynamic_axes=dynamic, opset_version=17)  # fmt: skip
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
    return fp32, int8


def onnx_predict(directory: Path, onnx_path: Path, threads: int, batch_size: int = 64):
    """As fastembed's TextCrossEncoder: tokenizers pairs, truncated at 512, length-sorted padded batches, raw logits."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    tokenizer.enable_truncation(MAX_LENGTH)
    tokenizer.no_padding()

    def predict(pairs):
        encodings = tokenizer.encode_batch(pairs)
        order = np.argsort([-len(e.ids) for e in encodings], kind="stable")
        out = np.empty(len(pairs), dtype=np.float32)
        for start in range(0, len(pairs), batch_size):
            idx = order[start : start + batch_size]
            width = max(len(encodings[i].ids) for i in idx)
            arrays = {name: np.zeros((len(idx), width), dtype=np.int64) for name in ("input_ids", "attention_mask", "token_type_ids")}
            for row, i in enumerate(idx):
                e = encodings[i]
                arrays["input_ids"][row, : len(e.ids)] = e.ids
                arrays["attention_mask"][row, : len(e.ids)] = 1
                arrays["token_type_ids"][row, : len(e.ids)] = e.type_ids
            out[idx] = session.run(None, arrays)[0][:, 0]
        return 1.0 / (1.0 + np.exp(-out))  # sigmoid, as CrossEncoder's default for one label

    return predict


def transformers_yes_no(directory: Path, batch_size: int = 8):
    """Qwen3-Reranker's model card: prompt around each pair, left-padded batches, softmax over (no, yes) logits."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fastembed_rt.reranker import DEFAULT_INSTRUCTION, YES_NO_MAX_LENGTH, YES_NO_PREFIX, YES_NO_SUFFIX

    tokenizer = AutoTokenizer.from_pretrained(str(directory), padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(str(directory)).eval()
    yes, no = tokenizer.convert_tokens_to_ids("yes"), tokenizer.convert_tokens_to_ids("no")
    prefix = tokenizer.encode(YES_NO_PREFIX, add_special_tokens=False)
    suffix = tokenizer.encode(YES_NO_SUFFIX, add_special_tokens=False)

    @torch.no_grad()
    def predict(pairs):
        scores = []
        for start in range(0, len(pairs), batch_size):
            texts = [f"<Instruct>: {DEFAULT_INSTRUCTION}\n<Query>: {q}\n<Document>: {d}" for q, d in pairs[start : start + batch_size]]
            inputs = tokenizer(texts, padding=False, truncation="longest_first", return_attention_mask=False,
                               max_length=YES_NO_MAX_LENGTH - len(prefix) - len(suffix))  # fmt: skip
            inputs["input_ids"] = [prefix + ids + suffix for ids in inputs["input_ids"]]
            inputs = tokenizer.pad(inputs, padding=True, return_tensors="pt", max_length=YES_NO_MAX_LENGTH)
            logits = model(**inputs).logits[:, -1, :]
            scores.append(torch.log_softmax(torch.stack([logits[:, no], logits[:, yes]], dim=1), dim=1)[:, 1].exp())
        return torch.cat(scores).numpy()

    return predict


# --- measuring ---------------------------------------------------------------------------------------------
def ours(directory: Path, dtype: str, loader=fastembed_rt.load):
    reranker = loader(directory, device="cpu", dtype=dtype)
    return lambda pairs: reranker.predict(pairs, truncate=True)


def measure(systems: dict, queries: list[str], passages: list[str], rounds: int, reference: str, repeats: int) -> dict:
    pairs = [(q, p) for q in queries for p in passages]
    one_request = [(queries[0], p) for p in passages[:20]]
    for predict in systems.values():
        predict(pairs[:4])  # warm up
    seconds, scores = {name: float("inf") for name in systems}, {}
    for _ in range(rounds):
        for name, predict in systems.items():
            start = time.perf_counter()
            scores[name] = np.asarray(predict(pairs), dtype=np.float64).reshape(len(queries), len(passages))
            seconds[name] = min(seconds[name], time.perf_counter() - start)
            print(f"  {name}: {len(pairs) / seconds[name]:,.1f} pairs/s (best so far)", flush=True)
    results = {}
    for name, predict in systems.items():
        latencies = []
        for _ in range(repeats):
            start = time.perf_counter()
            predict(one_request)
            latencies.append((time.perf_counter() - start) * 1000)
        spearman = min(spearmanr(scores[name][q], scores[reference][q]).statistic for q in range(len(queries)))
        results[name] = dict(pairs_per_s=len(pairs) / seconds[name], latency20_ms=float(np.median(latencies)), spearman=float(spearman),
                             max_abs_diff=float(np.abs(scores[name] - scores[reference]).max()))  # fmt: skip
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="minilm,bge,qwen3")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    scratch = Path(tempfile.mkdtemp(prefix="bench_rerank_"))
    for kind in args.models.split(","):
        rows = []
        directory = scratch / kind
        directory.mkdir()
        if kind in ("minilm", "bge"):
            (minilm_cross_encoder if kind == "minilm" else bge_shaped)(directory)
            queries, passages = arguana("queries.jsonl", 0, 5 if kind == "minilm" else 1, 40), arguana("corpus.jsonl", 0, 100)
            onnx_fp32, onnx_int8 = export_onnx(directory, directory)
            peer = "sentence-transformers fp32"
            systems = {peer: sentence_transformers_predict(directory),
                       "onnxruntime fp32": onnx_predict(directory, onnx_fp32, args.threads),
                       "onnxruntime int8": onnx_predict(directory, onnx_int8, args.threads)}  # fmt: skip
            loader = fastembed_rt.load
        elif kind == "qwen3":
            queries, passages = arguana("queries.jsonl", 0, 1, 40), arguana("corpus.jsonl", 0, 16, 128)
            qwen3_shaped(directory, queries + passages)
            peer = "transformers fp32"
            systems = {peer: transformers_yes_no(directory)}
            loader = fastembed_rt.load_reranker
        else:
            raise SystemExit(f"unknown model {kind!r}: minilm, bge or qwen3")
        for dtype in ("float32", "bfloat16", "int8"):
            systems[f"fastembed_rt {dtype}"] = ours(directory, dtype, loader)
        print(f"{kind}: {len(queries)} queries x {len(passages)} passages, {args.threads} threads, ISA {fastembed_rt.isa.active()}")
        # the large models: one round and 3 timed requests (each takes seconds to minutes on 2 cores)
        small = kind == "minilm"
        results = measure(systems, queries, passages, args.rounds if small else 1, "fastembed_rt float32", 10 if small else 3)
        base = results[peer]["pairs_per_s"]
        print(f"{'':28}{'pairs/s':>10}{'vs peer':>9}{'20-doc ms':>11}{'Spearman':>10}{'max diff':>10}")
        for name, r in results.items():
            print(f"{name:28}{r['pairs_per_s']:>10,.1f}{r['pairs_per_s'] / base:>9.2f}{r['latency20_ms']:>11.1f}"
                  f"{r['spearman']:>10.4f}{r['max_abs_diff']:>10.2e}")  # fmt: skip
            rows.append([kind, name, args.threads, len(queries) * len(passages), round(r["pairs_per_s"], 2),
                         round(r["pairs_per_s"] / base, 3), round(r["latency20_ms"], 2), round(r["spearman"], 5),
                         f"{r['max_abs_diff']:.2e}", torch.__version__, fastembed_rt.__version__])  # fmt: skip
        del systems
        append_rows("rerank.csv", ["model", "system", "threads", "pairs", "pairs_per_s", "vs_peer", "latency_20_docs_ms",
                                   "min_spearman_vs_ours_fp32", "max_abs_diff_vs_ours_fp32", "torch", "fastembed_rt"], rows)  # fmt: skip


if __name__ == "__main__":
    main()
