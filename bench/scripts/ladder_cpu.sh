#!/usr/bin/env bash
# Encoder CPU of `banyan-publish --ladder` (issue 20): for each ladder, one run of DURATION seconds
# (default 20) of a 1280x720 30 fps lavfi test pattern (no audio) published to a loopback
# banyan-relay, measured with /usr/bin/time over banyan-publish, which includes its ffmpeg child
# (reaped by it). Prints CPU seconds (user + sys), % of one core, peak RSS of the larger of the
# two processes, and the publisher's last progress line. core_% is CPU seconds per second of media
# (the wall time also holds start-up and the 2 s linger at the end).
# SOURCE overrides the lavfi graph (e.g. "testsrc2=size=1280x720:rate=30:duration=20,noise=alls=12:allf=t"
# for content that is harder to encode).
# Usage: bench/scripts/ladder_cpu.sh [OUT_DIR]   (default target/ladder-cpu)
# LADDERS="720p,360p 720p 360p" (the default) selects the ladders; each word is one --ladder value.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-target/ladder-cpu}
mkdir -p "$out"
duration=${DURATION:-20}
ladders=${LADDERS:-720p,360p 720p 360p}
source_graph=${SOURCE:-testsrc=size=1280x720:rate=30:duration=$duration}
cargo build -p banyan-relay -p banyan-publisher >&2
source bench/scripts/lib.sh
trap stop_all EXIT

target/debug/banyan-relay --dev-cert --insecure-no-auth --listen '127.0.0.1:0' --http-listen 127.0.0.1:0 \
  --log warn >"$out/relay.out" 2>"$out/relay.err" &
pids+=($!)
wait_line "$out/relay.out" '^listening:'
port=$(sed -n 's/^listening: udp .*:\([0-9]*\) http .*/\1/p' "$out/relay.out")
hash=$(grep -ho 'sha256: [0-9a-f]*' "$out/relay.out" "$out/relay.err" | head -1 | cut -d' ' -f2)
echo "source $source_graph; relay :$port, $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2

printf '%-12s %8s %8s %8s %10s\n' ladder cpu_s wall_s core_% max_rss_mb
for ladder in $ladders; do
  log="$out/publish-${ladder//,/_}.err"
  /usr/bin/time -o "$out/time" -f '%U %S %e %M' \
    target/debug/banyan-publish "moqt://localhost:$port" --broadcast "bench/ladder" --tls-hash "$hash" \
    --ladder "$ladder" --input-format lavfi --input "$source_graph" \
    2>"$log"
  read -r user sys wall rss <"$out/time"
  awk -v l="$ladder" -v u="$user" -v s="$sys" -v w="$wall" -v r="$rss" -v d="$duration" \
    'BEGIN { printf "%-12s %8.1f %8.1f %8.0f %10.0f\n", l, u + s, w, 100 * (u + s) / d, r / 1024 }'
  grep '^publish: video' "$log" | tail -1 | sed 's/^/    /'
done
