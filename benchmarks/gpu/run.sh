#!/usr/bin/env bash
# The one GPU check (device tool, H100): build, test the Triton kernels on the GPU, time them, in ~8 minutes.
#   bash benchmarks/gpu/run.sh            # results (CSV, logs) under $OUT, else out/gpu
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-$PWD/out/gpu}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$OUT/device.txt"
"$PY" -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$OUT/device.txt"

# The C++ extension (pybind11, parallel compile); nothing is fetched.
"$PY" -m pip install -q --no-build-isolation --no-deps --no-index -e . > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }

# Kernel tests on the GPU (bf16 included); no TRITON_INTERPRET where /dev/nvidiactl exists.
timeout 240 "$PY" -m pytest -q -p no:cacheprovider -n 8 tests/kernel_tests tests/test_testing.py > "$OUT/tests.log" 2>&1
tests=$?
tail -5 "$OUT/tests.log"

timeout 300 "$PY" benchmarks/gpu/bench_kernels.py --out "$OUT" 2>&1 | grep -v -E "Loading weights|LOAD REPORT|^Key|^-+\+|^pooler|^Notes|MISSING|^$" | tee "$OUT/bench.log"
bench=${PIPESTATUS[0]}
echo "tests exit $tests, bench exit $bench"
exit $(( tests != 0 || bench != 0 ))
