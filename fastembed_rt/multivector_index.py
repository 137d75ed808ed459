"""MultiVectorIndex: top-k documents by MaxSim for multi-vector queries (ColBERT token vectors).

Documents are held packed (float32, or int8 codes with per-token scales). Search is exact MaxSim over the whole
corpus, a block of documents at a time (memory: queries x block scores), or, for large corpora, a candidate stage
first: MUVERA fixed-dimensional encodings searched with Index (int8 or binary), then exact MaxSim of the candidates.
Saved as .npy arrays and a header (and the candidate Index in fde/), loaded memory-mapped.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from . import ops
from .colbert import as_multivectors
from .index_files import is_count, load_array, read_header, write_header
from .multivector import MultiVectorEmbeddings
from .muvera import MuveraEncoder
from .search import CODE_DTYPES, Index, code_width
from .validation import positive_int

FORMAT = "fastembed_rt.multivector_index"
VERSION = 1
PRECISIONS = ("float32", "int8")
CANDIDATE_PRECISIONS = ("float32", "int8", "binary")
# Documents scored per exact MaxSim call: bounds the [queries, block] score matrix.
_BLOCK_DOCS = 8192


def merge_topk(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k best (score, id) pairs, best first, equal scores to the lower id."""
    order = np.lexsort((ids, -scores), axis=1)[:, :k]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)


def candidate_index(muvera: MuveraEncoder, documents: MultiVectorEmbeddings, precision: str) -> Index:
    """An Index of the documents' MUVERA encodings. int8 and binary codes are made a chunk of documents at a time, so
    that the float32 encodings of a large corpus (10 GB for 1M documents) are never held whole. int8 codes share one
    symmetric step for every value, so that code dot products rank as the float ones do (Index's default
    per-dimension ranges weigh each dimension by its own range); finding that step takes a first pass."""
    if precision == "float32":
        return Index.build(muvera.encode_documents(documents), "float32")
    width = muvera.output_dim
    ranges = None
    if precision == "int8":
        bound = max((float(np.abs(e).max(initial=0.0)) for _, e in muvera.chunks(documents, document=True)), default=0.0) or 1.0
        ranges = np.array([[-bound] * width, [bound] * width], np.float32)
    codes = np.zeros((len(documents), code_width(precision, width)), CODE_DTYPES[precision])
    for rows, encodings in muvera.chunks(documents, document=True):
        codes[rows] = Index.encode(encodings, precision, ranges)
    return Index(precision, width, codes, None, ranges)


class MultiVectorIndex:
    """Build with MultiVectorIndex.build(documents, precision=..., candidates=...), or MultiVectorIndex.load(path)."""

    def __init__(self, documents: MultiVectorEmbeddings, muvera: MuveraEncoder | None = None, fde: Index | None = None):
        self.documents, self.muvera, self.fde = documents, muvera, fde

    @classmethod
    def build(cls, documents, precision: str = "float32", *, candidates: str | None = None, repetitions: int = 10,
              simhash_bits: int = 4, projection_dim: int = 16, seed: int = 0) -> MultiVectorIndex:  # fmt: skip
        """documents: MultiVectorEmbeddings (ColBERT.encode's) or a list of [tokens, dim] arrays. precision: how the
        token vectors are kept (int8: per-token codes and scales, a quarter of the memory). candidates: None (exact
        search only) or the precision of a MUVERA candidate index ("int8", "binary" or "float32"), built from
        encodings of repetitions * 2^simhash_bits * projection_dim values."""
        if precision not in PRECISIONS:
            raise ValueError(f"unsupported precision {precision!r}; supported: {', '.join(PRECISIONS)}")
        if candidates is not None and candidates not in CANDIDATE_PRECISIONS:
            raise ValueError(f"unsupported candidates {candidates!r}; supported: None, {', '.join(CANDIDATE_PRECISIONS)}")
        documents = as_multivectors(documents, "documents")
        documents.check_finite("documents")
        muvera = fde = None
        if candidates is not None:
            muvera = MuveraEncoder.create(documents.dim, repetitions, simhash_bits, projection_dim, seed)
            fde = candidate_index(muvera, documents, candidates)
        if precision == "int8":
            documents = documents.quantize()
        return cls(documents, muvera, fde)

    def __len__(self) -> int:
        return len(self.documents)

    @property
    def dim(self) -> int:
        return self.documents.dim

    @property
    def precision(self) -> str:
        return "float32" if self.documents.scales is None else "int8"

    def search(self, queries, k: int = 10, *, exact: bool | None = None, candidates: int = 1000
               ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """Top-k documents by MaxSim: (scores float32 [nq, k'], ids int64 [nq, k']), best first, equal scores to the
        lower id, k' = min(k, len(index)). exact (default: unless the index has a MUVERA stage) scores every
        document; otherwise the `candidates` best by MUVERA encoding are rescored exactly."""
        queries = as_multivectors(queries, "queries")
        queries.check_finite("queries")
        k = positive_int(k, "k")
        if len(queries) and len(self) and queries.dim != self.dim:
            raise ValueError(f"queries have dimension {queries.dim}, the index {self.dim}")
        exact = self.fde is None if exact is None else bool(exact)
        if not exact and self.fde is None:
            raise ValueError("this index has no MUVERA candidate stage: build it with candidates='int8' (or search exactly)")
        k = min(k, len(self))
        if k == 0 or len(queries) == 0:
            return np.zeros((len(queries), k), np.float32), np.zeros((len(queries), k), np.int64)
        if exact:
            return self._exact(queries, k)
        return self._rescored(queries, k, positive_int(candidates, "candidates"))

    @staticmethod
    def _maxsim(queries: MultiVectorEmbeddings, docs: MultiVectorEmbeddings, first: int, last: int) -> np.ndarray:
        """MaxSim of all queries against docs[first:last] (int8 codes are read as they are stored)."""
        rows = slice(int(docs.offsets[first]), int(docs.offsets[last]))
        with warnings.catch_warnings():  # memory-mapped arrays are read-only; the kernels only read them
            warnings.filterwarnings("ignore", "The given NumPy array is not writable")
            block = torch.from_numpy(docs.vectors[rows])
            if docs.scales is not None:
                block = (block, torch.from_numpy(docs.scales[rows]))
        cu = torch.from_numpy(docs.offsets[first : last + 1] - docs.offsets[first])
        scores = ops.maxsim(torch.from_numpy(queries.float_vectors()), torch.from_numpy(queries.offsets), block, cu,
                            int8=docs.scales is not None).numpy()  # fmt: skip
        if not np.isfinite(scores).all():  # finite vectors whose products pass float32's range
            raise ValueError("MaxSim scores overflow float32: the query's or documents' token values are too large")
        return scores

    def _exact(self, queries: MultiVectorEmbeddings, k: int) -> tuple[np.ndarray, np.ndarray]:
        best_scores = np.zeros((len(queries), 0), np.float32)
        best_ids = np.zeros((len(queries), 0), np.int64)
        for first in range(0, len(self), _BLOCK_DOCS):
            last = min(first + _BLOCK_DOCS, len(self))
            scores = self._maxsim(queries, self.documents, first, last)
            ids = np.broadcast_to(np.arange(first, last, dtype=np.int64), scores.shape)
            best_scores, best_ids = merge_topk(np.concatenate([best_scores, scores], 1), np.concatenate([best_ids, ids], 1), k)
        return best_scores, best_ids

    def _rescored(self, queries: MultiVectorEmbeddings, k: int, candidates: int) -> tuple[np.ndarray, np.ndarray]:
        # Divided by the query's token count: the ranking of one query's documents is the same, and a query's
        # encoding (sums per bucket) then lies in the documents' range (means), which int8 codes are calibrated on.
        encodings = self.muvera.encode_queries(queries) / np.maximum(queries.lengths, 1)[:, None].astype(np.float32)
        _, candidate_ids = self.fde.search(encodings, max(candidates, k), rescore_multiplier=0)
        out_scores = np.zeros((len(queries), k), np.float32)
        out_ids = np.zeros((len(queries), k), np.int64)
        for i in range(len(queries)):
            ids = np.sort(candidate_ids[i])
            scores = self._maxsim(queries.take([i]), self.documents.take(ids), 0, len(ids))
            out_scores[i], out_ids[i] = (a[0] for a in merge_topk(scores, ids[None, :], k))
        return out_scores, out_ids

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        d = self.documents
        np.save(path / "vectors.npy", d.vectors)
        np.save(path / "offsets.npy", d.offsets)
        if d.scales is not None:
            np.save(path / "scales.npy", d.scales)
        header = {"format": FORMAT, "version": VERSION, "precision": self.precision, "dim": self.dim, "count": len(self),
                  "tokens": len(d.vectors), "muvera": None}  # fmt: skip
        if self.muvera is not None:
            np.save(path / "muvera_hyperplanes.npy", self.muvera.hyperplanes)
            np.save(path / "muvera_projections.npy", self.muvera.projections)
            self.fde.save(path / "fde")
            header["muvera"] = {"repetitions": self.muvera.hyperplanes.shape[0], "simhash_bits": self.muvera.hyperplanes.shape[2],
                                "projection_dim": self.muvera.projections.shape[2]}  # fmt: skip
        write_header(path, header)

    @classmethod
    def load(cls, path: str | Path, mmap: bool = True) -> MultiVectorIndex:
        path = Path(path)
        header, header_path = read_header(path, "multi-vector index", FORMAT, VERSION)
        precision = header.get("precision")
        if precision not in PRECISIONS:
            raise ValueError(f"{header_path}: precision {precision!r} is not one of {', '.join(PRECISIONS)}")
        dim, count, tokens = header.get("dim"), header.get("count"), header.get("tokens")
        for name, value, minimum in (("dim", dim, 1), ("count", count, 0), ("tokens", tokens, 0)):
            if not is_count(value, minimum):
                raise ValueError(f"{header_path}: {name} {value!r} is not a valid count")
        mode = "r" if mmap else None
        vectors = load_array(path / "vectors.npy", mode, np.float32 if precision == "float32" else np.int8, (tokens, dim))
        offsets = load_array(path / "offsets.npy", None, np.int64, (count + 1,))
        scales = load_array(path / "scales.npy", mode, np.float32, (tokens,)) if precision == "int8" else None
        try:
            documents = MultiVectorEmbeddings(vectors, offsets, scales)
        except ValueError as e:
            raise ValueError(f"{path / 'offsets.npy'}: {e}") from None
        documents.check_finite(f"{path / ('vectors.npy' if scales is None else 'scales.npy')}: document")
        muvera = fde = None
        settings = header.get("muvera")
        if settings is not None:
            if not isinstance(settings, dict) or not all(is_count(settings.get(n), 0) for n in ("repetitions", "simhash_bits", "projection_dim")):
                raise ValueError(f"{header_path}: muvera must hold repetitions, simhash_bits and projection_dim counts")
            r, bits, width = settings["repetitions"], settings["simhash_bits"], settings["projection_dim"]
            arrays = {name: load_array(path / name, None, np.float32, (r, dim, n))
                      for name, n in (("muvera_hyperplanes.npy", bits), ("muvera_projections.npy", width))}  # fmt: skip
            for name, array in arrays.items():
                if not np.isfinite(array).all():
                    raise ValueError(f"{path / name}: holds NaN or inf")
            muvera = MuveraEncoder(*arrays.values())
            fde = Index.load(path / "fde", mmap=mmap)
            if len(fde) != count or fde.dim != muvera.output_dim:
                raise ValueError(f"{path / 'fde'}: {len(fde)} encodings of {fde.dim} values; expected {count} of {muvera.output_dim}")
        return cls(documents, muvera, fde)
