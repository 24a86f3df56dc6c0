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

# Core pinning: with two or more cores (and taskset), the relay runs on core 0 and banyan-bench on
# core 1, so neither takes the other's CPU and the relay's CPU per Gbit/s is its own. BANYAN_PIN=0
# turns it off. Prefix commands with "${pin_relay[@]}" / "${pin_bench[@]}" (empty when off).
pin_relay=()
pin_bench=()
if [[ ${BANYAN_PIN:-1} != 0 ]] && (( $(nproc) >= 2 )) && command -v taskset >/dev/null; then
  pin_relay=(taskset -c 0)
  pin_bench=(taskset -c 1)
fi
pinning() { # a line for the log saying how processes are pinned
  if [[ ${#pin_relay[@]} -gt 0 ]]; then echo "pinned: relay on core 0, banyan-bench on core 1 (BANYAN_PIN=0 to turn off)"
  else echo "not pinned (BANYAN_PIN=0, one core, or no taskset)"; fi
}

# CPU quota: BANYAN_RELAY_CPU=P (percent of one core) runs the relay in a cgroup limited to P % of a
# core (cgroup v2 cpu.max or v1 cpu.cfs_quota_us, 10 ms periods so the throttling stays smooth),
# which saturates the relay at a load the load generator still handles with room to spare: an
# overload that is the relay's alone. Needs a writable /sys/fs/cgroup (root). limit_cpu PID moves
# PID in; the group is removed on exit.
cpu_group=""
limit_cpu() {
  [[ -n ${BANYAN_RELAY_CPU:-} ]] || return 0
  local quota=$(( BANYAN_RELAY_CPU * 100 ))
  if [[ -z $cpu_group ]]; then
    if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then
      cpu_group=/sys/fs/cgroup/banyan-bench-$$
      mkdir "$cpu_group" && echo "$quota 10000" >"$cpu_group/cpu.max"
    elif [[ -d /sys/fs/cgroup/cpu ]]; then
      cpu_group=/sys/fs/cgroup/cpu/banyan-bench-$$
      mkdir "$cpu_group" && echo 10000 >"$cpu_group/cpu.cfs_period_us" && echo "$quota" >"$cpu_group/cpu.cfs_quota_us"
    else
      echo "BANYAN_RELAY_CPU needs cgroups (no /sys/fs/cgroup/cpu or cgroup v2)" >&2; return 1
    fi
    trap 'rmdir "$cpu_group" 2>/dev/null || true' EXIT
    echo "relay limited to ${BANYAN_RELAY_CPU} % of a core ($cpu_group)" >&2
  fi
  echo "$1" >"$cpu_group/cgroup.procs"
}

# Profiling beside a run (BANYAN_FLAME=1; nothing otherwise): flame_start DELAY SECONDS OUT.svg
# -p PID|-C CPU TITLE runs bench/scripts/flamegraph.sh in the background after DELAY seconds,
# its report in OUT.log; flame_wait waits for it and prints that report.
flame_pid=""
flame_log=""
flame_start() {
  [[ ${BANYAN_FLAME:-0} != 0 ]] || return 0
  flame_log=${3%.svg}.log
  (sleep "$1"; bench/scripts/flamegraph.sh "$3" "$2" "$4" "$5" "$6") 2>"$flame_log" &
  flame_pid=$!
}
flame_wait() {
  [[ -n $flame_pid ]] || return 0
  wait "$flame_pid" || echo "no flame graph (see $flame_log)" >&2
  cat "$flame_log" >&2
  flame_pid=""
}
