#!/usr/bin/env bash
# Fan-out 1 → N against a fresh release banyan-relay per N; one JSON report per N in OUT.
# Usage: bench/scripts/fanout.sh [OUT_DIR] [N ...]   (defaults: target/fanout, 10 100 200 500)
# Extra bench flags via BENCH_FLAGS, e.g. BENCH_FLAGS="--transport webtransport".
# With two or more cores the relay is pinned to core 0 and the bench to core 1 (BANYAN_PIN=0: off).
set -euo pipefail
cd "$(dirname "$0")/../.."
source bench/scripts/lib.sh
out=${1:-target/fanout}; shift || true
counts=("${@:-10 100 200 500}"); counts=(${counts[@]})
mkdir -p "$out"
cargo build --release -p banyan-relay -p banyan-bench >&2
pinning >&2
for n in "${counts[@]}"; do
  relay_out="$out/relay-$n.out"
  "${pin_relay[@]}" target/release/banyan-relay --dev-cert --insecure-no-auth --listen '[::]:0' \
    --http-listen 127.0.0.1:0 --log warn >"$relay_out" 2>"$out/relay-$n.err" &
  relay_pid=$!
  for _ in $(seq 100); do grep -q '^listening:' "$relay_out" && break; sleep 0.1; done
  hash=$(sed -n 's/^certificate sha256: //p' "$relay_out")
  port=$(sed -n 's/^listening: udp .*:\([0-9]*\) http .*/\1/p' "$relay_out")
  echo "== 1 -> $n (relay pid $relay_pid, port $port)" >&2
  "${pin_bench[@]}" target/release/banyan-bench "moqt://127.0.0.1:$port/" --publishers 1 --subscribers "$n" \
    --fps 30 --object-size 20KB --gop 30 --ramp-up 3s --duration 10s \
    --relay-pid "$relay_pid" --tls-hash "$hash" --json ${BENCH_FLAGS:-} >"$out/fanout-$n.json" \
    2>"$out/fanout-$n.log" || echo "bench failed for N=$n (see $out/fanout-$n.log)" >&2
  tail -n 12 "$out/fanout-$n.log" >&2
  kill -TERM "$relay_pid"; wait "$relay_pid" || true
done
