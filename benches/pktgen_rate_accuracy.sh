#!/usr/bin/env bash
# pktgen rate accuracy: a paced 64-byte IPv4 stream at 10% of the measured
# null-provider ceiling (pktgen_ceiling.sh) for 5 s, generator and interface on
# one lcore; achieved / target rate.
#
# Prints `name: value` lines, the headline last:
#   rate_accuracy_target_pps: N
#   rate_accuracy: X              (goal 0.99..1.01)
# Env: PKTGEN_CEILING_MPPS (skip the ceiling run), PKTGEN_ACCURACY_SECONDS (default 5).
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${PKTGEN_ACCURACY_SECONDS:-5}
target_dir=${CARGO_TARGET_DIR:-target}
ceiling=${PKTGEN_CEILING_MPPS:-}
if [ -z "$ceiling" ]; then
    ceiling=$(bash benches/pktgen_ceiling.sh | awk '/^null_mpps_per_lcore:/ { print $2 }')
fi
cargo build --quiet --release --bin ipoibd
bin="$target_dir/release/ipoibd"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cat >"$work/one_lcore.toml" <<'TOML'
[dataplane]
lcores = [0]
hugepages = "off"
# A pool that stays in cache, as pktgen-dpdk sizes its own.
mempool_size = 1024
mempool_cache = 128
[provider]
kind = "null"
[[interface]]
name = "ib0"
port = 1
ipv4 = ["10.0.0.1/24"]
[[interface.neighbour]]
ip = "10.0.0.2"
qpn = 0x102
gid = "fe80::2:c903:0:2"
TOML

target=$(awk -v c="$ceiling" 'BEGIN { printf "%.0f", c * 1e6 / 10 }')
"$bin" pktgen -q -c "$work/one_lcore.toml" --to 10.0.0.2 --size 64 \
    --rate-pps "$target" --duration "$secs" --json "$work/accuracy.json" >/dev/null
accuracy=$(grep -o '"rate_accuracy": [-0-9.eE+]*' "$work/accuracy.json" | head -n1 | awk '{ print $2 }')
echo "rate_accuracy_target_pps: $target"
awk -v a="$accuracy" 'BEGIN { printf "rate_accuracy: %.4f\n", a }'
