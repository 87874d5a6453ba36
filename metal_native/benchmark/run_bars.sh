#!/usr/bin/env bash
# The issue-5 bars on the 64M "small" shape (vocab 8192, hidden 512, 8 layers,
# 8 heads of 64, 2 KV heads, 8 experts top-2, intermediate 512, window 128):
# prefill of 512 tokens and decode of 256 tokens, f32 and bf16 weights, 2 threads.
# Decode is bound by memory bandwidth, which on the shared CPU boxes moves
# between ~33 and ~65 GB/s with the host's other tenants: the script prints
# the 2-thread read rate of a 512 MB buffer (bench_memory) before and after.
#   metal_native/benchmark/run_bars.sh [BUILD_DIR]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$root/build}"
if [ ! -x "$build/benchmark/bench_e2e" ]; then
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DMIND4_BUILD_TESTS=OFF >/dev/null
  cmake --build "$build" --target bench_e2e --parallel 2 >/dev/null
fi
if [ ! -x "$build/benchmark/bench_memory" ]; then
  cmake --build "$build" --target bench_memory --parallel 2 >/dev/null
fi
dram() { echo "DRAM read, 2 threads, 512 MB: $("$build/benchmark/bench_memory" --mb 512 --reps 5 | awk '/anon huge/ {print $5, $6}')"; }
echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  host: $(uname -srm)  cpu: $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2 | xargs)  cores: $(nproc)  load: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)"
dram
for dtype in f32 bf16; do
  "$build/benchmark/bench_e2e" --dtype "$dtype" --threads 2 --prefill 512 --decode 256 --reps 5
done
dram
