#!/usr/bin/env bash
# The impairment matrix (issue 16): does live stay live on a bad viewer link?
#
# Per cell, fresh processes on loopback: one relay (or three: origin <- mid <- edge), a synthetic
# 2 Mbit/s broadcast (banyan-publish --synthetic: 30 fps, GOP 30) published into the origin, and
# banyan-watch on the edge behind banyan-impair (a userspace UDP proxy) with the cell's
# impairment. Cells run one after another; each prints a progress line, and a Markdown table of
# all of them is printed at the end (method: docs/performance.md, "Live on bad networks").
#
# Usage: bench/scripts/impairment.sh [--cells issue|full] [--cell 'BOTH[|S2C]' ...]
#            [--topology one|three] [--transport quic|webtransport] [--impair viewer|all]
#            [--seconds N] [--seed N] [--out DIR]
#   --cells issue  the five links of issue 16's table plus the two worst cells of the matrix (default)
#   --cells full   loss 0/1/3/10 % x one-way delay 20/50/100 ms x reordering off/on (2 % by 30 ms)
#                  x relay->viewer rate cap none/1.5/4 Mbit/s: 72 cells
#   --cell SPEC    a cell of your own, repeatable (replaces --cells): banyan-impair `key=value,...`
#                  for both directions, then optionally `|` and overrides for relay -> viewer only,
#                  e.g. --cell 'delay=50ms,loss=3%|rate=187500' (rates are bytes per second)
#   --topology     one relay (default), or three: origin <- mid <- edge (--upstream moqt://...)
#   --transport    the viewer's: raw QUIC moqt:// (default) or WebTransport https://
#   --impair       viewer (default): only the viewer's link is impaired; all: every relay->relay
#                  link too (three hops; the publisher's link to the origin stays clean)
#   --seconds      each viewer's run (banyan-watch --duration), default 15
#   --seed         banyan-impair's seed (default 1): the same seed, the same dropped datagrams
#   --out          where logs, summaries and results.jsonl go (default target/impairment)
# Binaries: built in release (cargo build --release --locked) unless BANYAN_BIN_DIR names a
# directory that already holds banyan-relay, banyan-publish, banyan-watch and banyan-impair.
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts=bench/scripts
source "$scripts/lib.sh"

cells=issue topology=one transport=quic impair_on=viewer seconds=15 seed=1 out=target/impairment
custom=()
while [ $# -gt 0 ]; do
  case $1 in
    --cells) cells=$2; shift 2 ;;
    --cell) custom+=("$2"); shift 2 ;;
    --topology) topology=$2; shift 2 ;;
    --transport) transport=$2; shift 2 ;;
    --impair) impair_on=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) usage_of "$0" 0 ;;
    *) echo "impairment.sh: unknown argument $1" >&2; usage_of "$0" 2 >&2 ;;
  esac
done
case $topology in one|three) ;; *) echo "--topology: one or three" >&2; exit 2 ;; esac
case $transport in quic|webtransport) ;; *) echo "--transport: quic or webtransport" >&2; exit 2 ;; esac
case $impair_on in viewer|all) ;; *) echo "--impair: viewer or all" >&2; exit 2 ;; esac
[ "$impair_on" = all ] && [ "$topology" = one ] && { echo "--impair all needs --topology three" >&2; exit 2; }
[[ $seconds =~ ^[0-9]+$ ]] || { echo "--seconds: a whole number" >&2; exit 2; }

# The cells: "LABEL|BOTH|S2C" (BOTH: impairments in both directions, S2C: relay -> viewer only).
list=()
cap_name() { case $1 in 187500) echo "1.5 Mbit/s" ;; 500000) echo "4 Mbit/s" ;; *) echo "$1 B/s" ;; esac; }
if [ ${#custom[@]} -gt 0 ]; then
  for spec in "${custom[@]}"; do
    both=${spec%%|*}; s2c=; [[ $spec == *'|'* ]] && s2c=${spec#*|}
    list+=("$both${s2c:+; relay→viewer $s2c}|$both|$s2c")
  done
elif [ "$cells" = issue ]; then
  list=(
    "20 ms, 1 % loss|delay=20ms,loss=1%|"
    "20 ms, 3 % loss, 1 MB/s cap|delay=20ms,loss=3%,rate=1000000|"
    "50 ms, 10 % loss|delay=50ms,loss=10%|"
    "100 ms, 10 % loss|delay=100ms,loss=10%|"
    "100 ms ± 10 ms, 3 % loss, 2 % reordered by 30 ms|delay=100ms,jitter=10ms,loss=3%,reorder=2%,reorder-delay=30ms|"
    "100 ms, 10 % loss, 2 % reordered by 30 ms, cap 1.5 Mbit/s|delay=100ms,loss=10%,reorder=2%,reorder-delay=30ms|rate=187500"
    "100 ms, 10 % loss, 2 % reordered by 30 ms, cap 4 Mbit/s|delay=100ms,loss=10%,reorder=2%,reorder-delay=30ms|rate=500000"
  )
elif [ "$cells" = full ]; then
  for delay in 20 50 100; do for loss in 0 1 3 10; do for reorder in off on; do for cap in none 187500 500000; do
    label="$delay ms, $loss % loss" both="delay=${delay}ms,loss=$loss%" s2c=
    [ $reorder = on ] && { label+=", 2 % reordered by 30 ms"; both+=",reorder=2%,reorder-delay=30ms"; }
    [ $cap != none ] && { label+=", cap $(cap_name $cap)"; s2c="rate=$cap"; }
    list+=("$label|$both|$s2c")
  done; done; done; done
else
  echo "--cells: issue or full (or give --cell SPEC)" >&2; exit 2
fi

if [ -n "${BANYAN_BIN_DIR:-}" ]; then
  bin=$BANYAN_BIN_DIR
else
  cargo build --release --locked --bin banyan-relay --bin banyan-publish --bin banyan-watch \
    --bin banyan-impair >&2
  bin=target/release
fi
for b in relay publish watch impair; do
  [ -x "$bin/banyan-$b" ] || { echo "no $bin/banyan-$b" >&2; exit 2; }
done
command -v python3 >/dev/null || { echo "python3 is needed to read the JSON summaries" >&2; exit 2; }

mkdir -p "$out"
results=$out/results.jsonl
: >"$results"

trap stop_all EXIT
trap 'exit 130' INT TERM

# relay NAME [UPSTREAM_ADDR]: starts a relay; sets port_NAME, http_NAME, hash_NAME.
relay() {
  local name=$1 upstream=${2:-} args=(--dev-cert --insecure-no-auth --listen 127.0.0.1:0
    --http-listen 127.0.0.1:0 --log warn --relay-id "$1" --drain-timeout 1s)
  [ -n "$upstream" ] && args+=(--upstream "moqt://$upstream" --upstream-insecure)
  "$bin/banyan-relay" "${args[@]}" >"$dir/$name.out" 2>"$dir/$name.err" &
  pids+=($!)
  wait_line "$dir/$name.out" '^listening:'
  printf -v "port_$name" %s "$(sed -n 's/^listening: udp .*:\([0-9]*\) http .*/\1/p' "$dir/$name.out")"
  printf -v "http_$name" %s "$(sed -n 's/^listening: udp .* http \(.*\)$/\1/p' "$dir/$name.out")"
  printf -v "hash_$name" %s "$(sed -n 's/^certificate sha256: //p' "$dir/$name.out")"
}

# impair NAME UPSTREAM_ADDR SEED BOTH S2C: starts a proxy in front of UPSTREAM_ADDR; sets addr_NAME.
impair() {
  local name=$1 args=(--listen 127.0.0.1:0 --upstream "$2" --seed "$3")
  [ -n "$4" ] && args+=(--c2s "$4")
  [ -n "$4$5" ] && args+=(--s2c "$4${4:+${5:+,}}$5")
  "$bin/banyan-impair" "${args[@]}" >"$dir/$name.out" 2>"$dir/$name.err" &
  pids+=($!)
  wait_line "$dir/$name.err" '^banyan-impair: '
  printf -v "addr_$name" %s "$(sed -n 's/^banyan-impair: \([^ ]*\) -> .*/\1/p' "$dir/$name.err")"
}

# The per-cell result (one JSON line) and the final table, from the files a cell leaves behind.
report() {
  python3 - "$scripts" "$@" <<'PY'
import json, sys
sys.path.insert(0, sys.argv[1])
from summary import load, get, fmt, dist, stalls, skipped_total

def link_drops(err_file):
    # The proxy's last counters line: "clients N | c2s in .. loss L rate R .. | s2c in .. loss L rate R ..".
    last = None
    try:
        for line in open(err_file):
            if line.startswith("clients "):
                last = line
    except OSError:
        return None
    if last is None:
        return None
    try:
        s2c = last.split("| s2c ")[1].split()
        kv = dict(zip(s2c[0::2], s2c[1::2]))
        return {"in": int(kv["in"]), "loss": int(kv["loss"]), "rate": int(kv["rate"])}
    except (IndexError, KeyError, ValueError):
        return None

def cell(label, summary_file, impair_err, watch_status, *https):
    summary = load(summary_file)
    relays = [skipped_total(h) for h in https]
    rec = {
        "cell": label,
        "watch_exit": int(watch_status),
        "summary": summary,
        "relay_groups_skipped": relays,
        "viewer_link_s2c": link_drops(impair_err),
    }
    print(json.dumps(rec))

def relays_total(rec):
    relays = [r for r in rec["relay_groups_skipped"] if r is not None]
    return fmt(sum(relays)) if relays else "-"

def row(rec):
    s = rec["summary"]
    if s is None:
        return f"| {rec['cell']} | no summary (banyan-watch exit {rec['watch_exit']}) |" + " |" * 9
    link = rec["viewer_link_s2c"]
    drops = "-" if link is None else f"{link['loss']:,} + {link['rate']:,} of {link['in']:,}"
    return "| " + " | ".join([
        rec["cell"], fmt(get(s, "objects")), fmt(get(s, "gaps")), fmt(get(s, "groups_skipped")),
        fmt(get(s, "incomplete_groups")), dist(s, "latency_ms"), dist(s, "behind_live_ms"), stalls(s),
        fmt(get(s, "longest_stall_ms")), relays_total(rec), drops,
    ]) + " |"

def progress(rec_line):
    rec = json.loads(rec_line)
    s = rec["summary"]
    if s is None:
        return f"   no summary (banyan-watch exit {rec['watch_exit']})"
    return ("   objects {} gaps {} skipped {} latency p50/p99/max {} ms, behind live p50/p99/max {} ms, "
            "relays skipped {}").format(
        fmt(get(s, "objects")), fmt(get(s, "gaps")), fmt(get(s, "groups_skipped")),
        dist(s, "latency_ms"), dist(s, "behind_live_ms"), relays_total(rec))

def table(results_file, title):
    print(title)
    print()
    print("| cell | objects | gaps | groups skipped (viewer) | incomplete groups | latency p50/p99/max ms "
          "| behind live p50/p99/max ms | stalls | longest stall ms | groups skipped (relays) "
          "| relay→viewer datagrams lost + over cap of sent |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for line in open(results_file):
        print(row(json.loads(line)))

cmd, args = sys.argv[2], sys.argv[3:]
if cmd == "cell":
    cell(*args)
elif cmd == "progress":
    print(progress(args[0]))
elif cmd == "table":
    table(*args)
PY
}

n=${#list[@]} i=0
echo "== impairment matrix: $n cells, topology $topology, viewer over $transport, impairment on $impair_on link(s), ${seconds} s each, binaries $bin" >&2
for entry in "${list[@]}"; do
  i=$((i + 1))
  label=${entry%%|*} rest=${entry#*|}
  both=${rest%%|*} s2c=${rest#*|}
  dir=$out/cell-$i
  rm -rf "$dir"; mkdir -p "$dir"
  echo "== [$i/$n] $label  (banyan-impair, both directions: ${both:-none}; relay->viewer also: ${s2c:-nothing})" >&2

  relay origin
  edge=origin https=("$http_origin")
  if [ "$topology" = three ]; then
    hop_both= hop_s2c=
    [ "$impair_on" = all ] && { hop_both=$both hop_s2c=$s2c; }
    if [ "$impair_on" = all ]; then
      impair hop1 "127.0.0.1:$port_origin" $((seed + 1)) "$hop_both" "$hop_s2c"; relay mid "$addr_hop1"
      impair hop2 "127.0.0.1:$port_mid" $((seed + 2)) "$hop_both" "$hop_s2c"; relay edge "$addr_hop2"
    else
      relay mid "127.0.0.1:$port_origin"
      relay edge "127.0.0.1:$port_mid"
    fi
    edge=edge https=("$http_origin" "$http_mid" "$http_edge")
  fi
  edge_port=port_$edge edge_hash=hash_$edge

  "$bin/banyan-publish" --synthetic --broadcast bench/impair --tls-hash "$hash_origin" \
    "moqt://127.0.0.1:$port_origin" >"$dir/publish.out" 2>"$dir/publish.err" &
  pids+=($!)
  impair viewer "127.0.0.1:${!edge_port}" "$seed" "$both" "$s2c"
  case $transport in
    quic) url="moqt://$addr_viewer" ;;
    webtransport) url="https://$addr_viewer/" ;;
  esac
  # In the background, so that a signal to this script is handled (and everything stopped) at once.
  timeout $((seconds + 60)) "$bin/banyan-watch" --broadcast bench/impair --tls-hash "${!edge_hash}" \
    --duration "${seconds}s" --summary "$dir/summary.json" "$url" \
    >"$dir/watch.out" 2>"$dir/watch.err" &
  watch_pid=$!
  pids+=("$watch_pid")
  status=0
  wait "$watch_pid" || status=$?
  record=$(report cell "$label" "$dir/summary.json" "$dir/viewer.err" "$status" "${https[@]}")
  echo "$record" >>"$results"
  report progress "$record" >&2
  stop_all
done

echo >&2
report table "$results" \
  "Impairment matrix: topology $topology, viewer over $transport, impairment on $impair_on link(s), ${seconds} s per cell"
