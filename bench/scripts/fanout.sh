#!/usr/bin/env bash
# Fan-out 1 → N against a fresh release banyan-relay per N; one JSON report per N in OUT, the
# relay's /metrics at the end of each run in OUT/metrics-N.txt, and a series table at the end
# (N, delivered Gbit/s, objects delivered / expected, groups delivered, latency p50/p99, the
# relay's groups_skipped by reason, relay and bench CPU): overload shows as an object ratio
# below 1, a latency that grows, or groups skipped.
# Usage: bench/scripts/fanout.sh [OUT_DIR] [N ...]   (defaults: target/fanout, 10 100 200 500)
# Extra bench flags via BENCH_FLAGS, e.g. BENCH_FLAGS="--transport webtransport"; extra relay
# flags via RELAY_FLAGS, e.g. RELAY_FLAGS="--latency-budget off".
# Binaries come from ${CARGO_TARGET_DIR:-target}/release; BANYAN_BUILD=0 uses them as they are
# instead of building them first.
# The stream: FANOUT_FPS (30), FANOUT_SIZE (20KB), FANOUT_GOP (30 objects per group), e.g.
# FANOUT_FPS=60 FANOUT_SIZE=4KB FANOUT_GOP=60 for small objects.
# With two or more cores the relay is pinned to core 0 and the bench to core 1 (BANYAN_PIN=0: off).
# BANYAN_RELAY_CPU=P also limits the relay to P % of its core (see lib.sh), to overload the relay
# without overloading the bench.
# BANYAN_FLAME=1 also profiles the relay for 6 s of each measuring window: OUT/flame-N.svg and
# OUT/flame-N.folded (bench/scripts/flamegraph.sh: needs perf and inferno).
set -euo pipefail
cd "$(dirname "$0")/../.."
source bench/scripts/lib.sh
out=${1:-target/fanout}; shift || true
counts=("${@:-10 100 200 500}"); counts=(${counts[@]})
release=${CARGO_TARGET_DIR:-target}/release
mkdir -p "$out"
if [[ ${BANYAN_BUILD:-1} != 0 ]]; then cargo build --release -p banyan-relay -p banyan-bench >&2; fi
pinning >&2
for n in "${counts[@]}"; do
  relay_out="$out/relay-$n.out"
  "${pin_relay[@]}" "$release/banyan-relay" --dev-cert --insecure-no-auth --listen '[::]:0' \
    --http-listen 127.0.0.1:0 --log warn ${RELAY_FLAGS:-} >"$relay_out" 2>"$out/relay-$n.err" &
  relay_pid=$!
  limit_cpu "$relay_pid"
  wait_line "$relay_out" '^listening: udp'
  hash=$(sed -n 's/^certificate sha256: //p' "$relay_out")
  port=$(sed -n 's/^listening: udp .*:\([0-9]*\) http .*/\1/p' "$relay_out")
  http=$(sed -n 's/^listening: udp .* http \(.*\)$/\1/p' "$relay_out")
  echo "== 1 -> $n (relay pid $relay_pid, port $port) load: $(uptime | sed 's/.*load average: //')" >&2
  # 6 s inside the window (3 s ramp-up, then 10 s measured).
  flame_start 6 6 "$out/flame-$n.svg" -p "$relay_pid" "banyan-relay, 1 -> $n, ${FANOUT_FPS:-30} fps x ${FANOUT_SIZE:-20KB}"
  "${pin_bench[@]}" "$release/banyan-bench" "moqt://127.0.0.1:$port/" --publishers 1 --subscribers "$n" \
    --fps "${FANOUT_FPS:-30}" --object-size "${FANOUT_SIZE:-20KB}" --gop "${FANOUT_GOP:-30}" --ramp-up 3s --duration 10s \
    --relay-pid "$relay_pid" --tls-hash "$hash" --json ${BENCH_FLAGS:-} >"$out/fanout-$n.json" \
    2>"$out/fanout-$n.log" || echo "bench failed for N=$n (see $out/fanout-$n.log)" >&2
  tail -n 12 "$out/fanout-$n.log" >&2
  flame_wait
  curl -fsS "http://$http/metrics" >"$out/metrics-$n.txt" 2>/dev/null || echo "no /metrics from the relay for N=$n" >&2
  kill -TERM "$relay_pid"; wait "$relay_pid" || true
done
PYTHONPATH=bench/scripts python3 - "$out" "${counts[@]}" <<'PY' >&2
import sys
from summary import load, get, fmt

def skipped_by_reason(path):
    # "lag 3, late 120" from banyan_relay_groups_skipped_total{reason="..."} samples.
    try:
        text = open(path).read()
    except OSError:
        return "-"
    parts = []
    for line in text.splitlines():
        if line.startswith("banyan_relay_groups_skipped_total{"):
            reason = line.split('reason="', 1)[1].split('"', 1)[0]
            parts.append(f"{reason} {int(float(line.rsplit(' ', 1)[1]))}")
    return ", ".join(parts) or "-"

out, counts = sys.argv[1], sys.argv[2:]
print("| N | Gbit/s | objects/s delivered / expected | groups delivered | latency p50 / p99 ms | groups skipped (relay) | relay / bench CPU % |")
print("|---|---|---|---|---|---|---|")
for n in counts:
    r = load(f"{out}/fanout-{n}.json")
    if r is None:
        print(f"| {n} | no report (see {out}/fanout-{n}.log) | | | | | |")
        continue
    d = r["delivered"]
    print(
        f"| {n} | {fmt(get(d, 'gbit_per_s'), 3)} "
        f"| {fmt(get(d, 'objects_per_s'))} / {fmt(get(d, 'expected_objects_per_s'))} ({fmt(get(d, 'object_delivery_ratio'), 4)}) "
        f"| {fmt(get(r, 'groups', 'delivery_ratio'), 4)} "
        f"| {fmt(get(r, 'latency_ms', 'p50'), 1)} / {fmt(get(r, 'latency_ms', 'p99'), 1)} "
        f"| {skipped_by_reason(f'{out}/metrics-{n}.txt')} "
        f"| {fmt(get(r, 'relay', 'cpu_percent'))} / {fmt(get(r, 'bench', 'cpu_percent'))} |"
    )
PY
