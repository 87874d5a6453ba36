#!/usr/bin/env bash
# One call on a GPU machine: install, benchmark (kernels, model, torch side by side),
# then the unit tests and the conformance specs in bf16. Results under $OUT (or ./gpu-out).
# Usage: plugins/mind4-triton/scripts/gpu_check.sh [bench-seconds] [tests-seconds] [specs-seconds]
set -u
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
python3 -m pip install -q --no-deps --no-build-isolation -e . -e plugins/mind4-torch -e plugins/mind4-triton 2>&1 | tail -3
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
timeout "${1:-330}" python3 -m mind4_triton.bench --kernels --torch --json "$OUT/bench.json" 2>&1 | tee "$OUT/bench.log" | tail -c 6000
timeout "${2:-120}" python3 -m pytest -q -x -p no:cacheprovider plugins/mind4-triton/tests 2>&1 | tail -25 | tee "$OUT/tests.txt"
timeout "${3:-100}" python3 -m mind4_specs --backend triton --device cuda 2>&1 | tail -40 | tee "$OUT/specs.txt"
