"""The CPU forward pass at every weight precision against sentence-transformers and ONNX Runtime, one run.

    python benchmarks/bench_cpu.py [--limit N] [--threads T] [--rounds R]

Peers, all on all-MiniLM-L6-v2 and ../shared/data/bench/corpus.jsonl (truncated at 256 tokens):
sentence-transformers float32; ONNX Runtime float32 and int8 (dynamic quantization) of the same model,
exported by this script, fed like fastembed does (the `tokenizers` library, length-sorted padded batches of
32, mean pooling, L2 normalization); fastembed_rt float32, bfloat16 and int8. Prints tokens/s, texts/s,
ratios, single-short-query latency end to end (text -> normalized vector; 200 calls each, in 5 rounds of the
systems in turn) p50/p99 and min cosine to sentence-transformers, and appends rows to benchmarks/results/cpu.csv.
With --rounds R, every system encodes the corpus once per round, in turn, and its best round counts: on a shared,
noisy machine the systems then meet the same conditions.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import warnings
from pathlib import Path

import fastembed_rt  # first: it sets the OpenMP spin policy before torch loads
import numpy as np
import torch
from latency import best_of_rounds, query_latency_ms
from results_csv import append_rows

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "data" / "bench" / "corpus.jsonl"
QUERY = "how do I reset my password"
MAX_LENGTH = 256


class OnnxEmbedder:
    """all-MiniLM-L6-v2 exported to ONNX and run by ONNX Runtime, as fastembed runs it."""

    def __init__(self, model_path: Path, onnx_path: Path, threads: int):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.tokenizer = Tokenizer.from_file(str(model_path / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_LENGTH)
        self.tokenizer.no_padding()  # the file pads to 128; batches pad to their longest text below

    def encode(self, texts, batch_size: int = 32) -> np.ndarray:
        texts = [texts] if isinstance(texts, str) else texts
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), 384), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            encodings = self.tokenizer.encode_batch([texts[i] for i in idx])
            width = max(len(e.ids) for e in encodings)
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros_like(ids)
            for row, e in enumerate(encodings):
                ids[row, : len(e.ids)] = e.ids
                mask[row, : len(e.ids)] = 1
            hidden = self.session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]
            pooled = (hidden * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
            out[idx] = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
        return out


def export_onnx(model_path: Path, directory: Path) -> tuple[Path, Path]:
    """float32 export of the Hugging Face model, and its int8 dynamic quantization (per-tensor activations)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel

    class LastHiddenState(torch.nn.Module):
        def __init__(self):
            super().__init__()
            # eager attention: the traced graph must keep the padding mask as a real input
            self.bert = AutoModel.from_pretrained(str(model_path), attn_implementation="eager").eval()

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state

    model = LastHiddenState()
    fp32, int8 = directory / "model.onnx", directory / "model_int8.onnx"
    dummy = torch.ones(2, 16, dtype=torch.long)
    mask = dummy.clone()
    mask[1, 9:] = 0  # a padded row, so that tracing cannot drop the mask as all ones
    dynamic = {name: {0: "batch", 1: "sequence"} for name in ("input_ids", "attention_mask", "token_type_ids", "last_hidden_state")}
    torch.onnx.export(model, (dummy, mask, torch.zeros_like(dummy)), str(fp32), dynamo=False,
                      input_names=["input_ids", "attention_mask", "token_type_ids"], output_names=["last_hidden_state"],
                      dynamic_axes=dynamic, opset_version=17)  # fmt: skip
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
    return fp32, int8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--limit", type=int, default=None, help="first N texts only")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds; each system's best counts")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    from sentence_transformers import SentenceTransformer

    texts = [json.loads(line)["text"] for line in open(args.corpus, encoding="utf-8")][: args.limit]
    float32 = fastembed_rt.load("all-MiniLM-L6-v2", device="cpu")
    model_path = float32.spec.path
    tokens = sum(float32.count_tokens(texts))
    scratch = tempfile.TemporaryDirectory()
    onnx_fp32, onnx_int8 = export_onnx(model_path, Path(scratch.name))

    st = SentenceTransformer(str(model_path), device="cpu")
    systems = {
        "sentence-transformers fp32": lambda t: st.encode(t, batch_size=32, normalize_embeddings=True),
        "onnxruntime fp32": OnnxEmbedder(model_path, onnx_fp32, args.threads).encode,
        "onnxruntime int8": OnnxEmbedder(model_path, onnx_int8, args.threads).encode,
        "fastembed_rt fp32": float32.encode,
        "fastembed_rt bf16": fastembed_rt.load("all-MiniLM-L6-v2", device="cpu", dtype="bfloat16").encode,
        "fastembed_rt int8": fastembed_rt.load("all-MiniLM-L6-v2", device="cpu", dtype="int8").encode,
    }
    for encode in systems.values():
        encode(texts[:64])
    seconds, vectors = best_of_rounds(systems, texts, tokens, args.rounds)
    reference = vectors["sentence-transformers fp32"]
    latency = query_latency_ms(systems, QUERY, repeats=200, warmup=5)
    results = {name: dict(seconds=seconds[name], p50=latency[name][0], p99=latency[name][1],
                          min_cosine=float((vectors[name] * reference).sum(1).min())) for name in systems}  # fmt: skip

    base = results["sentence-transformers fp32"]["seconds"]
    ort_int8 = results["onnxruntime int8"]["seconds"]
    print(f"\ncorpus {args.corpus.name}: {len(texts):,} texts, {tokens:,} tokens; threads {args.threads}")
    print(f"{'':28}{'tokens/s':>10}{'texts/s':>9}{'vs ST':>7}{'vs ORT int8':>12}{'p50 ms':>8}{'p99 ms':>8}{'min cos':>10}")
    rows = []
    for name, r in results.items():
        print(f"{name:28}{tokens / r['seconds']:>10,.0f}{len(texts) / r['seconds']:>9.1f}{base / r['seconds']:>7.2f}"
              f"{ort_int8 / r['seconds']:>12.2f}{r['p50']:>8.2f}{r['p99']:>8.2f}{r['min_cosine']:>10.5f}")  # fmt: skip
        rows.append([name, args.threads, len(texts), tokens, round(tokens / r["seconds"]), round(base / r["seconds"], 3),
                     round(ort_int8 / r["seconds"], 3), round(r["p50"], 3), round(r["p99"], 3), round(r["min_cosine"], 6),
                     torch.__version__, fastembed_rt.__version__])  # fmt: skip
    append_rows("cpu.csv", ["system", "threads", "texts", "tokens", "tokens_per_s", "vs_st", "vs_ort_int8", "query_p50_ms",
                            "query_p99_ms", "min_cosine_to_st", "torch", "fastembed_rt"], rows)  # fmt: skip


if __name__ == "__main__":
    main()
