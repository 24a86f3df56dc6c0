#!/usr/bin/env bash
# Fan-out 1 → N against banyan-relay and cloudflare's moq-relay-ietf with the same banyan-bench
# profile, interleaved run by run (banyan N, ietf N, banyan next N, …) so machine noise hits both.
# A fresh relay per run; one JSON report per relay and N in OUT, plus `uptime` before each run.
#
# Needs: `cargo build --release -p banyan-relay -p banyan-bench` and `scripts/install-peers --bench`
# (a fully optimised moq-relay-ietf in target/peers/bench/bin), openssl for moq-relay-ietf's certificate.
# Usage: bench/scripts/compare.sh [OUT_DIR] [N ...]   (defaults: target/compare, 10 100 500)
# The relay under test runs on core 0 and banyan-bench on core 1 when there are two or more
# (BANYAN_PIN=0: off; banyan-relay's runs go through fanout.sh, which pins the same way).
set -euo pipefail
cd "$(dirname "$0")/../.."
source bench/scripts/lib.sh
pinning >&2
out=${1:-target/compare}; shift || true
counts=("${@:-10 100 500}"); counts=(${counts[@]})
ietf=${MOQ_RELAY_IETF:-target/peers/bench/bin/moq-relay-ietf}
mkdir -p "$out"

# moq-relay-ietf has no self-signed mode for QUIC: it needs --tls-cert/--tls-key. A short-lived
# P-256 certificate for localhost/127.0.0.1, pinned by the bench through its SHA-256 (as banyan's).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 10 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
  -keyout "$out/ietf.key" -out "$out/ietf.pem" 2>/dev/null
ietf_hash=$(openssl x509 -in "$out/ietf.pem" -outform der | sha256sum | cut -d' ' -f1)

free_udp_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.bind(("::",0)); print(s.getsockname()[1])'; }

bench() { # name n port pid hash: the profile of bench/scripts/fanout.sh
  echo "== $1 1 -> $2 (pid $4, port $3) load: $(uptime | sed 's/.*load average: //')" >&2
  uptime >"$out/$1-$2.uptime"
  "${pin_bench[@]}" target/release/banyan-bench "moqt://127.0.0.1:$3/" --publishers 1 --subscribers "$2" \
    --fps 30 --object-size 20KB --gop 30 --ramp-up 3s --duration 10s \
    --relay-pid "$4" --tls-hash "$5" --json >"$out/$1-$2.json" 2>"$out/$1-$2.log" \
    || echo "bench failed for $1 N=$2 (see $out/$1-$2.log)" >&2
  tail -n 8 "$out/$1-$2.log" >&2
}

for n in "${counts[@]}"; do
  # banyan-relay through fanout.sh (the same profile and relay flags as its published series).
  echo "== banyan 1 -> $n load: $(uptime | sed 's/.*load average: //')" >&2
  uptime >"$out/banyan-$n.uptime"
  bench/scripts/fanout.sh "$out/banyan" "$n"
  cp "$out/banyan/fanout-$n.json" "$out/banyan-$n.json"

  port=$(free_udp_port)
  RUST_LOG=warn "${pin_relay[@]}" "$ietf" --bind "[::]:$port" --tls-cert "$out/ietf.pem" --tls-key "$out/ietf.key" \
    >"$out/ietf-$n.out" 2>"$out/ietf-$n.err" &
  pid=$!
  for _ in $(seq 100); do ss -Hlun "sport = :$port" | grep -q . && break; sleep 0.1; done
  bench ietf "$n" "$port" "$pid" "$ietf_hash"
  kill -TERM "$pid"; wait "$pid" || true
done
