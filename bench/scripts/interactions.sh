#!/usr/bin/env bash
# Interaction profiles over a loopback tree of four release banyan-relay processes:
#   origin <- mid <- {edge-a, edge-b}
# Viewers send likes/comments to edge-a; watchers read `likes` and `chat/0` on edge-b, so every
# like and comment crosses edge-a -> mid -> origin -> mid -> edge-b (3 hops up and down).
# Prints one summary per profile and keeps one JSON report per profile in OUT.
# Usage: bench/scripts/interactions.sh [OUT_DIR]   (default target/interactions)
# PROFILES="ingest latency egress" selects profiles; DURATION (default 10s) sets each window;
# LIKE_WINDOW (default 100ms) is every relay's --like-window.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-target/interactions}
mkdir -p "$out"
duration=${DURATION:-10s}
profiles=${PROFILES:-ingest latency egress}
like_window=${LIKE_WINDOW:-100ms}
cargo build --release -p banyan-relay -p banyan-bench >&2

pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# start NAME [UPSTREAM_PORT]: sets port_NAME, http_NAME, pid_NAME.
start() {
  local name=$1 upstream=${2:-}
  local args=(--dev-cert --insecure-no-auth --listen '[::]:0' --http-listen 127.0.0.1:0 --log warn
    --relay-id "$name" --drain-timeout 1s --like-window "$like_window" --like-rate 100000 --comment-rate 1000)
  [ -n "$upstream" ] && args+=(--upstream "moqt://localhost:$upstream" --upstream-insecure)
  target/release/banyan-relay "${args[@]}" >"$out/$name.out" 2>"$out/$name.err" &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 100); do grep -qs '^listening:' "$out/$name.out" && break; sleep 0.1; done
  printf -v "pid_${name//-/_}" %s "$pid"
  printf -v "port_${name//-/_}" %s "$(sed -n 's/^listening: udp .*:\([0-9]*\) http .*/\1/p' "$out/$name.out")"
  printf -v "http_${name//-/_}" %s "$(sed -n 's/^listening: udp .* http \(.*\)$/\1/p' "$out/$name.out")"
}
start origin
start mid "$port_origin"
start edge-a "$port_mid"
start edge-b "$port_mid"
echo "== tree (--like-window $like_window): origin :$port_origin <- mid :$port_mid <- edge-a :$port_edge_a (pid $pid_edge_a), edge-b :$port_edge_b (pid $pid_edge_b)" >&2

# run NAME BENCH_FLAGS...: one profile, a fresh broadcast each (its own like total).
run() {
  local name=$1; shift
  echo "== $name: $*" >&2
  target/release/banyan-bench interactions \
    --ingest "moqt://127.0.0.1:$port_edge_a/" --watch "moqt://127.0.0.1:$port_edge_b/" \
    --broadcast "bench/$name" --duration "$duration" --tls-insecure \
    --relay-pid "$pid_edge_a" --watch-relay-pid "$pid_edge_b" \
    --ingest-metrics "http://$http_edge_a/metrics" --watch-metrics "http://$http_edge_b/metrics" \
    --json "$@" >"$out/$name.json" 2>"$out/$name.log" || echo "bench failed for $name (see $out/$name.log)" >&2
  sed -n '/^interactions:/,$p' "$out/$name.log" >&2
}

for profile in $profiles; do
  case $profile in
    # (a) Likes ingested per second per core of edge-a: 200, 400 and 800 viewers x 50 likes/s
    #     (10,000, 20,000 and 40,000 likes/s, one datagram per like).
    ingest)
      run ingest-10k --viewers 200 --likes-per-s 50 --watchers 1
      run ingest-20k --viewers 400 --likes-per-s 50 --watchers 1
      run ingest-40k --viewers 800 --likes-per-s 50 --watchers 1 ;;
    # (b) Like-to-visible and comment latency across the tree: 100 viewers x 10 likes/s and
    #     0.5 comments/s each (1,000 likes/s, 50 comments/s), 10 watchers.
    latency)
      run latency --viewers 100 --likes-per-s 10 --comments-per-s 0.5 --watchers 10 ;;
    # (c) Edge-b egress into 1,000 watchers: 10 likes/s vs 100 likes/s (and 1,000) in total.
    egress)
      run egress-10 --viewers 10 --likes-per-s 1 --watchers 1000 --latency-watchers 20
      run egress-100 --viewers 10 --likes-per-s 10 --watchers 1000 --latency-watchers 20
      run egress-1000 --viewers 100 --likes-per-s 10 --watchers 1000 --latency-watchers 20 ;;
    *) echo "unknown profile $profile" >&2; exit 2 ;;
  esac
done
