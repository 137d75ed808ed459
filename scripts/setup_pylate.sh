#!/usr/bin/env bash
# The ColBERT reference for the tests and benchmarks: PyLate in its own virtual environment (.venv-pylate),
# because it pins sentence-transformers 5.3.0 and transformers <= 5.3.0, older than ours. torch is the CPU
# build, installed first; PyLate itself without its indexing extras (fast-plaid, fastkmeans), which pin torch.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv-pylate/bin/python ] || "${PYTHON:-python3}" -m venv .venv-pylate
pip=(.venv-pylate/bin/python -m pip install --quiet --disable-pip-version-check)
.venv-pylate/bin/python -c "import torch" 2>/dev/null || "${pip[@]}" "torch==2.13.0+cpu" ||
  "${pip[@]}" "torch==2.13.0+cpu" --extra-index-url https://download.pytorch.org/whl/cpu
"${pip[@]}" "sentence-transformers==5.3.0" "transformers==5.3.0" "datasets>=2.20" "ujson>=5"
"${pip[@]}" --no-deps "pylate==1.6.0"
.venv-pylate/bin/python -c "import pylate.models" && echo "pylate installed in .venv-pylate"
