#!/usr/bin/env bash
# The GPU check: everything the CUDA backend owes, in one device call (../shared/DEVICE.md).
#
#   scripts/gpu_check.sh --bundle          here: build for sm_90a and pack .gpu/ (binaries,
#                                          the libraries the GPU machine lacks, the test model)
#   scripts/gpu_check.sh [--out=DIR] [--budget=S]
#                                          on the GPU machine, carrying .gpu: run every step
#   scripts/gpu_check.sh --dry-run         here: the same steps on the CPU backend, with the
#                                          test model, to debug the script (= --backend=cpu)
#   --steps=a,b,...                        only these steps (machine always runs); e.g. two
#                                          device calls on one warm machine, each under 600 s
#
# Steps, most important first, each under its own time limit; a step that no longer fits the
# budget (default 540 s) is skipped and says so:
#   machine        GPU, driver, CUDA, torch/transformers, nsys and compute-sanitizer present
#   copy_bw        device-to-device copy GB/s (read + write): the bound every "% of bound" uses
#   kernel_tests   cuda_kernels_test
#   engine_bench   random:llama-3-8b decode at batch 1/16/64/256 (512-token context), prefill
#                  of 2048 tokens, time to first token miss/hit, a returning 8k conversation
#   engine_bench_nographs  decode at batch 1/16 with --cuda_graphs=false
#   cascade_bench  decode attention, 256 (and 64) sequences over a 2048-token shared prefix,
#                  with and without the cascade kernel (issue 16)
#   chatbot        bench/shared_prefix_bench.sh: the shared-system-prompt workload through gRPC,
#                  cache on/off, 0 % hits, blocks in use, peak memory (issue 16)
#   prefill_128    the prefill of a 128-token suffix alone (a hit's TTFT is set against it)
#   tenant_abuse   tenant_abuse_test on this backend: the normal tenant's p99 TTFT under
#                  abuse against alone (issue 13)
#   peer_compiled  ../shared/peers/hf_compiled.py (StaticCache + torch.compile, batch 1 and 16)
#   peer_prefill   tools/hf_eager_prefill.py (transformers eager, 2048-token prefill)
#   hf_reference   tools/hf_reference.py: random Llama/Qwen2 models and transformers' outputs
#   engine_tests   cuda_engine_test, with the hf_reference models (PREFIXD_HF_REFERENCE)
#   nsys           Nsight Systems over a batch-1 decode run: where a step's time goes
#   memcheck       compute-sanitizer memcheck over the kernel tests
#   kernels_bench  cuda_kernels_bench (attention, gemm, norms, sampling at 8B shapes)
# Every figure lands as JSON under --out (default $OUT, else /tmp/gpu_check); summary.json and
# the printed summary gather them. Exit code 0 when every step that ran passed.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

usage() {
  sed -n '2,36p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

backend=cuda
out=${OUT:-/tmp/gpu_check}
budget=540
bundle=0
steps=""
for arg in "$@"; do
  case "$arg" in
    --bundle) bundle=1 ;;
    --dry-run | --backend=cpu) backend=cpu ;;
    --backend=cuda) backend=cuda ;;
    --out=*) out=${arg#--out=} ;;
    --budget=*) budget=${arg#--budget=} ;;
    --steps=*) steps=",${arg#--steps=}," ;;
    *) usage ;;
  esac
done
[[ "$budget" =~ ^[0-9]+$ ]] || usage

programs=(tests/kernels/cuda_kernels_test tests/engine/cuda_engine_test
  bench/engine/engine_bench bench/kernels/cuda_kernels_bench service/prefixd
  clients/prefix-bench clients/prefixctl tests/service/tenant_abuse_test)

# ---- --bundle: here, before the device call ----
if ((bundle)); then
  build=${BUILD_DIR:-$root/build}
  [[ -f "$build/CMakeCache.txt" ]] || cmake -S . -B "$build" -G Ninja \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CUDA_ARCHITECTURES=90a || exit 1
  cmake --build "$build" --target cuda_kernels_test cuda_engine_test engine_bench \
    cuda_kernels_bench prefixd prefix-bench prefixctl tenant_abuse_test test_model || {
    echo "gpu_check: could not build the CUDA programs in $build (nvcc found when it was" \
      "configured? /usr/local/cuda/bin/nvcc)" >&2
    exit 1
  }
  # Packed with gzip, which every machine has (107 MiB unpacked, OpenBLAS alone 36 MB); the
  # run unpacks it on the GPU machine.
  stage=$(mktemp -d)
  trap 'rm -rf "$stage"' EXIT
  mkdir -p "$stage/bin"
  for p in "${programs[@]}"; do
    cp "$build/$p" "$stage/bin/" && strip --strip-debug "$stage/bin/$(basename "$p")" || exit 1
  done
  cp -r "$build/test-model" "$stage/test-model"
  ../shared/tools/device-bundle "$stage/lib" "$stage"/bin/* || exit 1
  rm -rf .gpu
  mkdir -p .gpu
  tar -C "$stage" -cf - . | gzip -9 >.gpu/bundle.tar.gz || exit 1
  size=$(du -sm .gpu | cut -f1)
  echo "gpu_check: .gpu/bundle.tar.gz is ${size} MiB (the device call carries at most 64 MiB)"
  ((size < 64)) || exit 1
  grep -qx "/.gpu/" .gitignore || echo "(add /.gpu/ to .gitignore so it travels only when carried)"
  echo "then, with the device tool: run(command='scripts/gpu_check.sh', carry=['.gpu'], timeout_s=600)"
  exit 0
fi

# ---- the run ----
mkdir -p "$out"
# The GPU machine runs the bundle (unpacked once); a dry run, or a machine without a bundle,
# the build tree.
if [[ $backend == cuda && -f .gpu/bundle.tar.gz && ! -d .gpu/bin ]]; then
  tar -C .gpu -xzf .gpu/bundle.tar.gz || { echo "gpu_check: bad bundle" >&2; exit 1; }
fi
bin=$root/.gpu/bin
test_model=$root/.gpu/test-model
if [[ $backend == cpu || ! -d "$bin" ]]; then
  build=${BUILD_DIR:-$root/build}
  mkdir -p "$out/.bin"
  for p in "${programs[@]}"; do [[ -x "$build/$p" ]] && ln -sf "$build/$p" "$out/.bin/"; done
  bin=$out/.bin
  test_model=$build/test-model
fi
export LD_LIBRARY_PATH=$root/.gpu/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export PREFIXD=$bin/prefixd PREFIX_BENCH=$bin/prefix-bench PREFIXCTL=$bin/prefixctl
export PREFIXD_TEST_MODEL_DIR=$test_model
export PATH=$PATH:/usr/local/cuda/bin
start=$(date +%s)
failed=0
: >"$out/steps.jsonl"

have() { command -v "$1" >/dev/null 2>&1; }
have_torch() { python3 -c "import torch, transformers" >/dev/null 2>&1; }
nsys_path() {
  have nsys && { command -v nsys; return; }
  ls /opt/nvidia/nsight-systems/*/bin/nsys /usr/local/cuda*/bin/nsys 2>/dev/null | head -1
}

# record NAME STATUS SECONDS NOTE: one line of steps.jsonl.
record() {
  python3 -c 'import json, sys; print(json.dumps({"step": sys.argv[1], "status": sys.argv[2],
    "seconds": float(sys.argv[3]), "note": sys.argv[4]}))' "$@" >>"$out/steps.jsonl"
  printf "gpu_check: %-14s %-8s %6ss  %s\n" "$1" "$2" "$3" "$4"
}

selected() { [[ -z "$steps" || "$steps" == *",$1,"* || $1 == machine ]]; }

# step NAME LIMIT_S COMMAND...: runs COMMAND under `timeout`, its output in NAME.log.
step() {
  local name=$1 limit=$2
  shift 2
  selected "$name" || return 0
  local left=$((budget - ($(date +%s) - start)))
  if ((left < limit / 2)); then
    record "$name" skipped 0 "over the budget (${left} s left of ${budget})"
    return
  fi
  ((limit > left)) && limit=$left
  local t0 rc
  t0=$(date +%s.%N)
  timeout --kill-after=10 "$limit" "$@" >"$out/$name.log" 2>&1
  rc=$?
  local dt
  dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  if ((rc == 0)); then
    record "$name" passed "$dt" ""
  elif ((rc == 124 || rc == 137)); then
    record "$name" timeout "$dt" "killed after ${limit} s (log: $name.log)"
    failed=1
  else
    record "$name" failed "$dt" "exit $rc: $(tail -c 300 "$out/$name.log" | tr '\n' ' ')"
    failed=1
  fi
}

skip() { selected "$1" && record "$1" skipped 0 "$2"; return 0; }
built() { [[ -x "$bin/$1" ]]; }
not_built="not built here (no nvcc when the build was configured)"

step machine 20 python3 tools/gpu_check.py machine "$out" "$backend"

if [[ $backend == cuda ]]; then
  model=random:llama-3-8b
  bench_args=(--decode_batches=1,16,64,256 --context=512 --new_tokens=128 --prefill_tokens=2048
    --conversation_tokens=8192 --min_time_s=0.5)
else  # the test model: the same steps, small
  model=$test_model
  bench_args=(--decode_batches=1,16 --context=128 --new_tokens=32 --prefill_tokens=512
    --conversation_tokens=512 --min_time_s=0.05)
fi

if [[ $backend == cuda ]]; then
  step copy_bw 40 "$bin/cuda_kernels_bench" --benchmark_filter=BM_DeviceCopy \
    --benchmark_out="$out/copy_bw.json" --benchmark_out_format=json
else
  skip copy_bw "the CPU backend has no device copy"
fi
if built cuda_kernels_test; then
  step kernel_tests 90 "$bin/cuda_kernels_test" --gtest_output="json:$out/kernel_tests.json"
else
  skip kernel_tests "$not_built"
fi
step engine_bench 150 "$bin/engine_bench" --backend="$backend" --model="$model" \
  "${bench_args[@]}" --benchmark_out="$out/engine_bench.json" --benchmark_out_format=json
if [[ $backend == cuda ]]; then  # the same decode without CUDA graphs: what they bring
  step engine_bench_nographs 60 "$bin/engine_bench" --backend=cuda --model="$model" \
    --decode_batches=1,16 --context=512 --new_tokens=128 --cuda_graphs=false \
    --benchmark_filter=BM_Decode --benchmark_out="$out/engine_bench_nographs.json" \
    --benchmark_out_format=json
else
  skip engine_bench_nographs "CUDA graphs are the GPU's"
fi
# Issue 16: decode attention over a shared prefix with and without the cascade kernel;
if [[ $backend == cuda ]]; then
  step cascade_bench 40 "$bin/cuda_kernels_bench" --benchmark_filter=BM_CascadeDecodeAttention \
    --benchmark_min_time=0.1 --benchmark_out="$out/cascade_bench.json" --benchmark_out_format=json
else
  skip cascade_bench "the CUDA cascade kernel (the CPU's groups: cpu_attention_test)"
fi
# the chatbot workload through gRPC, cache on/off, 0 % hits, memory; and the
# prefill of a 128-token suffix alone, which a hit's time to first token is set against.
if [[ $backend == cuda ]]; then
  step chatbot 240 bench/shared_prefix_bench.sh --backend=cuda --model="$model" \
    --json="$out/chatbot.json"
  step prefill_128 40 "$bin/engine_bench" --backend=cuda --model="$model" --prefill_tokens=128 \
    --benchmark_filter=BM_Prefill --min_time_s=0.5 --benchmark_out="$out/prefill_128.json" \
    --benchmark_out_format=json
else
  step chatbot 120 bench/shared_prefix_bench.sh --backend=cpu --model="$model" --quick \
    --json="$out/chatbot.json"
  skip prefill_128 "a GPU figure"
fi
# Issue 13: a hostile tenant beside a normal one, on this backend; the normal tenant's p99
# time to first token against its value alone (the test's report).
if built tenant_abuse_test; then
  flags=""
  [[ $backend == cuda ]] && flags="--backend=cuda --model=$model"
  step tenant_abuse 150 env PREFIXD_TEST_SERVER="$bin/prefixd" PREFIXD_TEST_SERVER_FLAGS="$flags" \
    bash -c 'cd "$1" && exec "$2" --gtest_filter="*AHostileTenantHurtsOnlyItself*"' _ \
    "$out" "$bin/tenant_abuse_test"
else
  skip tenant_abuse "$not_built"
fi
if [[ $backend == cuda ]] && have_torch; then
  step peer_compiled 150 env OUT="$out" python3 ../shared/peers/hf_compiled.py
  step peer_prefill 60 python3 tools/hf_eager_prefill.py --out="$out"
else
  skip peer_compiled "needs a GPU and torch + transformers"
  skip peer_prefill "needs a GPU and torch + transformers"
fi
hf_dirs=""
if have_torch; then
  step hf_reference 90 python3 tools/hf_reference.py --out "$out/hf"
  for d in "$out"/hf/*/; do [[ -f "$d/reference.json" ]] && hf_dirs+="${d%/}:"; done
else
  skip hf_reference "torch + transformers are not installed here"
fi
if built cuda_engine_test; then
  step engine_tests 150 env PREFIXD_HF_REFERENCE="$hf_dirs" "$bin/cuda_engine_test" \
    --gtest_output="json:$out/engine_tests.json"
else
  skip engine_tests "$not_built"
fi
nsys=$(nsys_path)
if [[ $backend == cuda && -n "$nsys" ]]; then
  step nsys 90 "$nsys" profile --force-overwrite=true --stats=true --output="$out/decode_bs1" \
    "$bin/engine_bench" --backend=cuda --model="$model" --decode_batches=1 --context=512 \
    --new_tokens=64 --benchmark_filter=BM_Decode
else
  skip nsys "needs a GPU and Nsight Systems"
fi
if [[ $backend == cuda ]] && have compute-sanitizer; then
  # Memcheck is slow: the largest sweeps stay out (CascadeProblemTest is the CPU's).
  slow='*FullVocabulary*:*LargeTensors*:*GroupsOfEverySize*:CascadeProblemTest.*'
  step memcheck 120 compute-sanitizer --tool=memcheck --error-exitcode=1 \
    "$bin/cuda_kernels_test" --gtest_filter="-$slow"
else
  skip memcheck "needs a GPU and compute-sanitizer"
fi
if [[ $backend == cuda ]]; then
  step kernels_bench 60 "$bin/cuda_kernels_bench" \
    --benchmark_filter=-BM_DeviceCopy\|BM_CascadeDecodeAttention \
    --benchmark_min_time=0.05 --benchmark_out="$out/kernels_bench.json" \
    --benchmark_out_format=json
else
  skip kernels_bench "the CPU backend's kernels: bench/kernels/cpu_kernels_bench"
fi

python3 tools/gpu_check.py summary "$out" || failed=1
echo "gpu_check: $(($(date +%s) - start)) s; figures in $out"
exit $failed
