#!/usr/bin/env bash
# Compares the dataplane's SPSC ring with rtrb and crossbeam's ArrayQueue,
# burst 32, 16-byte move-only items, in one process: single-threaded and
# producer thread -> consumer thread (the headline), median of alternating
# repetitions. Prints `name: value` lines; ratios are peer time / our time
# (higher is better), and the last line is `ratio_vs_arrayqueue`.
#
# Usage: benches/ring_vs_peers.sh   (from anywhere in the repository)
set -euo pipefail

cd "$(dirname "$0")/.."

# Build first so compiler output stays out of the figures.
cargo bench -p ipoib-dataplane --bench ring_peers --no-run --quiet >&2
cargo bench -p ipoib-dataplane --bench ring_peers --quiet 2>/dev/null |
    grep -E '^[a-z_]+: [0-9.]+$'
