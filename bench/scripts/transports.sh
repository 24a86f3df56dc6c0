#!/usr/bin/env bash
# The price of TCP (issue 17): glass-to-glass latency over WebSocket (QMux over TCP) against raw
# QUIC and WebTransport (UDP), on a clean link and through a lossy one.
#
# The viewer's traffic, TCP or UDP, crosses one emulated link: banyan-netem joins two network
# namespaces with TUN devices and applies the same seeded impairment to every IP packet, so the
# kernel's own TCP meets the loss that QUIC meets. Per cell, fresh processes: banyan-netem, then
# in namespace B (10.77.0.2) one relay and a synthetic 2 Mbit/s broadcast (banyan-publish
# --synthetic: 30 fps, GOP 30) published into it over loopback, and in namespace A (10.77.0.1)
# banyan-watch across the link over the cell's transport. The publisher sits beside the relay on
# purpose: its link is the same for every transport, so only the viewer's transport differs
# between rows. Cells run one after another; each prints a progress line, and a Markdown table
# of all of them is printed at the end (method: docs/performance.md, "The price of TCP").
#
# Usage: bench/scripts/transports.sh [--link SPEC ...] [--transports LIST] [--seconds N]
#            [--seed N] [--tcp-cc NAME] [--out DIR]
#   --link SPEC     a link of your own, repeatable (replaces the default three): banyan-netem's
#                   `key=value,...` for both directions, e.g. 'delay=20ms,loss=1%' ('' is clean).
#                   Default: clean, 'delay=20ms,loss=1%', 'delay=20ms,loss=3%' (20 ms each way)
#   --transports    comma-separated, in order: quic (moqt://), webtransport (https://),
#                   websocket (ws://, the relay's --ws-listen); default all three
#   --seconds       each viewer's run (banyan-watch --duration), default 20
#   --seed          banyan-netem's seed (default 1): the same seed, the same draws
#   --tcp-cc        TCP congestion control in both namespaces, e.g. reno (default `system`: the
#                   machine's default, which a new namespace inherits; bbr on Banyan's machines,
#                   where cubic cannot be chosen inside a namespace); Banyan's QUIC runs CUBIC
#   --out           where logs, summaries and results.jsonl go (default target/transports)
# Needs root (network namespaces, TUN devices), /dev/net/tun, iproute2 and python3.
# Binaries: banyan-relay, banyan-publish, banyan-watch and banyan-netem from BANYAN_BIN_DIR, by
# default target/release, or target/debug when release has none (nothing is built here: e.g.
# `cargo build --release --locked --bin banyan-relay --bin banyan-publish --bin banyan-watch
# --bin banyan-netem`); BANYAN_NETEM names banyan-netem on its own.
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts=bench/scripts
source "$scripts/lib.sh"

transports=quic,webtransport,websocket seconds=20 seed=1 tcp_cc=system out=target/transports
links=() custom=0
while [ $# -gt 0 ]; do
  case $1 in
    --link) [ $custom = 0 ] && links=(); custom=1; links+=("$2"); shift 2 ;;
    --transports) transports=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --tcp-cc) tcp_cc=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) usage_of "$0" 0 ;;
    *) echo "transports.sh: unknown argument $1" >&2; usage_of "$0" 2 >&2 ;;
  esac
done
[ $custom = 1 ] || links=("" "delay=20ms,loss=1%" "delay=20ms,loss=3%")
IFS=, read -r -a kinds <<<"$transports"
for t in "${kinds[@]}"; do
  case $t in quic|webtransport|websocket) ;; *) echo "--transports: quic, webtransport, websocket" >&2; exit 2 ;; esac
done
[[ $seconds =~ ^[0-9]+$ ]] || { echo "--seconds: a whole number" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "transports.sh needs root (network namespaces and TUN devices)" >&2; exit 2; }

bin=${BANYAN_BIN_DIR:-}
if [ -z "$bin" ]; then
  bin=target/release
  [ -x "$bin/banyan-relay" ] || bin=target/debug
fi
netem=${BANYAN_NETEM:-$bin/banyan-netem}
for b in "$bin/banyan-relay" "$bin/banyan-publish" "$bin/banyan-watch" "$netem"; do
  [ -x "$b" ] || { echo "no $b (set BANYAN_BIN_DIR or BANYAN_NETEM, or build it)" >&2; exit 2; }
done
command -v python3 >/dev/null || { echo "python3 is needed to read the JSON summaries" >&2; exit 2; }

ns_a=bnm-a ns_b=bnm-b addr_b=10.77.0.2
# Fixed ports are safe: every cell has namespaces of its own.
quic_port=4443 ws_port=4480 http=127.0.0.1:9090
mkdir -p "$out"
results=$out/results.jsonl
: >"$results"

netem_pid=
stop_cell() {
  stop_all
  if [ -n "$netem_pid" ]; then
    kill -TERM "$netem_pid" 2>/dev/null || true
    wait "$netem_pid" 2>/dev/null || true
    netem_pid=
  fi
}
trap stop_cell EXIT
trap 'exit 130' INT TERM

# in_ns NS CMD...: runs CMD in namespace NS.
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# link SPEC: starts banyan-netem with SPEC both ways and sets the namespaces' TCP congestion control.
link() {
  local args=(--ns-a "$ns_a" --ns-b "$ns_b" --replace --seed "$seed")
  [ -n "$1" ] && args+=(--a2b "$1" --b2a "$1")
  "$netem" "${args[@]}" >"$dir/netem.out" 2>"$dir/netem.err" &
  netem_pid=$!
  wait_line "$dir/netem.err" '^banyan-netem: ready'
  if [ "$tcp_cc" != system ]; then
    for ns in "$ns_a" "$ns_b"; do
      in_ns "$ns" sh -c "echo $tcp_cc >/proc/sys/net/ipv4/tcp_congestion_control" 2>/dev/null || {
        echo "--tcp-cc $tcp_cc: cannot be set in a namespace here (available: $(in_ns "$ns" \
          cat /proc/sys/net/ipv4/tcp_available_congestion_control))" >&2; return 1; }
    done
  fi
  cc=$(in_ns "$ns_b" cat /proc/sys/net/ipv4/tcp_congestion_control)
}

# relay: starts a relay in namespace B (the WebSocket listener only for websocket cells, so the
# other cells run with binaries that predate it); sets hash.
relay() {
  local args=(--dev-cert --insecure-no-auth --listen "0.0.0.0:$quic_port" --http-listen "$http"
    --log warn --relay-id transports --drain-timeout 1s)
  [ "$transport" = websocket ] && args+=(--ws-listen "0.0.0.0:$ws_port")
  in_ns "$ns_b" "$bin/banyan-relay" "${args[@]}" >"$dir/relay.out" 2>"$dir/relay.err" &
  pids+=($!)
  wait_line "$dir/relay.out" '^listening: udp'
  hash=$(sed -n 's/^certificate sha256: //p' "$dir/relay.out")
}

# The per-cell result (one JSON line) and the final table, from the files a cell leaves behind.
report() {
  python3 - "$scripts" "$@" <<'PY'
import json, sys
sys.path.insert(0, sys.argv[1])
from summary import load, get, fmt, dist, stalls, skipped_in

def link_counts(err_file):
    # banyan-netem's last line: "banyan-netem: final a->b in N fwd N loss N ... | b->a in N ...".
    try:
        last = [l for l in open(err_file) if l.startswith("banyan-netem: final ")][-1]
        b_to_a = last.split("| b->a ")[1].split()
        kv = dict(zip(b_to_a[0::2], b_to_a[1::2]))
        return {"in": int(kv["in"]), "loss": int(kv["loss"]), "rate": int(kv["rate"])}
    except (OSError, IndexError, KeyError, ValueError):
        return None

def cell(link, transport, cc, summary_file, netem_err, metrics_file, watch_status):
    try:
        relay_skipped = skipped_in(open(metrics_file).read())
    except OSError:
        relay_skipped = None
    print(json.dumps({
        "link": link or "clean", "transport": transport, "tcp_cc": cc,
        "watch_exit": int(watch_status), "summary": load(summary_file),
        "relay_groups_skipped": relay_skipped, "relay_to_viewer": link_counts(netem_err),
    }))

def columns(rec):
    s = rec["summary"]
    link = rec["relay_to_viewer"]
    lost = "-" if link is None else f"{link['loss']:,} + {link['rate']:,} of {link['in']:,}"
    return [
        fmt(get(s, "objects")), dist(s, "latency_ms"), dist(s, "behind_live_ms"),
        fmt(get(s, "groups_skipped")), stalls(s), fmt(get(s, "stall_ms_total")),
        fmt(get(s, "longest_stall_ms")), fmt(get(s, "reconnects")),
        fmt(rec["relay_groups_skipped"]), lost,
    ]

def progress(rec_line):
    rec = json.loads(rec_line)
    if rec["summary"] is None:
        return f"   no summary (banyan-watch exit {rec['watch_exit']})"
    c = columns(rec)
    return (f"   objects {c[0]} latency p50/p99/max {c[1]} ms, behind live {c[2]} ms, skipped {c[3]}, "
            f"stalls {c[4]} ({c[5]} ms), relay skipped {c[8]}, relay->viewer packets lost + over cap {c[9]}")

def table(results_file, title):
    print(title)
    print()
    print("| link | transport | objects | latency p50/p99/max ms | behind live p50/p99/max ms "
          "| groups skipped (viewer) | stalls | stall ms | longest gap ms | reconnects "
          "| groups skipped (relay) | relay→viewer packets lost + over cap of sent |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for line in open(results_file):
        rec = json.loads(line)
        name = {"quic": "QUIC (moqt://)", "webtransport": "WebTransport (https://)",
                "websocket": "WebSocket (ws://)"}.get(rec["transport"], rec["transport"])
        if rec["summary"] is None:
            cols = [f"no summary (banyan-watch exit {rec['watch_exit']})"] + ["-"] * 9
        else:
            cols = columns(rec)
        print("| " + " | ".join([rec["link"], name] + cols) + " |")

cmd, args = sys.argv[2], sys.argv[3:]
{"cell": cell, "progress": lambda *a: print(progress(*a)), "table": table}[cmd](*args)
PY
}

n=$(( ${#links[@]} * ${#kinds[@]} )) i=0 cc=
echo "== transports: ${#links[@]} links x ${#kinds[@]} transports, ${seconds} s each, binaries $bin, netem $netem" >&2
for spec in "${links[@]}"; do
  for transport in "${kinds[@]}"; do
    i=$((i + 1))
    dir=$out/cell-$i
    rm -rf "$dir"; mkdir -p "$dir"
    echo "== [$i/$n] ${spec:-clean} over $transport" >&2
    link "$spec"
    relay
    in_ns "$ns_b" "$bin/banyan-publish" --synthetic --broadcast bench/transports --tls-hash "$hash" \
      "moqt://127.0.0.1:$quic_port" >"$dir/publish.out" 2>"$dir/publish.err" &
    pids+=($!)
    case $transport in
      quic) url="moqt://$addr_b:$quic_port" ;;
      webtransport) url="https://$addr_b:$quic_port/" ;;
      websocket) url="ws://$addr_b:$ws_port/" ;;
    esac
    # In the background, so that a signal to this script is handled (and everything stopped) at once.
    in_ns "$ns_a" timeout $((seconds + 60)) "$bin/banyan-watch" --broadcast bench/transports \
      --tls-hash "$hash" --duration "${seconds}s" --summary "$dir/summary.json" "$url" \
      >"$dir/watch.out" 2>"$dir/watch.err" &
    watch_pid=$!
    pids+=("$watch_pid")
    status=0
    wait "$watch_pid" || status=$?
    in_ns "$ns_b" curl -fsS "http://$http/metrics" >"$dir/metrics.txt" 2>/dev/null || true
    stop_cell
    record=$(report cell "$spec" "$transport" "$cc" "$dir/summary.json" "$dir/netem.err" \
      "$dir/metrics.txt" "$status")
    echo "$record" >>"$results"
    report progress "$record" >&2
  done
done

echo >&2
report table "$results" \
  "The price of TCP: viewer over each transport across banyan-netem, relay and publisher beside each other, TCP congestion control $cc, ${seconds} s per cell"
