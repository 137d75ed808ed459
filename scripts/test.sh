#!/usr/bin/env bash
# The test suite, then the kernel, precision and engine tests once more with every kernel capped at AVX2
# (FASTEMBED_RT_ISA=avx2 also caps oneDNN, ATen and MKL), so that both the AVX-512 and the AVX2 paths are tested
# whichever CPU this runs on. Extra arguments go to both pytest runs.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m pytest -q "$@"
FASTEMBED_RT_ISA=avx2 .venv/bin/python -m pytest -q tests/ops tests/models/test_fused_encoder.py tests/test_precisions.py tests/models/test_mpnet_real.py tests/models/test_embeddinggemma_real.py \
  tests/test_engine.py tests/models/test_reranker.py tests/models/test_sparse_encoder.py tests/models/test_splade_real.py tests/test_sparse_index.py tests/models/test_colbert.py tests/test_multivector_index.py tests/test_similarity_kernels.py tests/test_search.py tests/test_ceilings.py "$@"
