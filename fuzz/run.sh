#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60) with an RSS limit, on stable Rust
# (no sanitizer: the workspace has no unsafe code).
#   cargo install cargo-fuzz
#   fuzz/run.sh 600
# New corpus entries land in fuzz/corpus/TARGET; crashes in fuzz/artifacts/TARGET.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-60}
rss_mb=${RSS_LIMIT_MB:-1024}
targets=$(cargo fuzz list)
for t in $targets; do
  echo "== $t: ${seconds}s, rss limit ${rss_mb} MB"
  cargo fuzz run -s none "$t" -- \
    -max_total_time="$seconds" -rss_limit_mb="$rss_mb" -malloc_limit_mb="$rss_mb" \
    -print_final_stats=1 2>&1 | tee "/tmp/fuzz-$t.log" | grep -E "^(#[0-9]+ +DONE|stat::|INFO: Running|==[0-9]+== ERROR|SUMMARY)" || true
  grep -q "DONE" "/tmp/fuzz-$t.log" || { echo "target $t did not finish cleanly: see /tmp/fuzz-$t.log"; exit 1; }
done
