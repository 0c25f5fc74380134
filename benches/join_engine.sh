#!/usr/bin/env bash
# Multicast join engine: 10,000 groups joined through the soft SA with no
# faults and no delay, then flushed (interface down leaves them all).
# Prints `joins_per_s: N` (goal >= 100000) and `flush_ms: N` (goal < 100).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -q -p ipoib-control --bench join_engine
