#!/usr/bin/env bash
# A laptop-sized prefixd cluster: N local replicas behind HAProxy with prefix affinity
# (deploy/haproxy.cfg, rendered for N).
#
#   deploy/cluster.sh start N [PREFIXD_FLAGS...]   start N replicas (1-9) and the proxy
#   deploy/cluster.sh status                       the proxy's view of each replica
#   deploy/cluster.sh kill I                       kill replica I at once (failover drill)
#   deploy/cluster.sh stop                         drain the replicas, stop the proxy
#
# Clients talk to the proxy: gRPC with prefix affinity on 127.0.0.1:18050, round robin on
# :18049, the OpenAI-compatible API on :8050, HAProxy's stats on :8404/stats. Replica i
# listens on gRPC 1806i, its side port 1808i (/metrics, /dashboard, /readyz), OpenAI 1800i,
# and publishes KV events on tcp://127.0.0.1:555(6+i) (topic kv@r<i>@<model>).
#
# Environment: CLUSTER_DIR (logs, pid files, the rendered config; default
# /tmp/prefixd-cluster), PREFIXD (the server binary; default build/service/prefixd),
# HASH_BALANCE_FACTOR (the affinity backends' bound on load; default: the config's).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
dir=${CLUSTER_DIR:-/tmp/prefixd-cluster}
prefixd=${PREFIXD:-$root/build/service/prefixd}
stats_url="http://127.0.0.1:8404/stats;csv"

usage() {
  sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

die() {
  echo "cluster: $*" >&2
  exit 1
}

# The proxy's stats rows of the affinity backend's servers: "name status".
servers_state() {
  curl -fsS --max-time 2 "$stats_url" 2>/dev/null |
    awk -F, '$1 == "be_grpc_affinity" && $2 ~ /^r[0-9]$/ { print $2, $18 }'
}

# Renders deploy/haproxy.cfg for n replicas: each "# servers:KIND" ... "# end" block gets
# one server line per replica.
render_config() {
  local n=$1
  awk -v n="$n" '
    /# servers:grpc/ || /# servers:openai/ {
      print
      kind = ($0 ~ /openai/) ? "openai" : "grpc"
      for (i = 1; i <= n; i++) {
        port = (kind == "grpc") ? 18060 + i : 18000 + i
        printf "    server r%d 127.0.0.1:%d port %d\n", i, port, 18080 + i
      }
      skip = 1
      next
    }
    skip && /# end/ { skip = 0 }
    !skip { print }
  ' deploy/haproxy.cfg >"$dir/haproxy.cfg"
  if [[ -n "${HASH_BALANCE_FACTOR:-}" ]]; then
    sed -i "s/hash-balance-factor [0-9]*/hash-balance-factor $HASH_BALANCE_FACTOR/" \
      "$dir/haproxy.cfg"
  fi
  cp deploy/grpc_50[234].http "$dir/"
}

start() {
  local n=${1:-}
  [[ "$n" =~ ^[1-9]$ ]] || die "start needs a replica count from 1 to 9 (got '${n}')"
  shift
  [[ -x "$prefixd" ]] || die "no server binary at $prefixd (build first: scripts/test.sh)"
  command -v haproxy >/dev/null || die "haproxy is not installed (scripts/setup.sh)"
  if [[ -f "$dir/haproxy.pid" ]] && kill -0 "$(cat "$dir/haproxy.pid")" 2>/dev/null; then
    die "a cluster is running already in $dir (deploy/cluster.sh stop)"
  fi
  mkdir -p "$dir"
  rm -f "$dir"/*.pid "$dir"/*.log
  render_config "$n"
  haproxy -q -c -f "$dir/haproxy.cfg" || die "the rendered config does not parse"

  for i in $(seq 1 "$n"); do
    "$prefixd" --listen="127.0.0.1:$((18060 + i))" --http_listen="127.0.0.1:$((18080 + i))" \
      --openai_listen="127.0.0.1:$((18000 + i))" \
      --kv_events_endpoint="tcp://127.0.0.1:$((5556 + i))" --kv_events_replica_id="r$i" \
      "$@" >"$dir/r$i.out" 2>"$dir/r$i.log" &
    echo $! >"$dir/r$i.pid"
  done
  for i in $(seq 1 "$n"); do
    local pid
    pid=$(cat "$dir/r$i.pid")
    for _ in $(seq 1 1200); do
      grep -q "^prefixd: listening on" "$dir/r$i.out" 2>/dev/null && break
      kill -0 "$pid" 2>/dev/null || {
        tail -5 "$dir/r$i.log" >&2
        stop >/dev/null 2>&1 || true
        die "replica r$i exited while starting (log: $dir/r$i.log)"
      }
      sleep 0.1
    done
    grep -q "^prefixd: listening on" "$dir/r$i.out" || die "replica r$i did not start in 2 min"
  done

  (cd "$dir" && exec haproxy -db -f haproxy.cfg >"$dir/haproxy.log" 2>&1) &
  echo $! >"$dir/haproxy.pid"
  # Ready when every replica passed its first health check.
  for _ in $(seq 1 300); do
    [[ $(servers_state | grep -c " UP$" || true) == "$n" ]] && break
    kill -0 "$(cat "$dir/haproxy.pid")" 2>/dev/null || {
      tail -5 "$dir/haproxy.log" >&2
      die "haproxy exited (log: $dir/haproxy.log)"
    }
    sleep 0.1
  done
  [[ $(servers_state | grep -c " UP$" || true) == "$n" ]] ||
    die "the proxy does not see every replica up: $(servers_state | tr '\n' ' ')"
  echo "cluster: $n replicas up behind HAProxy (logs in $dir)"
  echo "  gRPC, prefix affinity   127.0.0.1:18050"
  echo "  gRPC, round robin       127.0.0.1:18049"
  echo "  OpenAI-compatible API   http://127.0.0.1:8050/v1"
  echo "  HAProxy stats           http://127.0.0.1:8404/stats"
  for i in $(seq 1 "$n"); do
    echo "  r$i: gRPC 127.0.0.1:$((18060 + i)), dashboard http://127.0.0.1:$((18080 + i))/dashboard," \
      "KV events tcp://127.0.0.1:$((5556 + i))"
  done
}

status() {
  [[ -f "$dir/haproxy.pid" ]] || die "no cluster in $dir"
  curl -fsS --max-time 2 "$stats_url" |
    awk -F, '$1 == "be_grpc_affinity" || $1 == "be_grpc_rr" {
      printf "%-18s %-8s %-6s in flight %-4s served %s\n", $1, $2, $18, $5, $8 }'
}

kill_replica() {
  local i=${1:-}
  [[ -f "$dir/r$i.pid" ]] || die "no replica r$i in $dir"
  kill -KILL "$(cat "$dir/r$i.pid")" 2>/dev/null || true
  echo "cluster: killed r$i"
}

# Waits up to $2 tenths of a second for process $1 to exit.
wait_exit() {
  for _ in $(seq 1 "$2"); do
    kill -0 "$1" 2>/dev/null || return 0
    sleep 0.1
  done
  return 1
}

stop() {
  [[ -d "$dir" ]] || die "no cluster in $dir"
  local pids=()
  for f in "$dir"/r*.pid; do
    [[ -f "$f" ]] || continue
    local pid
    pid=$(cat "$f")
    # SIGTERM drains: /readyz turns 503, the proxy takes the replica out, running requests
    # get the grace period.
    kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
  done
  for pid in "${pids[@]}"; do wait_exit "$pid" 600 || kill -KILL "$pid" 2>/dev/null || true; done
  if [[ -f "$dir/haproxy.pid" ]]; then
    local pid
    pid=$(cat "$dir/haproxy.pid")
    kill -USR1 "$pid" 2>/dev/null || true
    wait_exit "$pid" 100 || kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$dir"/*.pid
  echo "cluster: stopped"
}

case "${1:-}" in
  start) shift; start "$@" ;;
  status) status ;;
  kill) kill_replica "${2:-}" ;;
  stop) stop ;;
  *) usage ;;
esac
