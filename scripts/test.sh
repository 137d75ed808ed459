#!/usr/bin/env bash
# The test suite, then the kernel, precision and engine tests once more with every kernel capped at AVX2
# (FASTEMBED_RT_ISA=avx2 also caps oneDNN, ATen and MKL), so that both the AVX-512 and the AVX2 paths are tested
# whichever CPU this runs on (on a CPU without AVX-512 the first pass already runs them: no second one). Extra
# arguments go to both pytest runs.
set -euo pipefail
cd "$(dirname "$0")/.."
# Two workers, a file each at a time: much of the suite waits on one core (imports, subprocesses, servers, Python).
# Files go out in collection order, which tests/conftest.py starts with the slowest.
parallel=(-n 2 --dist loadfile --no-loadscope-reorder)
.venv/bin/python -m pytest -q "${parallel[@]}" "$@"
if ! .venv/bin/python -c "import sys; from fastembed_rt import _C; sys.exit('avx512' not in _C.supported_isas())"; then
  echo "scripts/test.sh: this CPU has no AVX-512, so the pass above ran the AVX2 paths: no second pass under FASTEMBED_RT_ISA=avx2"
  exit 0
fi
FASTEMBED_RT_ISA=avx2 .venv/bin/python -m pytest -q "${parallel[@]}" tests/ops tests/models/test_fused_encoder.py tests/test_precisions.py tests/models/test_mpnet_real.py tests/models/test_embeddinggemma_real.py \
  tests/test_engine.py tests/models/test_reranker.py tests/models/test_sparse_encoder.py tests/models/test_splade_real.py tests/test_sparse_index.py tests/models/test_colbert.py tests/test_multivector_index.py tests/test_similarity_kernels.py tests/test_search.py tests/test_ceilings.py "$@"
