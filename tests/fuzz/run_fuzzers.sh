#!/usr/bin/env bash
# Runs every libFuzzer target built in <build-dir> for <seconds> each, on a scratch copy of
# its seed corpus (tests/fuzz/corpus/<name>/ for target <name>_fuzz), and fails if any
# target finds a crash. Reproducers are kept in <build-dir>/fuzz-artifacts/<target>/.
#
# Build the targets first (clang, a separate build directory):
#   CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DPREFIXD_FUZZ=ON \
#       -DPREFIXD_CUDA=OFF -DPREFIXD_BENCHMARKS=OFF
#   ninja -C build-fuzz prefix_tree_fuzz
# then: tests/fuzz/run_fuzzers.sh build-fuzz 30
set -euo pipefail

usage="usage: $0 <build-dir> <seconds>"
build=${1:?$usage}
seconds=${2:?$usage}
here=$(cd "$(dirname "$0")" && pwd)

shopt -s nullglob
targets=()
for f in "$build"/tests/fuzz/*_fuzz; do
  [[ -f $f && -x $f ]] && targets+=("$f")
done
if ((${#targets[@]} == 0)); then
  echo "no fuzz targets in $build/tests/fuzz (configure with clang and -DPREFIXD_FUZZ=ON)" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()
for target in "${targets[@]}"; do
  name=$(basename "$target")
  corpus="$work/$name/corpus"
  artifacts="$build/fuzz-artifacts/$name"
  mkdir -p "$corpus" "$artifacts"
  seeds="$here/corpus/${name%_fuzz}"
  if [[ -d $seeds ]]; then
    cp "$seeds"/* "$corpus"/ 2>/dev/null || true
  fi
  echo "== $name: ${seconds}s, $(ls "$corpus" | wc -l) seed inputs"
  if "$target" "$corpus" -max_total_time="$seconds" -max_len=4096 -timeout=20 \
      -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$artifacts/"; then
    echo "== $name: no crash"
  else
    echo "== $name: FAILED; reproducers in $artifacts:" >&2
    ls -l "$artifacts" >&2
    failed+=("$name")
  fi
done

if ((${#failed[@]} > 0)); then
  echo "fuzz targets that found a crash: ${failed[*]}" >&2
  exit 1
fi
echo "all ${#targets[@]} fuzz target(s) ran ${seconds}s without a crash"
