#!/usr/bin/env bash
# Side-by-side throughput of every framing implementation, in one run, on this machine.
#
#   bench/compare.sh                      # ~2 minutes with the defaults
#   DURATION=3s bench/compare.sh          # longer cells, steadier figures
#   OUT=bench/results/mine bench/compare.sh
#
# For each implementation below, a `loadgen serve` server is started pinned to core 0 and the
# `loadgen` client runs pinned to core 1 (taskset), so each side has one core to itself:
#   * one-way stream, one connection, client and sink server of the same implementation
#     ("both ends"), for 16 B, 64 B, 1 KiB and 64 KiB payloads;
#   * pipelined echo, 64 connections x 16 frames in flight, 64 B payloads (PIPE_SIZES), each echo server
#     driven once by its own client (SERVER_ONLY servers: the baseline client) and once by the
#     raw client (so the server is what is measured);
#   * ack mode vs plain mode: one-way stream, 64 B (ACK_SIZE), the framewire client and server
#     in ack mode (`framewire-ack`, client and server with the same --window) for each window
#     in ACK_WINDOWS, against framewire plain mode at both ends in the same run (the stream cell
#     above, or its own run if IMPLS or SIZES leave it out). ACK_WINDOWS="" skips the section.
#     The window holds the sender back (a batch does not wait for its acks, as plain mode's
#     does not wait for the server), the run ends once every frame is acknowledged, and
#     batches shrink to fit the time left, so even window 1 (stop-and-wait) ends with DURATION.
# Besides frames/s, every cell records the CPU seconds client and server used (/proc/PID/stat), so
# report.py also gives frames per CPU-second, a figure that other load on the machine disturbs less.
# Writes $OUT.csv (one loadgen CSV row per cell), $OUT.txt (machine, command, table of ratios)
# and $OUT.svg (frames/s against frame size, log scales) via bench/report.py.

set -euo pipefail

# Implementations: each name is both a `serve --impl` and a `--client` value.
IMPLS=(${IMPLS:-raw tokio-util codec framewire})
# Servers without a loadgen client of their own yet: measured in the pipelined echo only, driven
# by the baseline client and by the raw client. Move `framewire` to IMPLS once
# `loadgen --client framewire` exists.
SERVER_ONLY=(${SERVER_ONLY:-})
# The two references every ratio is computed against.
BASELINE=tokio-util
PHYSICAL=raw

SIZES=(${SIZES:-16 64 1024 65536})
DURATION=${DURATION:-1s}
PIPE_CONNS=${PIPE_CONNS:-64}
PIPE_DEPTH=${PIPE_DEPTH:-16}
# Payload sizes of the pipelined echo (one table row set per size); PIPE_SIZES="" skips it.
PIPE_SIZES=(${PIPE_SIZES-${PIPE_SIZE-64}})
# STREAM=0 skips the one-way stream section (e.g. to measure only the pipelined echo).
STREAM=${STREAM:-1}
# Every cell runs ROUNDS times, rounds interleaved; report.py takes the median.
ROUNDS=${ROUNDS:-5}
# Ack-mode windows (each both the client's and the server's --window), frame size, and the two
# implementations compared.
ACK_WINDOWS=(${ACK_WINDOWS-1 64 4096})
# Ack-mode client variants, each run at the default window (4096) as a row of its own: loadgen
# flags without their dashes. By default the client hands each batch over with `feed_all` and a
# 'static payload; "feed-each" calls `feed` per message, "shared-payload" passes a counted
# `Bytes` (two atomic operations per message). ACK_VARIANTS="" (the default) runs none.
ACK_VARIANTS=(${ACK_VARIANTS-})
ACK_SIZE=${ACK_SIZE:-64}
PLAIN=framewire
ACK=framewire-ack

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=${OUT:-bench/results/compare}
mkdir -p "$(dirname "$OUT")"
source bench/common.sh
LOAD_BEFORE=$(machine_line)

# client ARGS...: one pinned loadgen run appending a CSV row.
client() {
    taskset -c "$CLIENT_CPU" "$LOADGEN" "$@" --duration "$DURATION" --pid "$SERVER_PID" --quiet \
        --csv "$OUT.csv" >/dev/null
}

rm -f "$OUT.csv"
for round in $(seq "$ROUNDS"); do
    echo "round $round of $ROUNDS" >&2
    for impl in "${IMPLS[@]}"; do
        ((STREAM)) || break
        start_server "$impl" sink
        for size in "${SIZES[@]}"; do
            echo "stream   server=$impl client=$impl size=$size" >&2
            client stream --addr "$ADDR" --client "$impl" --size "$size" --label "$impl"
        done
        stop_server
    done
    for impl in "${IMPLS[@]}" "${SERVER_ONLY[@]}"; do
        start_server "$impl" echo
        if [[ " ${IMPLS[*]} " == *" $impl "* ]]; then clients=("$impl"); else clients=("$BASELINE"); fi
        if [[ "$impl" != "$PHYSICAL" ]]; then clients+=("$PHYSICAL"); fi
        for cl in "${clients[@]}"; do
            for size in "${PIPE_SIZES[@]}"; do
                echo "pipeline server=$impl client=$cl ${PIPE_CONNS}x${PIPE_DEPTH} size=$size" >&2
                client pipeline --addr "$ADDR" --client "$cl" --size "$size" \
                    --conns "$PIPE_CONNS" --depth "$PIPE_DEPTH" --label "$impl"
            done
        done
        stop_server
    done
    if ((${#ACK_WINDOWS[@]})); then
        # Plain mode at both ends, unless the stream section above measured it this round.
        if [[ " ${IMPLS[*]} " != *" $PLAIN "* || " ${SIZES[*]} " != *" $ACK_SIZE "* ]]; then
            start_server "$PLAIN" sink
            echo "stream   server=$PLAIN client=$PLAIN size=$ACK_SIZE (plain mode)" >&2
            client stream --addr "$ADDR" --client "$PLAIN" --size "$ACK_SIZE" --label "$PLAIN"
            stop_server
        fi
        for window in "${ACK_WINDOWS[@]}"; do
            start_server "$ACK" sink --window "$window"
            echo "stream   server=$ACK client=$ACK size=$ACK_SIZE window=$window" >&2
            client stream --addr "$ADDR" --client "$ACK" --window "$window" --size "$ACK_SIZE" \
                --label "$ACK"
            stop_server
        done
        for variant in "${ACK_VARIANTS[@]}"; do
            start_server "$ACK" sink --window 4096
            echo "stream   server=$ACK client=$ACK size=$ACK_SIZE window=4096 --$variant" >&2
            client stream --addr "$ADDR" --client "$ACK" --window 4096 --size "$ACK_SIZE" \
                --"$variant" --label "$ACK $variant"
            stop_server
        done
    fi
done

{
    echo "# framewire side-by-side run, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "# command: IMPLS=\"${IMPLS[*]}\" PIPE_SIZES=\"${PIPE_SIZES[*]}\" STREAM=$STREAM SERVER_ONLY=\"${SERVER_ONLY[*]}\" ACK_WINDOWS=\"${ACK_WINDOWS[*]}\" ACK_VARIANTS=\"${ACK_VARIANTS[*]}\" DURATION=$DURATION ROUNDS=$ROUNDS bench/compare.sh (median of $ROUNDS rounds per cell)"
    echo "$LOAD_BEFORE"
    python3 bench/report.py table "$OUT.csv" --baseline "$BASELINE" --physical "$PHYSICAL" \
        --plain "$PLAIN" --ack "$ACK"
} | tee "$OUT.txt"
if ((STREAM)); then
    python3 bench/report.py svg "$OUT.csv" "$OUT.svg" --title "One-way stream, one connection, $(nproc) cores, server and client pinned to separate cores"
fi
echo "wrote $OUT.csv $OUT.txt$( ((STREAM)) && echo " $OUT.svg")" >&2
