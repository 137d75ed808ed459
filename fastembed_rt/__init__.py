"""fastembed_rt: text in, vectors out, on packed tokens and fused kernels.

    import fastembed_rt
    model = fastembed_rt.load("all-MiniLM-L6-v2")
    vectors = model.encode(["a text", "another"])
"""

from .engine import Embedder, TruncationWarning, load
from .quantize import quantize_embeddings
from .search import Index

__version__ = "0.1.0"

__all__ = ["Embedder", "Index", "TruncationWarning", "__version__", "load", "quantize_embeddings"]
