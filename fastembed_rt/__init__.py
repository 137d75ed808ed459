"""fastembed_rt: text in, vectors out, on packed tokens and fused kernels.

    import fastembed_rt
    model = fastembed_rt.load("all-MiniLM-L6-v2")
    vectors = model.encode(["a text", "another"])
"""

import os

# Our C++ kernels run their own threads between torch's oneDNN GEMMs. By default libgomp keeps torch's idle
# OpenMP workers spinning for a long while after each GEMM, on the very cores those threads need (measured:
# 1.2-1.5x slower encodes on 2 cores). A short spin keeps GEMM wake-ups fast without that. It takes effect
# only when fastembed_rt is imported before torch, and never overrides a value the user set.
os.environ.setdefault("GOMP_SPINCOUNT", "10000")

from . import isa  # noqa: E402  (FASTEMBED_RT_ISA, before anything imports torch)

isa.configure()

from .bge_m3 import BGEM3, load_bge_m3
from .colbert import ColBERT, load_colbert
from .engine import Embedder, TruncationWarning, load
from .multivector import MultiVectorEmbeddings
from .multivector_index import MultiVectorIndex
from .quantize import quantize_embeddings
from .reranker import QueryTooLong, Reranker, load_reranker
from .hybrid import hybrid
from .search import Index
from .sparse import SparseEmbeddings
from .sparse_encoder import SparseEncoder, load_sparse
from .sparse_index import SparseIndex

__version__ = "0.1.0"

__all__ = ["BGEM3", "ColBERT", "Embedder", "Index", "MultiVectorEmbeddings", "MultiVectorIndex", "QueryTooLong",
           "Reranker", "SparseEmbeddings", "SparseEncoder", "SparseIndex", "TruncationWarning", "__version__", "hybrid",
           "load", "load_bge_m3", "load_colbert", "load_reranker", "load_sparse", "quantize_embeddings"]
