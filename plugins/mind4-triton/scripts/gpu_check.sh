#!/usr/bin/env bash
# One call on a GPU machine: install, bf16 correctness of the MoE kernels, benchmark
# (kernel variants -> tuned configs, model, decode profile, logits vs fp32 / torch),
# then the conformance specs. Results under $OUT (or ./gpu-out).
# Usage: plugins/mind4-triton/scripts/gpu_check.sh [bench-seconds] [specs-seconds] [bench args...]
set -u
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
BENCH_S=${1:-330}; SPECS_S=${2:-150}; shift 2 2>/dev/null || true
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
python3 -m pip install -q --no-deps --no-build-isolation -e . -e plugins/mind4-torch -e plugins/mind4-triton 2>&1 | tail -3
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
timeout 60 python3 -m pytest -q -x -p no:cacheprovider plugins/mind4-triton/tests/test_moe.py 2>&1 | tail -5 | tee "$OUT/tests.txt"
timeout "$BENCH_S" python3 -m mind4_triton.bench --kernels --profile --json "$OUT/bench.json" "$@" 2>&1 | tee "$OUT/bench.log" | tail -c 5000
timeout "$SPECS_S" python3 -m mind4_specs --backend triton --device cuda 2>&1 | tail -60 | tee "$OUT/specs.txt"
