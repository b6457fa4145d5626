#!/usr/bin/env bash
# Side-by-side throughput of every framing implementation, in one run, on this machine.
#
#   bench/compare.sh                      # ~1 minute with the defaults
#   DURATION=3s bench/compare.sh          # longer cells, steadier figures
#   OUT=bench/results/mine bench/compare.sh
#
# For each implementation below, a `loadgen serve` server is started pinned to core 0 and the
# `loadgen` client runs pinned to core 1 (taskset), so each side has one core to itself:
#   * one-way stream, one connection, client and sink server of the same implementation
#     ("both ends"), for 16 B, 64 B, 1 KiB and 64 KiB payloads;
#   * pipelined echo, 64 connections x 16 frames in flight, 64 B payloads, each echo server
#     driven once by its own client and once by the raw client (so the server is what is measured).
# Writes $OUT.csv (one loadgen CSV row per cell), $OUT.txt (machine, command, table of ratios)
# and $OUT.svg (frames/s against frame size, log scales) via bench/report.py.

set -euo pipefail

# Implementations: each name is both a `serve --impl` and a `--client` value. Add `framewire`
# here once the framewire server and client adapters exist in loadgen.
IMPLS=(${IMPLS:-raw tokio-util codec})
# The two references every ratio is computed against.
BASELINE=tokio-util
PHYSICAL=raw

SIZES=(${SIZES:-16 64 1024 65536})
DURATION=${DURATION:-2s}
PIPE_CONNS=${PIPE_CONNS:-64}
PIPE_DEPTH=${PIPE_DEPTH:-16}
PIPE_SIZE=${PIPE_SIZE:-64}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=${OUT:-bench/results/compare}
mkdir -p "$(dirname "$OUT")"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
LOADGEN=$TARGET_DIR/release/examples/loadgen

cargo build --release -q -p framewire-examples --example loadgen

SERVER_PID=
LOGDIR=$(mktemp -d)
cleanup() {
    if [[ -n "$SERVER_PID" ]]; then kill "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$LOGDIR"
}
trap cleanup EXIT

# start_server IMPL MODE: starts a pinned server on a free port; sets SERVER_PID and ADDR.
start_server() {
    local log="$LOGDIR/server-$1-$2.txt"
    taskset -c "$SERVER_CPU" "$LOADGEN" serve --impl "$1" --mode "$2" --addr 127.0.0.1:0 \
        --lifetime 600s >"$log" 2>&1 &
    SERVER_PID=$!
    ADDR=
    for _ in $(seq 100); do
        ADDR=$(sed -n 's/.* addr=\([^ ]*\) .*/\1/p' "$log")
        [[ -n "$ADDR" ]] && return 0
        sleep 0.05
    done
    echo "server $1 $2 did not start:" >&2
    cat "$log" >&2
    exit 1
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}

# client ARGS...: one pinned loadgen run appending a CSV row.
client() {
    taskset -c "$CLIENT_CPU" "$LOADGEN" "$@" --duration "$DURATION" --quiet --csv "$OUT.csv" \
        >/dev/null
}

rm -f "$OUT.csv"
for impl in "${IMPLS[@]}"; do
    start_server "$impl" sink
    for size in "${SIZES[@]}"; do
        echo "stream   server=$impl client=$impl size=$size" >&2
        client stream --addr "$ADDR" --client "$impl" --size "$size" --label "$impl"
    done
    stop_server
done
for impl in "${IMPLS[@]}"; do
    start_server "$impl" echo
    clients=("$impl")
    if [[ "$impl" != "$PHYSICAL" ]]; then clients+=("$PHYSICAL"); fi
    for cl in "${clients[@]}"; do
        echo "pipeline server=$impl client=$cl ${PIPE_CONNS}x${PIPE_DEPTH} size=$PIPE_SIZE" >&2
        client pipeline --addr "$ADDR" --client "$cl" --size "$PIPE_SIZE" \
            --conns "$PIPE_CONNS" --depth "$PIPE_DEPTH" --label "$impl"
    done
    stop_server
done

{
    echo "# framewire side-by-side run, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "# command: IMPLS=\"${IMPLS[*]}\" DURATION=$DURATION bench/compare.sh"
    echo "# machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores," \
        "$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr);" \
        "server pinned to core $SERVER_CPU, client to core $CLIENT_CPU (taskset)"
    echo "# rustc: $(rustc --version)"
    python3 bench/report.py table "$OUT.csv" --baseline "$BASELINE" --physical "$PHYSICAL"
} | tee "$OUT.txt"
python3 bench/report.py svg "$OUT.csv" "$OUT.svg" --title "One-way stream, one connection, $(nproc) cores, server and client pinned to separate cores"
echo "wrote $OUT.csv $OUT.txt $OUT.svg" >&2
