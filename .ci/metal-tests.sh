#!/usr/bin/env bash
# Build metal_native under AddressSanitizer + UndefinedBehaviorSanitizer and run
# its C tests (ctest): kernels vs float64 references, the engine vs a float64
# forward pass, checkpoint bad input, sampler, API contract, and the fuzz
# corpus + crash reproducers. About 2-3 minutes on 2 cores.
#
#   .ci/metal-tests.sh               # sanitizer build in metal_native/build-sanitize
#   MIND4_METAL_BUILD_DIR=/tmp/b .ci/metal-tests.sh
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${MIND4_METAL_BUILD_DIR:-$root/metal_native/build-sanitize}"
generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi

cmake -S "$root/metal_native" -B "$build" "${generator[@]}" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DMIND4_ASAN=ON -DMIND4_UBSAN=ON \
  -DMIND4_BUILD_TESTS=ON -DMIND4_BUILD_BENCHMARKS=OFF
cmake --build "$build" --parallel 2

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
ctest --test-dir "$build" --output-on-failure --parallel 2
