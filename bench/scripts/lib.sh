# Shell helpers for the bench/scripts benchmarks (sourced, not run): starting processes in the
# background, waiting for their readiness lines, stopping them all on exit.
# Expects `set -euo pipefail` in the caller.

# Every process started in the background, to stop at the end of a cell or on exit.
pids=()

# stop_all: SIGTERM to every started process, then wait for each.
stop_all() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}

# wait_line FILE PATTERN: until a started process has printed PATTERN (10 s at most).
wait_line() {
  for _ in $(seq 100); do grep -qs "$2" "$1" && return 0; sleep 0.1; done
  echo "timed out waiting for '$2' in $1" >&2; return 1
}

# usage_of SCRIPT [STATUS]: prints the script's header comment (from line 2 to `set -euo`) and exits.
usage_of() {
  sed -n '2,/^set -euo/p' "$1" | sed '$d; s/^# \{0,1\}//'; exit "${2:-0}"
}
