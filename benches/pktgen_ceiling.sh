#!/usr/bin/env bash
# pktgen generator ceiling (rate accuracy: pktgen_rate_accuracy.sh).
#
# 1. Fabric: one unpaced 64-byte IPv4 stream between two soft-fabric hosts,
#    each interface on its own lcore; generated Mpps (and delivered Mpps).
# 2. Null provider: one unpaced 64-byte IPv4 stream, generator and interface
#    on a single lcore; the software ceiling per lcore.
#
# Prints `name: value` lines, the headline last:
#   fabric_delivered_mpps: N
#   fabric_mpps: N
#   null_mpps_per_lcore: N        (goal >= 30)
# Env: PKTGEN_SECONDS (seconds per run, default 3).
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${PKTGEN_SECONDS:-3}
target_dir=${CARGO_TARGET_DIR:-target}
cargo build --quiet --release --bin ipoibd
bin="$target_dir/release/ipoibd"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# First number after `"key": ` in a pretty-printed JSON file.
json_num() {
    grep -o "\"$1\": [-0-9.eE+]*" "$2" | head -n1 | awk '{print $2}'
}

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

cat >"$work/two_hosts.toml" <<'TOML'
[dataplane]
lcores = [0, 1]
hugepages = "off"
[provider]
kind = "fabric"
[[interface]]
name = "ib0"
port = 1
lcore = 0
ipv4 = ["10.0.0.1/24"]
[[interface]]
name = "ib1"
port = 2
lcore = 1
ipv4 = ["10.0.0.2/24"]
TOML

"$bin" pktgen -q -c "$work/two_hosts.toml" --to 10.0.0.2 --size 64 \
    --duration "$secs" --json "$work/fabric.json" >"$work/fabric.txt"
fabric_pps=$(json_num achieved_pps "$work/fabric.json")
# Packets the streams' receivers counted (ports list per-queue figures too).
fabric_rx=$(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
print(sum(r["rx_packets"] for ph in d["phases"] for s in ph["streams"] for r in s["receivers"]))' "$work/fabric.json")
fabric_s=$(json_num seconds "$work/fabric.json")
awk -v r="$fabric_rx" -v s="$fabric_s" 'BEGIN { printf "fabric_delivered_mpps: %.3f\n", r / s / 1e6 }'
awk -v p="$fabric_pps" 'BEGIN { printf "fabric_mpps: %.3f\n", p / 1e6 }'

"$bin" pktgen -q -c "$work/one_lcore.toml" --to 10.0.0.2 --size 64 \
    --duration "$secs" --json "$work/null.json" >"$work/null.txt"
null_pps=$(json_num achieved_pps "$work/null.json")

awk -v p="$null_pps" 'BEGIN { printf "null_mpps_per_lcore: %.3f\n", p / 1e6 }'
