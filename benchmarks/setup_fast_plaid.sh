#!/usr/bin/env bash
# The multi-vector search peer for benchmarks/bench_multivector.py: fast-plaid in its own virtual environment
# (.venv-fast-plaid). Its wheels are built against one torch release each (1.7.0.2110: torch 2.11.0), and on PyPI
# that release is the CUDA build: several GB, for a benchmark that runs fast-plaid on the CPU. Not part of
# install.sh; the benchmark reports fast-plaid as absent without it.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv-fast-plaid/bin/python ] || "${PYTHON:-python3}" -m venv .venv-fast-plaid
.venv-fast-plaid/bin/python -m pip install --quiet --disable-pip-version-check "fast-plaid==1.7.0.2110"
.venv-fast-plaid/bin/python -c "from fast_plaid import search" && echo "fast-plaid installed in .venv-fast-plaid"
