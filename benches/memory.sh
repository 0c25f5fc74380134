#!/usr/bin/env bash
# Memory of the embedded default: runs `ipoibd` (release) for 60 s, samples
# VmRSS every 100 ms, and prints the peak and the growth after the first
# second (everything is allocated at start-up, so growth should be page noise).
#
# Prints `name: value` lines; the last one is `rss_growth_kb: N`.
# Goals: peak_rss_mb < 128, rss_growth_kb <= 256.
#
# Env: MEMORY_SECONDS (default 60) shortens the run.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${MEMORY_SECONDS:-60}
target_dir=${CARGO_TARGET_DIR:-target}

cargo build --quiet --release --bin ipoibd
bin="$target_dir/release/ipoibd"

log=$(mktemp)
trap 'rm -f "$log"' EXIT

"$bin" --duration "$seconds" >"$log" 2>&1 &
pid=$!

rss_kb() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true
}

peak=0
base=""
last=""
samples=0
start=$(date +%s%N)
while kill -0 "$pid" 2>/dev/null; do
    r=$(rss_kb)
    if [ -n "$r" ]; then
        samples=$((samples + 1))
        last=$r
        [ "$r" -gt "$peak" ] && peak=$r
        now=$(date +%s%N)
        # The baseline is the first sample taken at or after t = 1 s.
        if [ -z "$base" ] && [ $(((now - start) / 1000000)) -ge 1000 ]; then
            base=$r
        fi
    fi
    sleep 0.1
done

status=0
wait "$pid" || status=$?
if [ "$status" -ne 0 ]; then
    echo "memory.sh: ipoibd exited with status $status:" >&2
    tail -n 20 "$log" >&2
    exit 1
fi
if [ -z "$base" ] || [ -z "$last" ]; then
    echo "memory.sh: ipoibd ran for less than a second; no growth to measure" >&2
    exit 1
fi

echo "seconds: $seconds"
echo "samples: $samples"
echo "rss_at_1s_kb: $base"
echo "rss_last_kb: $last"
awk -v p="$peak" 'BEGIN { printf "peak_rss_mb: %.1f\n", p / 1024 }'
echo "rss_growth_kb: $((last - base))"
