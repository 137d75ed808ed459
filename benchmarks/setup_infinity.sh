#!/usr/bin/env bash
# The peer for benchmarks/bench_server.py: infinity-emb in its own virtual environment (.venv-infinity),
# because its pins (numpy<2, sentence-transformers<4, uvicorn 0.32) clash with ours. torch is the CPU
# build, installed first, so the unpinned `torch>=2.2.1` of infinity's extras never pulls a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv-infinity/bin/python ] || "${PYTHON:-python3}" -m venv .venv-infinity
pip=(.venv-infinity/bin/python -m pip install --quiet --disable-pip-version-check)
.venv-infinity/bin/python -c "import torch" 2>/dev/null || "${pip[@]}" "torch==2.13.0+cpu" ||
  "${pip[@]}" "torch==2.13.0+cpu" --extra-index-url https://download.pytorch.org/whl/cpu
"${pip[@]}" "infinity-emb[server,torch]==0.0.78"
.venv-infinity/bin/infinity_emb --help >/dev/null && echo "infinity-emb installed in .venv-infinity"
