"""Any sentence-transformers model folder: fastembed_rt at every weight precision against sentence-transformers, one run.

    python benchmarks/bench_model.py --model .models/embeddinggemma-300m [--prompt-name document] [--limit 200]
        [--batch-size 8] [--rounds 2]

The first N texts of ../shared/data/bench/corpus.jsonl, encoded by sentence-transformers (float32, length-sorted
padded batches) and by fastembed_rt at float32, bfloat16 and int8 (packed token-budget batches), with the model's
own max_seq_length and the named prompt; every system encodes the texts once per round, in turn, and its best round
counts. Prints tokens/s, the ratio to sentence-transformers, single-query p50 (the query prompt where the model has
one) and the min cosine to sentence-transformers' vectors; rows go to benchmarks/results/models.csv.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import fastembed_rt  # first: it sets the OpenMP spin policy and the ISA cap before torch loads
import numpy as np
import torch
from latency import best_of_rounds, query_latency_ms
from results_csv import append_rows

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "bench" / "corpus.jsonl"
QUERY = "how do I reset my password"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a sentence-transformers model folder")
    parser.add_argument("--prompt-name", default=None, help="prompt for the texts (e.g. document); queries take 'query' if the model has it")
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--limit", type=int, default=200, help="first N texts")
    parser.add_argument("--batch-size", type=int, default=32, help="sentence-transformers' batch size")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds; each system's best counts")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    from sentence_transformers import SentenceTransformer

    texts = [json.loads(line)["text"] for line in open(args.corpus, encoding="utf-8")][: args.limit]
    ours = {dtype: fastembed_rt.load(args.model, dtype=dtype) for dtype in ("float32", "bfloat16", "int8")}
    st = SentenceTransformer(str(args.model), device="cpu")
    query_prompt = "query" if "query" in ours["float32"].spec.prompts else None
    tokens = sum(ours["float32"].count_tokens([ours["float32"].resolve_prompt(None, args.prompt_name) + t for t in texts]))
    systems = {"sentence-transformers fp32": lambda t, p=args.prompt_name: st.encode(t, prompt_name=p, batch_size=args.batch_size,
                                                                                     normalize_embeddings=True)}  # fmt: skip
    for dtype, model in ours.items():
        systems[f"fastembed_rt {dtype}"] = lambda t, p=args.prompt_name, m=model: m.encode(t, prompt_name=p, normalize=True)
    for encode in systems.values():
        encode(texts[:16])
    seconds, vectors = best_of_rounds(systems, texts, tokens, args.rounds)
    latency = query_latency_ms({name: (lambda q, e=encode: e([q], p=query_prompt)) for name, encode in systems.items()},
                               QUERY, repeats=50, warmup=3)  # fmt: skip
    reference, base = vectors["sentence-transformers fp32"], seconds["sentence-transformers fp32"]
    print(f"\n{args.model.name}: {len(texts)} texts, {tokens:,} tokens (prompt {args.prompt_name}); ISA "
          f"{fastembed_rt.isa.active()}, {args.threads} threads")  # fmt: skip
    print(f"{'':28}{'tokens/s':>10}{'vs ST':>7}{'p50 ms':>9}{'min cos':>10}")
    rows = []
    for name in systems:
        cosine = float((vectors[name] * reference).sum(1).min())
        print(f"{name:28}{tokens / seconds[name]:>10,.0f}{base / seconds[name]:>7.2f}{latency[name][0]:>9.2f}{cosine:>10.5f}")
        rows.append([args.model.name, name, args.threads, len(texts), tokens, round(tokens / seconds[name]),
                     round(base / seconds[name], 3), round(latency[name][0], 3), round(cosine, 6)])  # fmt: skip
    append_rows("models.csv", ["model", "system", "threads", "texts", "tokens", "tokens_per_s", "vs_st", "query_p50_ms",
                               "min_cosine_to_st"], rows)  # fmt: skip


if __name__ == "__main__":
    main()
