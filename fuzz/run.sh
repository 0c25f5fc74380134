#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 10); exits non-zero on the
# first crash. Needs cargo-fuzz (`cargo install cargo-fuzz`); on a stable
# toolchain RUSTC_BOOTSTRAP=1 unlocks the sanitizer flags it uses.
# Build output goes to $CARGO_TARGET_DIR if set, else fuzz/target.
set -uo pipefail

seconds="${1:-10}"
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP="${RUSTC_BOOTSTRAP:-1}"
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT

if ! cargo fuzz build --target-dir "$target_dir"; then
    echo "fuzz targets failed to build" >&2
    exit 1
fi

for target in $(cargo fuzz list); do
    echo "== $target (${seconds}s)"
    if cargo fuzz run --target-dir "$target_dir" "$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
        grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" || tail -n 3 "$log"
    else
        tail -n 40 "$log" >&2
        echo "fuzz target $target failed; the input is in fuzz/artifacts/$target" >&2
        exit 1
    fi
done
echo "all fuzz targets ran ${seconds}s each without a crash"
