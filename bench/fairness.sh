#!/usr/bin/env bash
# Fairness under a zero-length flood, side by side in one run: a well-behaved client pings
# 100 B frames every 5 ms while 4 other connections pipeline zero-length frames as fast as the
# server takes them; its round-trip p99 on each echo server, and the ratio to tokio-util's.
#
#   bench/fairness.sh                     # ~1 minute with the defaults
#   ROUNDS=5 DURATION=5s bench/fairness.sh
#   OUT=bench/results/mine bench/fairness.sh
#
# Servers are `loadgen serve --impl IMPL --mode echo` pinned to core 0 (one core, so a
# current-thread runtime: every connection competes for the same thread). The flood
# (`loadgen zeros --conns 4`) runs at nice 19 and the pinging client (`loadgen ping --interval
# 5ms --size 100`) at normal priority, both pinned to core 1: the flood threads take what CPU
# the pinging client leaves, so its latency is the server's doing, not a fight for core 1.
# Each round also pings each server without a flood (the idle figure). Writes $OUT.csv
# (loadgen rows) and $OUT.txt (the table).

set -euo pipefail

IMPLS=(${IMPLS:-tokio-util framewire})
BASELINE=tokio-util
# Whole seconds (the flood runs 2 s longer).
DURATION=${DURATION:-3s}
ROUNDS=${ROUNDS:-3}
FLOOD=${FLOOD:-4}
INTERVAL=${INTERVAL:-5ms}
SIZE=${SIZE:-100}
# The flood's --duration: the ping's plus the head start and a margin.
FLOOD_DURATION=$(( ${DURATION%s} + 2 ))s

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=${OUT:-bench/results/fairness}
mkdir -p "$(dirname "$OUT")"
source bench/common.sh
LOAD_BEFORE=$(machine_line)

rm -f "$OUT.csv"
for round in $(seq "$ROUNDS"); do
    for impl in "${IMPLS[@]}"; do
        start_server "$impl" echo
        for flood in 0 "$FLOOD"; do
            echo "round $round/$ROUNDS server=$impl flood=$flood" >&2
            FLOOD_PID=
            if ((flood)); then
                # Runs for the ping's duration plus a second of head start.
                nice -n 19 taskset -c "$CLIENT_CPU" "$LOADGEN" zeros --addr "$ADDR" \
                    --conns "$flood" --duration "$FLOOD_DURATION" --quiet >/dev/null &
                FLOOD_PID=$!
                sleep 1
            fi
            taskset -c "$CLIENT_CPU" "$LOADGEN" ping --addr "$ADDR" --client raw --size "$SIZE" \
                --interval "$INTERVAL" --duration "$DURATION" --pid "$SERVER_PID" \
                --quiet --label "$impl@flood=$flood" --csv "$OUT.csv" >/dev/null
            if [[ -n "$FLOOD_PID" ]]; then wait "$FLOOD_PID"; fi
        done
        stop_server
    done
done

{
    echo "# framewire fairness run, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "# command: IMPLS=\"${IMPLS[*]}\" ROUNDS=$ROUNDS DURATION=$DURATION FLOOD=$FLOOD INTERVAL=$INTERVAL SIZE=$SIZE bench/fairness.sh"
    echo "$LOAD_BEFORE"
    python3 - "$OUT.csv" "$BASELINE" "$FLOOD" <<'PY'
import csv, sys
path, baseline, flood = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = list(csv.DictReader(open(path, newline="")))
def med(v):
    v = sorted(v); n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2
cells = {}
for r in rows:
    label, f = r["label"].split("@flood=")
    cells.setdefault((label, int(f)), []).append(float(r["p99_us"]))
base = {f: cells.get((baseline, f)) for f in (0, flood)}
print(f"# witness round-trip p99 in ms, median of rounds [min-max]; ratio: to {baseline} (median of per-round ratios)")
print(f"{'server':<12} {'flood':>5} {'p99 ms':>8} {'range':>17} {'ratio':>7}")
for (label, f), v in sorted(cells.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    ratio = ""
    if base.get(f) and len(base[f]) == len(v):
        ratio = f"{med([a / b for a, b in zip(v, base[f])]):.2f}x"
    print(f"{label:<12} {f:>5} {med(v) / 1000:>8.2f} {min(v) / 1000:>8.2f}-{max(v) / 1000:<8.2f} {ratio:>7}")
PY
} | tee "$OUT.txt"
echo "wrote $OUT.csv $OUT.txt" >&2
