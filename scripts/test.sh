#!/usr/bin/env bash
# The test command: installs missing Debian packages, builds, and runs the whole test suite.
#
#   scripts/test.sh              build into build/ and run every test (GPU tests skip
#                                themselves when no GPU is present)
#   scripts/test.sh --sanitize   build with ASan+UBSan into build-asan/ (CPU only) and run
#                                the CPU test suite there
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir=build
cmake_flags=()
if [[ "${1:-}" == "--sanitize" ]]; then
  build_dir=build-asan
  cmake_flags=(-DPREFIXD_SANITIZE=ON -DPREFIXD_CUDA=OFF -DPREFIXD_BENCHMARKS=OFF)
  export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
  export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
  # The soak test runs a shorter while under the sanitizers (they are ~5x slower).
  export PREFIXD_SOAK_SECONDS="${PREFIXD_SOAK_SECONDS:-30}"
elif [[ $# -gt 0 ]]; then
  echo "usage: scripts/test.sh [--sanitize]" >&2
  exit 2
fi

./scripts/setup.sh
jobs=$(nproc)
cmake -S . -B "$build_dir" -G Ninja "${cmake_flags[@]}"
cmake --build "$build_dir" -j "$jobs"
ctest --test-dir "$build_dir" --output-on-failure -j "$jobs"
