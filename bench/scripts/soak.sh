#!/usr/bin/env bash
# Soak: does the relay's memory grow with every group it forwards? One release banyan-relay, one
# banyan-bench publisher (30 fps × 20 KB, one group per second) and 100 subscribers for 10
# minutes; the relay's RSS (VmRSS in /proc/PID/status) is sampled every 15 s. Prints the samples,
# then the least-squares slope of RSS over the groups sent after the warm-up, in KiB per group,
# against the target (< 0.1 KiB per group): PASS or FAIL (exit status 1 on FAIL).
#
# Usage: bench/scripts/soak.sh [OUT_DIR]   (default target/soak)
# Environment (defaults in brackets):
#   BANYAN_SOAK_SECONDS [600]   measurement window (banyan-bench --duration), after the ramp-up
#   BANYAN_SOAK_SUBSCRIBERS [100]
#   BANYAN_SOAK_FPS [30]        objects per second
#   BANYAN_SOAK_GOP [30]        objects per group (GOP 30 at 30 fps: one group per second)
#   BANYAN_SOAK_SIZE [20KB]     object size
#   BANYAN_SOAK_INTERVAL [15]   seconds between RSS samples
#   BANYAN_SOAK_WARMUP [60]     seconds of the window left out of the slope
#   BANYAN_SOAK_TARGET [0.1]    KiB per group
#   BANYAN_BIN_DIR [${CARGO_TARGET_DIR:-target}/release]: prebuilt binaries (skips the build)
# The relay runs on core 0 and banyan-bench on core 1 when there are two or more (BANYAN_PIN=0: off).
# Needs python3 (the least-squares fit).
set -euo pipefail
cd "$(dirname "$0")/../.."
source bench/scripts/lib.sh
[[ ${1:-} == -h || ${1:-} == --help ]] && usage_of "$0"
command -v python3 >/dev/null || { echo "soak.sh needs python3" >&2; exit 2; }

out=${1:-target/soak}
seconds=${BANYAN_SOAK_SECONDS:-600}
subscribers=${BANYAN_SOAK_SUBSCRIBERS:-100}
fps=${BANYAN_SOAK_FPS:-30}
gop=${BANYAN_SOAK_GOP:-30}
size=${BANYAN_SOAK_SIZE:-20KB}
interval=${BANYAN_SOAK_INTERVAL:-15}
warmup=${BANYAN_SOAK_WARMUP:-60}
target=${BANYAN_SOAK_TARGET:-0.1}
ramp=5
mkdir -p "$out"

if [[ -n ${BANYAN_BIN_DIR:-} ]]; then
  bin=$BANYAN_BIN_DIR
else
  cargo build --release -p banyan-relay -p banyan-bench >&2
  bin=${CARGO_TARGET_DIR:-target}/release
fi
for b in banyan-relay banyan-bench; do
  [[ -x $bin/$b ]] || { echo "no $bin/$b (build it, or set BANYAN_BIN_DIR)" >&2; exit 2; }
done
trap stop_all EXIT
pinning >&2

"${pin_relay[@]}" "$bin/banyan-relay" --dev-cert --insecure-no-auth --listen '[::]:0' \
  --http-listen 127.0.0.1:0 --log warn >"$out/relay.out" 2>"$out/relay.err" &
relay_pid=$!
pids+=("$relay_pid")
wait_line "$out/relay.out" '^listening:'
hash=$(sed -n 's/^certificate sha256: //p' "$out/relay.out")
port=$(sed -n 's/^listening: udp .*:\([0-9]*\) http .*/\1/p' "$out/relay.out")
echo "== soak: relay pid $relay_pid port $port; 1 publisher ${fps} fps x $size, GOP $gop, $subscribers subscribers, ${seconds} s; load: $(uptime | sed 's/.*load average: //')" >&2

"${pin_bench[@]}" "$bin/banyan-bench" "moqt://127.0.0.1:$port/" --publishers 1 --subscribers "$subscribers" \
  --fps "$fps" --object-size "$size" --gop "$gop" --ramp-up "${ramp}s" --duration "${seconds}s" \
  --relay-pid "$relay_pid" --tls-hash "$hash" --json >"$out/bench.json" 2>"$out/bench.log" &
bench_pid=$!
pids+=("$bench_pid")

# Samples: seconds since the bench started, VmRSS in KiB; until the bench ends.
samples="$out/rss.tsv"
: >"$samples"
start=$(date +%s.%N)
while kill -0 "$bench_pid" 2>/dev/null; do
  rss=$(sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$relay_pid/status" 2>/dev/null || true)
  [[ -n $rss ]] || break
  now=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  printf '%s\t%s\n' "$now" "$rss" >>"$samples"
  printf '  t=%7ss  rss=%8s KiB\n' "$now" "$rss" >&2
  sleep "$interval"
done
status=0
wait "$bench_pid" || status=$?
[[ $status == 0 ]] || { echo "banyan-bench failed ($status): see $out/bench.log" >&2; exit 1; }
tail -n 12 "$out/bench.log" >&2

# The window starts after the ramp-up; the slope is fitted from the end of the warm-up to the
# end of the window (samples during the drain are left out).
python3 - "$samples" "$((ramp + warmup))" "$((ramp + seconds))" "$fps" "$gop" "$target" <<'EOF'
import sys
path, first, last, fps, gop, target = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
rows = [tuple(map(float, l.split())) for l in open(path) if l.strip()]
fit = [(t, r) for t, r in rows if first <= t <= last]
if len(fit) < 3:
    sys.exit(f"only {len(fit)} samples after the warm-up: run longer (BANYAN_SOAK_SECONDS) or sample more often")
n = len(fit)
mt = sum(t for t, _ in fit) / n
mr = sum(r for _, r in fit) / n
slope = sum((t - mt) * (r - mr) for t, r in fit) / sum((t - mt) ** 2 for t, _ in fit)  # KiB per second
groups_per_s = fps / gop
per_group = slope / groups_per_s
print(f"samples after warm-up: {n} ({fit[0][0]:.0f}-{fit[-1][0]:.0f} s), RSS {fit[0][1]:.0f} -> {fit[-1][1]:.0f} KiB")
print(f"slope: {slope:.3f} KiB/s = {per_group:.4f} KiB per group ({groups_per_s:g} groups/s); target < {target} KiB per group")
verdict = "PASS" if per_group < target else "FAIL"
print(verdict)
sys.exit(0 if verdict == "PASS" else 1)
EOF
