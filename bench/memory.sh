#!/usr/bin/env bash
# Server memory per connection, side by side: idle connections and a header-only flood.
#
#   bench/memory.sh                       # 10,000 idle connections, 1,000 flooding ones
#   CONNS=5000 FLOOD_CONNS=500 bench/memory.sh
#
# For each implementation below, a fresh `loadgen serve --mode echo` server is started pinned to
# core 0 for each measurement, and loadgen (pinned to core 1) reads its /proc/PID/status:
#   * conns: CONNS idle connections spread over 8 source addresses 127.0.0.1-8, then every one
#     echoes one 64 B frame; RSS growth per connection idle and after the echo;
#   * flood: FLOOD_CONNS connections each send a header announcing 8 MiB and nothing more;
#     address-space (VmSize) and RSS growth per connection; then a fresh connection must echo.
# Writes $OUT.csv and $OUT.txt (tables via bench/report.py memory).

set -euo pipefail

# Implementations: `serve --impl` values.
IMPLS=(${IMPLS:-tokio-util codec framewire})
CONNS=${CONNS:-10000}
FLOOD_CONNS=${FLOOD_CONNS:-1000}
# Settling time before memory is read.
SETTLE=${SETTLE:-1s}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=${OUT:-bench/results/memory}
mkdir -p "$(dirname "$OUT")"
source bench/common.sh
LOAD_BEFORE=$(machine_line)

rm -f "$OUT.csv"
for impl in "${IMPLS[@]}"; do
    start_server "$impl" echo
    echo "conns server=$impl conns=$CONNS" >&2
    taskset -c "$CLIENT_CPU" "$LOADGEN" conns --addr "$ADDR" --conns "$CONNS" --pid "$SERVER_PID" \
        --client raw --duration "$SETTLE" --label "$impl" --csv "$OUT.csv" >/dev/null
    stop_server
    start_server "$impl" echo
    echo "flood server=$impl conns=$FLOOD_CONNS" >&2
    taskset -c "$CLIENT_CPU" "$LOADGEN" flood --addr "$ADDR" --conns "$FLOOD_CONNS" \
        --pid "$SERVER_PID" --client raw --duration "$SETTLE" --label "$impl" --csv "$OUT.csv" \
        >/dev/null
    stop_server
done

{
    echo "# framewire server memory run, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "# command: IMPLS=\"${IMPLS[*]}\" CONNS=$CONNS FLOOD_CONNS=$FLOOD_CONNS SETTLE=$SETTLE bench/memory.sh"
    echo "$LOAD_BEFORE"
    python3 bench/report.py memory "$OUT.csv"
} | tee "$OUT.txt"
echo "wrote $OUT.csv $OUT.txt" >&2
