#!/usr/bin/env bash
# Prefix affinity measured: 3 replicas behind HAProxy (deploy/cluster.sh), each with a KV
# cache that holds about half of the workload's system prompts; the same prefix-bench
# workload through the affinity port and through round robin, in one run; then a failover
# drill: one replica killed mid-run.
#
#   deploy/cluster_bench.sh [--quick] [--json=FILE]
#
# Prints hit rate and output throughput side by side, and the drill's outcome: the killed
# replica's in-flight calls (UNAVAILABLE, none hangs), how long until the proxy took it out
# of the ring, and a run after that (every call served). Writes them as JSON (default
# cluster_bench.json). Exit code 1 when affinity stays under 90 % of the ideal hit rate, a
# call ends with a code other than UNAVAILABLE in the drill, or a call fails after it.
# --quick: a smaller workload (the test suite's run, tests/deploy).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
build=${BUILD_DIR:-$root/build}
bench=$build/clients/prefix-bench
prefixctl=$build/clients/prefixctl
json=cluster_bench.json
quick=0
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    --json=*) json=${arg#--json=} ;;
    *) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
  esac
done
export CLUSTER_DIR=${CLUSTER_DIR:-$(mktemp -d /tmp/prefixd-cluster-bench.XXXXXX)}
export PREFIXD=${PREFIXD:-$build/service/prefixd}
work=$CLUSTER_DIR

# 12 system prompts of 512 tokens (6144 tokens); each replica's cache: 4096 tokens, of which
# running requests' own blocks take some: about half of the prompts fit in one replica.
groups=12
prompts=$((quick ? 6 : 16))
workload=(--num_groups=$groups --prompts_per_group=$prompts --system_prompt_len=512
  --question_len=32 --output_len=$((quick ? 8 : 32)) --concurrency=24 --noflush --noprogress)

stop_cluster() { deploy/cluster.sh stop >/dev/null 2>&1 || true; }
trap stop_cluster EXIT
deploy/cluster.sh start 3 --threads=1 --kv_cache_tokens=4096 --max_running_requests=16 \
  --shutdown_grace=5s >/dev/null

flush_all() {
  for i in 1 2 3; do "$prefixctl" --target=127.0.0.1:1806$i flush >/dev/null 2>&1 || true; done
}
replica_state() {  # $1: r1..r3 -> "UP"/"DOWN"... and in-flight streams
  curl -fsS --max-time 2 "http://127.0.0.1:8404/stats;csv" |
    awk -F, -v s="$1" '$1 == "be_grpc_affinity" && $2 == s { print $18, $5 }'
}

echo "cluster_bench: affinity (127.0.0.1:18050) vs round robin (:18049), 3 replicas"
flush_all
"$bench" --target=127.0.0.1:18050 "${workload[@]}" --json="$work/affinity.json" \
  >"$work/affinity.txt" 2>&1 || true
flush_all
"$bench" --target=127.0.0.1:18049 "${workload[@]}" --json="$work/roundrobin.json" \
  >"$work/roundrobin.txt" 2>&1 || true

# The drill: a longer run through the affinity port; replica 2 is killed while it serves.
echo "cluster_bench: failover drill (replica r2 killed mid-run)"
flush_all
"$bench" --target=127.0.0.1:18050 "${workload[@]}" --seed=2 --output_len=64 \
  --timeout_s=120 --json="$work/drill.json" >"$work/drill.txt" 2>&1 &
drill=$!
for _ in $(seq 1 600); do
  read -r _ inflight < <(replica_state r2) || true
  [[ "${inflight:-0}" -gt 0 ]] && break
  sleep 0.05
done
killed_at=$(date +%s.%N)
deploy/cluster.sh kill 2 >/dev/null
down_s=""
for _ in $(seq 1 200); do
  read -r state _ < <(replica_state r2) || true
  if [[ "$state" == DOWN* ]]; then
    down_s=$(awk -v a="$killed_at" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
    break
  fi
  sleep 0.05
done
wait "$drill" || true
# After the proxy took r2 out: everything is served by the other two.
"$bench" --target=127.0.0.1:18050 "${workload[@]}" --seed=3 --timeout_s=120 \
  --json="$work/after.json" >"$work/after.txt" 2>&1 || true

/usr/bin/python3 - "$work" "$json" "${down_s:-none}" "${inflight:-0}" <<'EOF'
import json, sys
work, out, down, inflight = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
def load(name):
    with open(f"{work}/{name}.json") as f:
        return json.load(f)
aff, rr, drill, after = (load(n) for n in ("affinity", "roundrobin", "drill", "after"))
def figures(run):
    r = run["results"]
    return {"hit_rate": r["achieved_hit_rate"], "ideal_hit_rate": r["ideal_hit_rate"],
            "output_tokens_per_s": r["output_token_throughput"], "failed": r["failed"],
            "errors": {code: e["count"] for code, e in r.get("errors", {}).items()}}
a, b = figures(aff), figures(rr)
report = {
    "workload": aff["config"],
    "affinity": a, "round_robin": b,
    "affinity_hit_rate_of_ideal": a["hit_rate"] / a["ideal_hit_rate"],
    "throughput_ratio": a["output_tokens_per_s"] / b["output_tokens_per_s"],
    "drill": {"killed_replica": "r2", "its_streams_in_flight": inflight, "seconds_until_out_of_ring": None if down == "none" else float(down),
              "run": figures(drill), "run_after": figures(after)},
}
with open(out, "w") as f:
    json.dump(report, f, indent=2)
print(f"{'':24}{'affinity':>12}{'round robin':>14}")
print(f"{'hit rate':24}{a['hit_rate']:>11.1%}{b['hit_rate']:>14.1%}   (ideal {a['ideal_hit_rate']:.1%})")
print(f"{'output tokens/s':24}{a['output_tokens_per_s']:>12.1f}{b['output_tokens_per_s']:>14.1f}")
print(f"affinity: {report['affinity_hit_rate_of_ideal']:.1%} of the ideal hit rate, "
      f"{report['throughput_ratio']:.2f}x round robin's output throughput")
d = report["drill"]
print(f"drill: r2 killed with {inflight} streams in flight; out of the ring after {d['seconds_until_out_of_ring']} s; "
      f"run: {d['run']['failed']} failed {d['run']['errors']}; "
      f"after: {d['run_after']['failed']} failed")
print(f"cluster_bench: wrote {out}")
ok = True
if report["affinity_hit_rate_of_ideal"] < 0.9:
    print("FAIL: affinity under 90 % of the ideal hit rate"); ok = False
if a["failed"] or b["failed"]:
    print("FAIL: calls failed with every replica up"); ok = False
if set(d["run"]["errors"]) - {"UNAVAILABLE"}:
    print(f"FAIL: the drill ended calls with {d['run']['errors']}"); ok = False
if d["run_after"]["failed"]:
    print("FAIL: calls failed after the proxy took the dead replica out"); ok = False
if d["seconds_until_out_of_ring"] is None:
    print("FAIL: the proxy never marked the killed replica down"); ok = False
sys.exit(0 if ok else 1)
EOF
