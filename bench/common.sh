# Shared by bench/compare.sh and bench/memory.sh: build loadgen, start/stop pinned servers.
# Expects ROOT to be the workspace root; sets LOADGEN, SERVER_PID, ADDR.

SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
LOADGEN=$TARGET_DIR/release/loadgen

cargo build --release -q -p framewire-bench --bin loadgen

SERVER_PID=
ADDR=
mkdir -p "$TARGET_DIR"
LOGDIR=$(mktemp -d "$TARGET_DIR/loadgen-logs.XXXXXX")
cleanup() {
    if [[ -n "$SERVER_PID" ]]; then kill "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$LOGDIR"
}
trap cleanup EXIT

# start_server IMPL MODE [ARGS...]: starts `loadgen serve` pinned to $SERVER_CPU on a free port,
# with any further ARGS (e.g. --window 8); sets SERVER_PID and ADDR.
SERVER_COUNT=0
start_server() {
    # A fresh log per server: the address is read from it while the server starts, so an old
    # log of the same name would hand out a stale port.
    SERVER_COUNT=$((SERVER_COUNT + 1))
    local log="$LOGDIR/server-$SERVER_COUNT-$1-$2.txt"
    taskset -c "$SERVER_CPU" "$LOADGEN" serve --impl "$1" --mode "$2" "${@:3}" \
        --addr 127.0.0.1:0 --lifetime 600s >"$log" 2>&1 &
    SERVER_PID=$!
    ADDR=
    for _ in $(seq 100); do
        ADDR=$(sed -n 's/.* addr=\([^ ]*\) .*/\1/p' "$log" 2>/dev/null || true)
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

machine_line() {
    echo "# machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores," \
        "$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr);" \
        "server pinned to core $SERVER_CPU, client to core $CLIENT_CPU (taskset);" \
        "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "# rustc: $(rustc --version)"
}
