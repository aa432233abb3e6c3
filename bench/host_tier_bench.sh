#!/usr/bin/env bash
# The host KV tier measured: prefix-bench's multi-turn chat workload (the test model on the
# CPU) against three servers in turn, in one run:
#   small        a device KV cache that holds about a quarter of the conversations;
#   small+host   the same, with a host tier large enough for the rest (--host_kv_cache_bytes);
#   large        a device KV cache large enough for everything (the ideal this aims at).
#
#   bench/host_tier_bench.sh [--quick] [--json=FILE]
#
# Prints each one's hit rate and output throughput side by side, with the host tier's
# blocks moved. Writes them as JSON (default host_tier_bench.json). Exit code 1 when a
# request fails, or the host tier's hit rate is more than 5 % below the large cache's.
# --quick: a smaller workload (the test suite's run).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
build=${BUILD_DIR:-$root/build}
prefixd=${PREFIXD:-$build/service/prefixd}
bench=$build/clients/prefix-bench
prefixctl=$build/clients/prefixctl
json=host_tier_bench.json
quick=0
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    --json=*) json=${arg#--json=} ;;
    *) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
  esac
done
work=$(mktemp -d /tmp/prefixd-host-tier-bench.XXXXXX)
port=${HOST_TIER_BENCH_PORT:-18071}  # under the ephemeral range (deploy/haproxy.cfg)
http_port=$((port + 1))

# 16 conversations of 6 turns (S=64 Q=32 O=32): each grows to about 500 tokens, some 8k in
# all. All are in flight at once and 4 requests run at a time, so between two turns of a
# conversation the others pass through the cache. The small cache holds 2048 tokens (about
# a quarter), the host tier 512 blocks of the test model (32 MiB, 8192 tokens), the large
# cache 16384 tokens.
conversations=$((quick ? 8 : 16))
turns=$((quick ? 4 : 6))
small_tokens=$((quick ? 1024 : 2048))
workload=(--workload=multi-turn --conversations=$conversations --turns=$turns
  --system_prompt_len=64 --question_len=32 --output_len=32 --concurrency=$conversations --noprogress)

pid=
stop_server() {
  if [[ -n "$pid" ]]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=
  fi
}
trap 'stop_server; rm -rf "$work"' EXIT

run() {  # $1: name; the rest: server flags
  local name=$1
  shift
  "$prefixd" --listen=127.0.0.1:$port --http_listen=127.0.0.1:$http_port --openai_listen= \
    --threads=1 --max_running_requests=4 --shutdown_grace=2s "$@" >"$work/$name.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 300); do
    "$prefixctl" --target=127.0.0.1:$port stats >/dev/null 2>&1 && break
    sleep 0.1
  done
  "$bench" --target=127.0.0.1:$port "${workload[@]}" --json="$work/$name.json" \
    >"$work/$name.txt" 2>&1 || true
  "$prefixctl" --target=127.0.0.1:$port --json stats >"$work/$name.stats.json" 2>/dev/null || true
  stop_server
}

echo "host_tier_bench: multi-turn, $conversations conversations x $turns turns, all in flight, 4 running"
run small --kv_cache_tokens=$small_tokens --host_kv_cache_bytes=0
run small+host --kv_cache_tokens=$small_tokens --host_kv_cache_bytes=32M
run large --kv_cache_tokens=16384 --host_kv_cache_bytes=0

/usr/bin/python3 - "$work" "$json" <<'PY'
import json, sys
work, out = sys.argv[1], sys.argv[2]
rows, failed = {}, 0
for name in ("small", "small+host", "large"):
    try:
        r = json.load(open(f"{work}/{name}.json"))
    except (OSError, ValueError):
        print(f"{name}: no results; its output:\n" + open(f"{work}/{name}.txt").read())
        sys.exit(1)
    res = r["results"]
    stats = {}
    try:
        stats = json.load(open(f"{work}/{name}.stats.json"))
    except (OSError, ValueError):
        pass
    rows[name] = {
        "hit_rate": res["achieved_hit_rate"],
        "ideal_hit_rate": res.get("ideal_hit_rate"),
        "output_tokens_per_s": res["output_token_throughput"],
        "ttft_p50_ms": res["ttft_ms"]["p50"],
        "failed": res.get("failed", 0),
        "server_stats": stats,
    }
    failed += res.get("failed", 0)
print(f"{'':12} {'hit rate':>9} {'output tok/s':>13} {'TTFT p50 ms':>12}")
for name, row in rows.items():
    print(f"{name:12} {100 * row['hit_rate']:8.1f}% {row['output_tokens_per_s']:13.1f} "
          f"{row['ttft_p50_ms']:12.1f}")
large = rows["large"]["hit_rate"]
host = rows["small+host"]["hit_rate"]
small = rows["small"]
print(f"host tier: {100 * host / large:.1f} % of the large cache's hit rate (aim >= 95 %), "
      f"{rows['small+host']['output_tokens_per_s'] / small['output_tokens_per_s']:.2f}x the "
      f"small cache's throughput")
json.dump({"runs": rows, "host_vs_large_hit_rate": host / large,
           "host_vs_small_throughput":
               rows["small+host"]["output_tokens_per_s"] / small["output_tokens_per_s"]},
          open(out, "w"), indent=2)
sys.exit(1 if failed or host < 0.95 * large else 0)
PY
