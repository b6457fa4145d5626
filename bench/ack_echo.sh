#!/usr/bin/env bash
# Ack mode against plain mode on the echo workloads of issue 12, side by side, rounds interleaved:
# ping-pong at window 1 and the pipelined echo (64 connections x 16 in flight) at the default
# window, 64 B messages. Each round runs plain then ack mode for each workload, with fresh
# `loadgen serve` servers pinned to core 0 and the loadgen client pinned to core 1; the ratio of
# each round is ack/plain of the same round, and the median of the rounds is reported.
#
#   bench/ack_echo.sh                     # 5 rounds of 1 s per cell, about a minute
#   ROUNDS=3 DURATION=2s bench/ack_echo.sh
#
# (The one-way stream's ack/plain ratio is in bench/compare.sh, section "ack mode vs plain mode".)
set -euo pipefail
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-1s}
SIZE=${SIZE:-64}
PIPE_WINDOW=${PIPE_WINDOW:-4096}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
source bench/common.sh
machine_line
echo "# command: ROUNDS=$ROUNDS DURATION=$DURATION SIZE=$SIZE PIPE_WINDOW=$PIPE_WINDOW bench/ack_echo.sh"

# cell MODE IMPL WINDOW...: one pinned run; prints its frames/s.
cell() {
    local mode=$1 impl=$2
    local window=() extra=()
    [[ $impl == framewire-ack ]] && window=(--window "$3")
    [[ $mode == pipeline ]] && extra=(--conns 64 --depth 16)
    start_server "$impl" echo "${window[@]}"
    taskset -c "$CLIENT_CPU" "$LOADGEN" "$mode" --addr "$ADDR" --client "$impl" "${window[@]}" \
        --size "$SIZE" "${extra[@]}" --duration "$DURATION" --json "$LOGDIR/cell.json" --quiet \
        >/dev/null
    stop_server
    python3 -c "import json,sys; print(round(json.load(open(sys.argv[1]))['frames_per_s']))" \
        "$LOGDIR/cell.json"
}

results=()
for round in $(seq "$ROUNDS"); do
    for mode in ping pipeline; do
        window=1
        [[ $mode == pipeline ]] && window=$PIPE_WINDOW
        plain=$(cell "$mode" framewire "$window")
        ack=$(cell "$mode" framewire-ack "$window")
        echo "round $round  $mode  window $window  plain $plain/s  ack $ack/s" >&2
        results+=("$mode $plain $ack")
    done
done
printf '%s\n' "${results[@]}" | python3 -c '
import statistics, sys
rows = {}
for line in sys.stdin:
    mode, plain, ack = line.split()
    rows.setdefault(mode, []).append((int(plain), int(ack)))
print("workload   plain/s (median)  ack/s (median)  ack/plain per round        median")
for mode, rs in rows.items():
    ratios = [a / p for p, a in rs]
    per_round = " ".join("%.2f" % r for r in ratios)
    plain = statistics.median(p for p, _ in rs)
    ack = statistics.median(a for _, a in rs)
    print("%-9s  %16s  %14s  %-25s  %.2fx" % (mode, f"{plain:,.0f}", f"{ack:,.0f}", per_round,
                                             statistics.median(ratios)))
'
