#!/usr/bin/env bash
# Flash crowd (issue 19): VIEWERS viewers arrive evenly over ARRIVAL; each asks banyan-control
# where to watch (GET /v1/watch, as the web client does) and subscribes there. Control runs the
# process spawner, so relays of CAPACITY viewers are spawned as the crowd comes; an origin and
# one edge relay of the same capacity start with it; banyan-publish sends a 240 kbit/s synthetic
# stream (30 fps, one group per second) to the origin; the viewers are `banyan-bench flash` in
# their own process. Prints the bench's summary (viewers with media, time to first frame, the
# join stages, each relay's peak sessions against its capacity and when it appeared), the
# spawner's start-to-registered times, and PASS/FAIL against the targets: >= 99 % of viewers
# receive media, no relay ever over its capacity, time to first frame p95 <= 1.5 s. Exits 1 on
# FAIL.
#
# Usage: bench/scripts/flash.sh [OUT_DIR]        (default target/flash)
# Env:   VIEWERS (5000), ARRIVAL (10s), CAPACITY (500), MAX_SPAWNED (16), WATCH (5s),
#        BANYAN_BUILD=0 to skip `cargo build`, CARGO_TARGET_DIR as for cargo,
#        BANYAN_PIN=0 to run unpinned (default with two or more cores: control, the relays it
#        spawns, the origin and the publisher on core 0, banyan-bench on core 1),
#        BANYAN_FLAME=1 to profile core 0 (every server process) from 2 s to 8 s into the crowd:
#        OUT/flame-core0.svg and .folded (bench/scripts/flamegraph.sh: needs perf and inferno).
set -euo pipefail
cd "$(dirname "$0")/../.."
source bench/scripts/lib.sh
[[ ${1:-} == -h || ${1:-} == --help ]] && usage_of "$0"
out=${1:-target/flash}
viewers=${VIEWERS:-5000}
arrival=${ARRIVAL:-10s}
capacity=${CAPACITY:-500}
max_spawned=${MAX_SPAWNED:-16}
watch=${WATCH:-5s}
bin=${CARGO_TARGET_DIR:-target}/release
command -v jq >/dev/null || { echo "flash.sh needs jq (apt-get install jq)" >&2; exit 2; }
if [[ ${BANYAN_BUILD:-1} != 0 ]]; then
  # The workspace's usual flags, so dependency features unify as in every other build.
  cargo build --release --workspace --features banyan-control/kubernetes --locked >&2
fi
rm -rf "$out"; mkdir -p "$out/relays"
# Every viewer is a QUIC connection and an HTTP request: lift the descriptor limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
trap stop_all EXIT
pinning >&2

# Control with the process spawner. Heartbeats every 200 ms and a 100 ms tick let the fleet
# react within the 10 s crowd; spawn-lead 4 s spawns as soon as the join rate would fill the
# fleet in 4 s (a relay registers within about a second, see docs/performance.md).
"${pin_relay[@]}" "$bin/banyan-control" --listen 127.0.0.1:0 --log info \
  --spawner process --relay-binary "$bin/banyan-relay" --spawn-dir "$out/relays" \
  --spawn-region local --spawn-capacity-viewers "$capacity" \
  --spawn-relay-arg=--upstream-insecure --spawn-relay-arg=--log=warn \
  --heartbeat-interval 200ms --heartbeat-expiry 1s --assignment-grace 2s --tick 100ms \
  --join-rate-halflife 500ms --replicate-lead 2s --spawn-lead 4s --idle-cooldown 30s \
  --max-spawned "$max_spawned" --max-spawn-per-tick "$max_spawned" \
  --watch-rate 100000 --watch-burst 100000 \
  >"$out/control.out" 2>"$out/control.log" &
pids+=($!)
wait_line "$out/control.out" '^listening: http'
control=$(sed -n 's/^listening: http //p' "$out/control.out")

relay() { # relay ID: start a relay reporting to control; prints nothing, waits until it listens
  "${pin_relay[@]}" "$bin/banyan-relay" --listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --dev-cert \
    --insecure-no-auth --upstream-insecure --public-host 127.0.0.1 --region local --log warn \
    --relay-id "$1" --control "http://$control" --capacity-viewers "$capacity" \
    >"$out/$1.out" 2>"$out/$1.log" &
  pids+=($!)
  wait_line "$out/$1.out" '^listening: udp'
}
relay origin
relay edge
origin_port=$(sed -n 's/^listening: udp .*:\([0-9]*\) http .*/\1/p' "$out/origin.out")
origin_hash=$(sed -n 's/^certificate sha256: //p' "$out/origin.out")

"${pin_relay[@]}" "$bin/banyan-publish" "moqt://127.0.0.1:$origin_port/" --tls-hash "$origin_hash" \
  --broadcast bench/0 --synthetic --bitrate 240k --fps 30 --gop 30 \
  >"$out/publish.out" 2>"$out/publish.log" &
pids+=($!)
# Ready when control lists both relays and knows the broadcast's origin.
for _ in $(seq 100); do
  status=$(curl -fsS "http://$control/v1/status" || true)
  jq -e '(.relays | length) == 2 and any(.broadcasts[]; .broadcast == "bench/0" and .origin != null)' \
    <<<"$status" >/dev/null 2>&1 && break
  sleep 0.1
done
jq -e 'any(.broadcasts[]; .broadcast == "bench/0")' <<<"$status" >/dev/null \
  || { echo "control never learnt of bench/0 (see $out/*.log)" >&2; exit 1; }

echo "== flash crowd: $viewers viewers over $arrival, relays of $capacity (up to $max_spawned spawned), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
rc=0
flame_start 2 6 "$out/flame-core0.svg" -C 0 "core 0 in a flash crowd: $viewers viewers over $arrival, relays of $capacity"
"${pin_bench[@]}" "$bin/banyan-bench" flash "http://$control" --broadcast bench/0 \
  --viewers "$viewers" --arrival "$arrival" --watch "$watch" \
  --expect-media 99 --expect-ttff-p95 1.5s --json >"$out/flash.json" 2>"$out/flash.log" || rc=$?
grep -v '^ *[0-9.]*s  arrived' "$out/flash.log" >&2 || true
flame_wait
# The spawner's start-to-registered time: control's "spawned relay process" line against its
# "relay registered" line (the relay's first heartbeat), both from control's log.
echo "spawner: relay started -> registered (control log):" >&2
sed 's/\x1b\[[0-9;]*m//g' "$out/control.log" \
  | grep -E 'spawned relay process|relay registered relay=spawned' | cut -c12-27,60-110 >&2 || true
echo "CPU time used (server side; the bench's is in its log):" >&2
ps -o pid=,time=,args= -p "$(IFS=,; echo "${pids[*]}")" --ppid "${pids[0]}" 2>/dev/null \
  | awk '{printf "  %-8s %s %s %s\n", $1, $2, $3, ($4 ~ /relay-id|config/ ? $5 : "")}' >&2 || true
echo "load average after the run: $(cut -d' ' -f1-3 /proc/loadavg); results in $out/flash.json" >&2
if (( rc == 0 )); then echo PASS; else echo FAIL; fi
exit "$rc"
