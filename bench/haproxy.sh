#!/usr/bin/env bash
# framewire behind a load balancer, side by side in one run:
#   1. connection setup rate (connect + one 64 B echo + close, 8 at a time, raw sockets):
#      direct, with a PROXY v2 header (server trusting the client's address), and through
#      HAProxy (send-proxy-v2);
#   2. pipelined echo (16 connections x 16 frames in flight, 64 B, tokio-util client):
#      through HAProxy vs direct.
# Each figure is reported as a ratio to the direct run of the same round (median of the
# per-round ratios, with the range).
#
#   flock /work/bench.lock bench/haproxy.sh          # ~1.5 minutes with the defaults
#   ROUNDS=5 DURATION=5s bench/haproxy.sh
#
# Servers are `lb_backend` processes (framewire_server, byte-for-byte echo), pinned to core 0;
# HAProxy (nbthread 1) is pinned to core 0 too, and the client (`loadgen`) to core 1. On a
# 2-core box HAProxy and the server share a core, so the HAProxy figures include that
# contention: they say what one extra hop costs on the same hardware, not HAProxy's best.
# Writes $OUT.csv (loadgen rows) and $OUT.txt (the table).

set -euo pipefail

DURATION=${DURATION:-3s}
ROUNDS=${ROUNDS:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=${OUT:-bench/results/haproxy}
mkdir -p "$(dirname "$OUT")"
command -v haproxy >/dev/null || { echo "haproxy is not installed (apt-get install -y haproxy)" >&2; exit 1; }
source bench/common.sh
cargo build --release -q -p framewire-examples --bin lb_backend
BACKEND=$TARGET_DIR/release/lb_backend
LOAD_BEFORE=$(machine_line)

PIDS=()
cleanup_all() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    cleanup
}
trap cleanup_all EXIT

# backend VAR ARGS...: starts lb_backend pinned to the server core; sets VAR to its address.
# Not called as $(backend ...): in a command substitution PIDS+=() is lost in the subshell, the
# EXIT trap does not kill the backends, and they keep running, holding the caller's flock on
# /work/bench.lock (they inherit its file descriptor) until someone kills them.
backend() {
    local var=$1
    shift
    local log="$LOGDIR/backend-${#PIDS[@]}.txt"
    taskset -c "$SERVER_CPU" "$BACKEND" --addr 127.0.0.1:0 "$@" >"$log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do
        local addr
        addr=$(sed -n 's/^listening on //p' "$log")
        if [[ -n "$addr" ]]; then printf -v "$var" '%s' "$addr"; return 0; fi
        sleep 0.05
    done
    echo "lb_backend did not start:" >&2; cat "$log" >&2; exit 1
}

backend DIRECT
# loadgen may connect from any 127.0.0.x source: trust them all as "balancers".
backend TRUSTING --trust 127.0.0.0/8
LB_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
LB=127.0.0.1:$LB_PORT
cat >"$LOGDIR/haproxy.cfg" <<EOF
global
    maxconn 4000
    nbthread 1
defaults
    mode tcp
    timeout connect 2s
    timeout client 30s
    timeout server 30s
frontend fw
    bind $LB
    default_backend servers
backend servers
EOF
# Eight server lines for the one backend, each connecting from its own 127.0.0.x source: one
# source/destination pair gives HAProxy's connections to the backend about 14,000 new
# connections/s on loopback (closed connections' ports come back after net.ipv4.
# tcp_tw_reuse_delay, 1 s), which capped the through-HAProxy setup rate in a run with one line.
for k in $(seq 8); do
    echo "    server s$k $TRUSTING source 127.0.0.$((k + 1)) send-proxy-v2 check inter 1s"
done >>"$LOGDIR/haproxy.cfg"
taskset -c "$SERVER_CPU" haproxy -db -f "$LOGDIR/haproxy.cfg" >"$LOGDIR/haproxy.txt" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$LB_PORT") 2>/dev/null && break
    sleep 0.05
done
sleep 1 # first health check

run() { # LABEL loadgen-args...
    taskset -c "$CLIENT_CPU" "$LOADGEN" "${@:2}" --duration "$DURATION" --quiet \
        --label "$1" --csv "$OUT.csv" >/dev/null
}

# Setup connections are spread over 64 client addresses 127.0.0.1-64 (`--sources 64`). Each
# closed connection's TIME_WAIT holds its client port for 60 s (up to 131,072 of them,
# net.ipv4.tcp_max_tw_buckets); with loadgen's default of 8 addresses one round's tens of
# thousands of connections filled their port ranges and from the second round on every bind
# searched for a free port: the 2026-12-05 12:51 run fell from 27,009 conn/s (round 1) to
# 120-135 (rounds 2-5), p50 63 ms. With `--sources 0` (connect() picks the port and reuses
# TIME_WAIT ports after 1 s) the rate sat at ~14,400 conn/s, the port budget of one address.
SETUP_SOURCES=${SETUP_SOURCES:---sources 64}
rm -f "$OUT.csv"
for round in $(seq "$ROUNDS"); do
    echo "round $round/$ROUNDS" >&2
    run "setup/direct" setup --addr "$DIRECT" $SETUP_SOURCES
    run "setup/proxy-v2" setup --addr "$TRUSTING" --proxy-v2 $SETUP_SOURCES
    run "setup/haproxy" setup --addr "$LB" $SETUP_SOURCES
    run "pipeline/direct" pipeline --addr "$DIRECT" --conns 16 --depth 16
    run "pipeline/haproxy" pipeline --addr "$LB" --conns 16 --depth 16
done

{
    echo "# framewire behind HAProxy, $(date -u '+%Y-%m-%d %H:%M UTC'); $(haproxy -v 2>&1 | sed -n 1p)"
    echo "# command: ROUNDS=$ROUNDS DURATION=$DURATION SETUP_SOURCES=\"$SETUP_SOURCES\" bench/haproxy.sh"
    echo "$LOAD_BEFORE"
    echo "# load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)"
    python3 - "$OUT.csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1], newline="")))
def med(v):
    v = sorted(v); n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2
runs = {}
for r in rows:
    runs.setdefault(r["label"], []).append((float(r["frames_per_s"]), float(r["p50_us"]), float(r["p99_us"])))
print("# per second: connections (setup) or echoed frames (pipeline); median of rounds [min-max];")
print("# ratio: to the direct run of the same round (median of per-round ratios [min-max])")
print(f"{'run':<18} {'per s':>9} {'range':>19} {'p50 us':>8} {'p99 us':>8} {'ratio':>7} {'ratio range':>13}")
for label, v in runs.items():
    kind = label.split("/")[0]
    base = runs.get(f"{kind}/direct")
    rate = [x[0] for x in v]
    ratio = rrange = ""
    if base and len(base) == len(v):
        rs = [a[0] / b[0] for a, b in zip(v, base)]
        ratio, rrange = f"{med(rs):.2f}x", f"{min(rs):.2f}-{max(rs):.2f}"
    print(f"{label:<18} {med(rate):>9.0f} {min(rate):>9.0f}-{max(rate):<9.0f} "
          f"{med([x[1] for x in v]):>8.0f} {med([x[2] for x in v]):>8.0f} {ratio:>7} {rrange:>13}")
PY
} | tee "$OUT.txt"
echo "wrote $OUT.csv $OUT.txt" >&2
