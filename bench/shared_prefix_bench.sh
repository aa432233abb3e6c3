#!/usr/bin/env bash
# The shared-system-prompt chatbot workload end to end, through gRPC: prefix-bench's
# shared-prefix workload against prefixd with the prefix cache on, then off; the same with
# every prompt distinct (0 % hits: what the cache costs); and with cascade attention off (the
# CPU, where it is on by default) or on (CUDA, where it runs only with PREFIXD_CUDA_CASCADE=1
# until a GPU session has tested it). One fresh server per run.
#
#   bench/shared_prefix_bench.sh [--backend=cpu|cuda] [--model=M] [--quick] [--json=FILE]
#                                [-- PREFIXD_FLAGS...]
#
# cuda (scripts/gpu_check.sh): G=16 P=16 S=2048 Q=128 O=256, the default preset's shapes with
# 16 of its 64 groups (the same ideal hit rate, 88.2 %), and 64 distinct prompts; model
# random:llama-3-8b unless --model. cpu: the test model, G=4 P=8 S=256 Q=32 O=16 and 32
# distinct; --quick: smaller (the test suite's run). Prints, and writes as JSON (default
# shared_prefix_bench.json): hit rate against the ideal, output tokens/s, TTFT p50 and p99
# with and without the cache and their ratios, the distinct workload's throughput with and
# without, the KV cache's capacity, the most blocks in use and cached during the run, and on
# a GPU the peak device memory. Exit code 1 when a request fails.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
build=${BUILD_DIR:-$root/build}
prefixd=${PREFIXD:-$build/service/prefixd}
bench=${PREFIX_BENCH:-$build/clients/prefix-bench}
prefixctl=${PREFIXCTL:-$build/clients/prefixctl}
backend=cpu
model=""
quick=0
json=shared_prefix_bench.json
server_flags=()
while (($#)); do
  case "$1" in
    --backend=*) backend=${1#--backend=} ;;
    --model=*) model=${1#--model=} ;;
    --quick) quick=1 ;;
    --json=*) json=${1#--json=} ;;
    --) shift; server_flags=("$@"); break ;;
    *) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
  esac
  shift
done
work=$(mktemp -d /tmp/prefixd-shared-prefix-bench.XXXXXX)

if [[ $backend == cuda ]]; then
  model=${model:-random:llama-3-8b}
  shape=(--num_groups=16 --prompts_per_group=16 --system_prompt_len=2048 --question_len=128
    --output_len=256)
  distinct=(--num_groups=64 --prompts_per_group=1 --system_prompt_len=2048 --question_len=128
    --output_len=256)
  vocab=(--vocab_size=128256 --max_token_id=127999)
  server_flags=(--backend=cuda --max_running_requests=256 "${server_flags[@]}")
else
  model=${model:-$build/test-model}
  g=$((quick ? 2 : 4)) p=$((quick ? 4 : 8))
  shape=(--num_groups=$g --prompts_per_group=$p --system_prompt_len=256 --question_len=32
    --output_len=$((quick ? 8 : 16)))
  distinct=(--num_groups=$((g * p)) --prompts_per_group=1 --system_prompt_len=256
    --question_len=32 --output_len=$((quick ? 8 : 16)))
  vocab=()
  server_flags=(--backend=cpu --threads=1 --max_running_requests=16 "${server_flags[@]}")
fi

pid=
samplers=()
stop_server() {
  for s in "${samplers[@]}"; do kill "$s" 2>/dev/null || true; done
  samplers=()
  if [[ -n "$pid" ]]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=
  fi
}
trap 'stop_server; rm -rf "$work"' EXIT

# run NAME WORKLOAD_FLAGS... -- SERVER_FLAGS...: a fresh server, one prefix-bench run.
run() {
  local name=$1
  shift
  local load=()
  while [[ $1 != -- ]]; do load+=("$1"); shift; done
  shift
  "$prefixd" --model="$model" --listen=127.0.0.1:0 --http_listen= --openai_listen= \
    --shutdown_grace=2s "${server_flags[@]}" "$@" >"$work/$name.out" 2>"$work/$name.log" &
  pid=$!
  local target=""
  for _ in $(seq 1 1200); do
    target=$(sed -n 's/^prefixd: listening on //p' "$work/$name.out" 2>/dev/null)
    [[ -n "$target" ]] && break
    kill -0 "$pid" 2>/dev/null || { tail -5 "$work/$name.log" >&2; echo "shared_prefix_bench: the $name server did not start" >&2; exit 1; }
    sleep 0.1
  done
  [[ -n "$target" ]] || { echo "shared_prefix_bench: the $name server took over 2 min" >&2; exit 1; }
  # Blocks in use and cached, sampled while it serves; the GPU's memory in use.
  (while kill -0 "$pid" 2>/dev/null; do
    "$prefixctl" --target="$target" --json stats 2>/dev/null || true
    sleep 0.25
  done) >"$work/$name.stats.jsonl" &
  samplers+=($!)
  if [[ $backend == cuda ]] && command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 250 \
      >"$work/$name.memory.txt" 2>/dev/null &
    samplers+=($!)
  fi
  "$bench" --target="$target" "${load[@]}" "${vocab[@]}" --noflush --noprogress \
    --json="$work/$name.json" >"$work/$name.txt" 2>&1 || true
  "$prefixctl" --target="$target" --json stats >>"$work/$name.stats.jsonl" 2>/dev/null || true
  stop_server
  grep -m1 "^prefixd: KV cache" "$work/$name.out" "$work/$name.log" 2>/dev/null |
    sed 's/^[^:]*:prefixd: //' >"$work/$name.kv.txt" || true
}

echo "shared_prefix_bench: $model on $backend: ${shape[*]}"
run cache "${shape[@]}" -- --prefix_cache=true
run no_cache "${shape[@]}" -- --prefix_cache=false
run distinct_cache "${distinct[@]}" -- --prefix_cache=true
run distinct_no_cache "${distinct[@]}" -- --prefix_cache=false
runs=(cache no_cache distinct_cache distinct_no_cache)
if [[ $backend == cpu ]]; then
  run no_cascade "${shape[@]}" -- --prefix_cache=true --cascade_attention=false
  runs+=(no_cascade)
else  # the CUDA cascade kernel runs only when asked for, until it has been tested on a GPU
  PREFIXD_CUDA_CASCADE=1 run cascade "${shape[@]}" -- --prefix_cache=true
  runs+=(cascade)
fi

/usr/bin/env python3 - "$work" "$json" "$backend" "${runs[@]}" <<'EOF'
import json, os, re, sys
work, out, backend, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
runs = {}
for name in names:
    try:
        with open(f"{work}/{name}.json") as f:
            r = json.load(f)["results"]
    except (OSError, ValueError, KeyError):
        with open(f"{work}/{name}.txt", errors="replace") as f:
            print(f"shared_prefix_bench: {name}: no results:\n{f.read()[-2000:]}")
        sys.exit(1)
    run = {"hit_rate": r["achieved_hit_rate"], "ideal_hit_rate": r["ideal_hit_rate"],
           "output_tokens_per_s": r["output_token_throughput"], "failed": r["failed"],
           "errors": r.get("errors", {}), "ttft_p50_ms": r["ttft_ms"]["p50"],
           "ttft_p99_ms": r["ttft_ms"]["p99"], "requests": r["succeeded"]}
    in_use = cached = 0
    for line in open(f"{work}/{name}.stats.jsonl", errors="replace"):
        try:
            blocks = json.loads(line)["blocks"]
        except (ValueError, KeyError):
            continue
        in_use = max(in_use, blocks["in_use"])
        cached = max(cached, blocks["in_use"] + blocks["evictable"])
    run["max_blocks_in_use"], run["max_blocks_cached"] = in_use, cached
    kv = open(f"{work}/{name}.kv.txt").read().strip() if os.path.exists(f"{work}/{name}.kv.txt") else ""
    m = re.search(r"KV cache (\d+) tokens in blocks of (\d+)", kv)
    if m:
        run["kv_capacity_tokens"], run["block_size"] = int(m.group(1)), int(m.group(2))
    if os.path.exists(f"{work}/{name}.memory.txt"):
        values = [int(v) for v in open(f"{work}/{name}.memory.txt").read().split() if v.isdigit()]
        if values:
            run["peak_device_memory_mib"] = max(values)
    runs[name] = run
c, n, dc, dn = (runs[k] for k in ("cache", "no_cache", "distinct_cache", "distinct_no_cache"))
report = {
    "backend": backend, "runs": runs,
    "throughput_ratio_cache_vs_off": c["output_tokens_per_s"] / n["output_tokens_per_s"],
    "hit_rate_of_ideal": c["hit_rate"] / c["ideal_hit_rate"] if c["ideal_hit_rate"] else 0,
    "ttft_p50_speedup": n["ttft_p50_ms"] / c["ttft_p50_ms"] if c["ttft_p50_ms"] else 0,
    "distinct_throughput_ratio": dc["output_tokens_per_s"] / dn["output_tokens_per_s"],
}
if "no_cascade" in runs:  # the CPU: cascade on by default
    report["cascade_throughput_ratio"] = (c["output_tokens_per_s"] /
                                          runs["no_cascade"]["output_tokens_per_s"])
if "cascade" in runs:  # CUDA: cascade only with PREFIXD_CUDA_CASCADE=1
    report["cascade_throughput_ratio"] = (runs["cascade"]["output_tokens_per_s"] /
                                          c["output_tokens_per_s"])
with open(out, "w") as f:
    json.dump(report, f, indent=2)
print(f"{'':20}{'hit rate':>10}{'ideal':>8}{'out tok/s':>11}{'TTFT p50':>10}{'p99 ms':>9}"
      f"{'max in use':>12}{'cached':>8}{'peak MiB':>10}")
for name, r in runs.items():
    print(f"{name:20}{r['hit_rate']:>10.1%}{r['ideal_hit_rate']:>8.1%}"
          f"{r['output_tokens_per_s']:>11.1f}{r['ttft_p50_ms']:>10.1f}{r['ttft_p99_ms']:>9.1f}"
          f"{r['max_blocks_in_use']:>12}{r['max_blocks_cached']:>8}"
          f"{r.get('peak_device_memory_mib', ''):>10}")
print(f"cache on: {report['throughput_ratio_cache_vs_off']:.2f}x the output throughput of cache "
      f"off, {report['hit_rate_of_ideal']:.1%} of the ideal hit rate, TTFT p50 "
      f"{report['ttft_p50_speedup']:.2f}x sooner; 0 % hits: "
      f"{report['distinct_throughput_ratio']:.3f}x" +
      (f"; cascade on: {report['cascade_throughput_ratio']:.2f}x off"
       if "cascade_throughput_ratio" in report else ""))
print(f"KV capacity {c.get('kv_capacity_tokens')} tokens; shared_prefix_bench: wrote {out}")
failed = sum(r["failed"] for r in runs.values())
if failed:
    print(f"FAIL: {failed} requests failed: " + "; ".join(
        f"{k}: {r['errors']}" for k, r in runs.items() if r["failed"]))
sys.exit(1 if failed else 0)
EOF
