#!/usr/bin/env bash
# Instructions per frame of the one-way 64 B stream, client and server, counted by callgrind with
# BOTH sides under valgrind at once (so their speeds stay matched as on the real machine; with one
# side native the other idles and the regime changes). Per frame = the difference between a 1 s
# and a 4 s client run, divided by the difference in frames: start-up and shutdown cancel out.
# Instruction counts do not depend on other load on the machine (valgrind 3.19 counts a
# `rep movsb` copy one instruction per byte, so large copies weigh more here than in time).
#
#   bench/callgrind_stream.sh                    # ack mode (window 4096) and plain mode
#   IMPLS=framewire-ack bench/callgrind_stream.sh
#   LOADGEN=/path/to/loadgen bench/callgrind_stream.sh   # another build (e.g. a baseline)
#
# Needs valgrind. Takes about a minute per implementation; files stay in $OUT (default /tmp/cg).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
IMPLS=${IMPLS:-"framewire framewire-ack"}
SIZE=${SIZE:-64}
OUT=${OUT:-/tmp/cg}
if [[ -z ${LOADGEN:-} ]]; then
    cargo build --release -q -p framewire-bench --bin loadgen
    LOADGEN=${CARGO_TARGET_DIR:-$ROOT/target}/release/loadgen
fi
command -v valgrind >/dev/null || { echo "valgrind not found" >&2; exit 1; }

ir() { grep -m1 '^summary:' "$1" | awk '{print $2}'; }
frames() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["frames"])' "$1"; }

for impl in $IMPLS; do
    dir=$OUT/$impl
    mkdir -p "$dir"
    window=()
    [[ $impl == framewire-ack ]] && window=(--window 4096)
    for d in 1 4; do
        : >"$dir/server-$d.txt"
        taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$dir/srv-$d.out" \
            "$LOADGEN" serve --impl "$impl" --mode sink "${window[@]}" --threads 1 \
            --addr 127.0.0.1:0 --lifetime "$((d + 14))s" >"$dir/server-$d.txt" 2>&1 &
        server=$!
        for _ in $(seq 200); do grep -q 'addr=' "$dir/server-$d.txt" && break; sleep 0.2; done
        addr=$(grep -o 'addr=[0-9.:]*' "$dir/server-$d.txt" | head -1 | cut -d= -f2)
        taskset -c 1 valgrind --tool=callgrind --callgrind-out-file="$dir/cli-$d.out" \
            "$LOADGEN" stream --addr "$addr" --client "$impl" "${window[@]}" --size "$SIZE" \
            --duration "${d}s" --json "$dir/r-$d.json" --quiet >"$dir/client-$d.txt" 2>&1
        wait "$server" || true
    done
    f1=$(frames "$dir/r-1.json"); f4=$(frames "$dir/r-4.json")
    for side in srv cli; do
        a=$(ir "$dir/$side-1.out"); b=$(ir "$dir/$side-4.out")
        name=$([[ $side == srv ]] && echo server || echo client)
        echo "$impl $name: $(( (b - a) / (f4 - f1) )) instructions per frame ($((f4 - f1)) frames)"
    done
done
