"""Run by .venv-pylate/bin/python (PyLate pins an older sentence-transformers than ours): builds and/or loads a
PyLate ColBERT and writes its token vectors and MaxSim scores for the tests to compare with.

argv[1]: a JSON file holding a list of jobs, all run in this one process (starting it takes seconds): each
{"model": folder, "build": null or {"base": BERT folder, "dim": int, "bias": bool, "residual": bool (optional),
"settings": {query_length, ...}}, "queries": [...], "documents": [...], "out": .npz path}."""

import json
import sys

import numpy as np
import torch

from pylate import models, scores


def build(spec):
    from sentence_transformers.models import Transformer

    torch.manual_seed(0)
    base = Transformer(spec["base"])
    dense = models.Dense(in_features=base.get_word_embedding_dimension(), out_features=spec["dim"], bias=spec["bias"],
                         use_residual=spec.get("residual", False))
    with torch.no_grad():
        for p in dense.parameters():
            p.normal_(0, 0.3)
    model = models.ColBERT(modules=[base, dense], device="cpu", **spec["settings"])
    return model


def run(job):
    if job.get("build"):
        build(job["build"]).save(job["model"])
    model = models.ColBERT(job["model"], device="cpu")
    queries = model.encode(job["queries"], is_query=True, batch_size=7)
    documents = model.encode(job["documents"], is_query=False, batch_size=5)
    out = {f"q{i}": q for i, q in enumerate(queries)} | {f"d{i}": d for i, d in enumerate(documents)}
    # one pair at a time: PyLate pads a list of documents with zero vectors, which would score 0 against any
    # query token whose every real dot product is negative
    out["scores"] = np.array([[float(scores.colbert_scores([q], [d])[0, 0]) for d in documents] for q in queries])
    np.savez(job["out"], **out)


if __name__ == "__main__":
    for job in json.load(open(sys.argv[1])):
        run(job)
