#!/usr/bin/env bash
# A CPU flame graph of a process or a core for a few seconds: `perf record -e cpu-clock` (a
# software clock, so it works on VMs without hardware counters) with DWARF call graphs (release
# builds have no frame pointers; build with CARGO_PROFILE_RELEASE_DEBUG=line-tables-only for
# function names and inlined frames), folded and drawn with inferno. Writes OUT.svg and the
# folded stacks beside it (OUT.folded: one line per stack with its sample count, to grep or
# diff), and prints the hottest functions (self time). Frames narrower than 1.5 px are left out of
# the SVG (about 0.1 % of the time), which keeps it near 100 KB; the folded file has them all.
#
# Usage: bench/scripts/flamegraph.sh OUT.svg SECONDS -p PID [TITLE]
#        bench/scripts/flamegraph.sh OUT.svg SECONDS -C CPU [TITLE]   (every process on that core)
# Needs: perf (apt-get install linux-perf) and inferno (cargo install inferno: inferno-collapse-perf,
# inferno-flamegraph on PATH). Env: FLAME_HZ (sampling rate, default 499).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
case ${1:-} in -h|--help) usage_of "$0" ;; esac
[[ $# -ge 4 ]] || usage_of "$0" 2 >&2
svg=$1 seconds=$2 flag=$3 target=$4 title=${5:-}
case "$flag" in -p|-C) ;; *) echo "flamegraph.sh: expected -p PID or -C CPU, got '$flag'" >&2; exit 2 ;; esac
for tool in perf inferno-collapse-perf inferno-flamegraph; do
  command -v "$tool" >/dev/null || { echo "flamegraph.sh needs $tool on PATH (perf: apt-get install linux-perf; inferno: cargo install inferno)" >&2; exit 2; }
done
base=${svg%.svg}
data=$(mktemp --suffix=.perf.data)
trap 'rm -f "$data"' EXIT
echo "profiling $flag $target for ${seconds}s at ${FLAME_HZ:-499} Hz" >&2
perf record -q -e cpu-clock -F "${FLAME_HZ:-499}" --call-graph dwarf,16384 "$flag" "$target" -o "$data" \
  -- sleep "$seconds" 2>/dev/null
perf script -i "$data" 2>/dev/null | inferno-collapse-perf --all >"$base.folded"
inferno-flamegraph --minwidth 1.5 --title "${title:-$flag $target, ${seconds}s}" --subtitle "perf record -e cpu-clock -F ${FLAME_HZ:-499} --call-graph dwarf; inferno" \
  <"$base.folded" >"$svg"
# perf's cpu-clock samples carry their period, so a stack's weight is CPU nanoseconds.
samples=$(awk '{s += $NF} END {printf "%.0f", s}' "$base.folded")
echo "flame graph: $svg (weight $samples; folded stacks in $base.folded)" >&2
echo "hottest functions (self time, % of all sampled):" >&2
awk -v total="$samples" '{n = $NF; sub(/ [0-9]+$/, ""); k = split($0, f, ";"); self[f[k]] += n}
  END {for (fn in self) printf "%6.2f %%  %s\n", 100 * self[fn] / total, fn}' "$base.folded" \
  | sort -rn | head -n "${FLAME_TOP:-15}" >&2
