#!/usr/bin/env bash
# Two hosts (network namespaces) on a bridge with IGMP snooping, each running
# `ipoibd --config` with the rocev2 provider and no static neighbours: each
# resolves the other with IPoIB ARP (broadcast over IGMP-joined multicast),
# sends it a UDP flow and pings it. Both daemons must exit 0, with every
# mbuf back in the pool, the neighbour resolved and echo replies received.
# Host a sends with UDP GSO and receives with UDP GRO, host b with neither:
# the two must not tell the difference.
# Namespaces and processes are always removed, also on failure. Skips
# (exit 0) with a reason without root or `ip`.
#   tests/netns_ipoibd.sh            builds ipoibd, then runs
#   IPOIBD=path/to/ipoibd tests/netns_ipoibd.sh
set -euo pipefail
cd "$(dirname "$0")/.."

. tests/netns_lib.sh
netns_require

netns_bins ipoibd

netns_bridge "ipd$$" 10.81.0 a b

# config HOST_NUMBER PEER_NUMBER OFFLOAD: one rocev2 interface, a flow to the
# peer, UDP GSO and GRO on (OFFLOAD=true) or off.
config() {
    rocev2_conf 2048 "gso = $3
gro = $3"
    cat <<CONF
[[interface]]
name = "ib0"
port = $1
mtu = 1020
local_ip = "10.81.0.$1"
ipv4 = ["10.0.0.$1/24"]

[[traffic]]
from = "ib0"
to = "10.0.0.$2"
rate_pps = 1000
CONF
}
config 1 2 true >"$WORK/a.toml"
config 2 1 false >"$WORK/b.toml"
"$IPOIBD" check-config "$WORK/a.toml" | grep -qx "gro = true" || fail "a: gro not in effect"

# Both daemons run at once; each pings the other's IPoIB address.
ip netns exec "${tag}a" "$IPOIBD" --config "$WORK/a.toml" --no-socket \
    --ping 10.0.0.2 --duration 3 >"$WORK/a.out" 2>&1 &
PIDS+=($!)
ip netns exec "${tag}b" "$IPOIBD" --config "$WORK/b.toml" --no-socket \
    --ping 10.0.0.1 --duration 3 >"$WORK/b.out" 2>&1 &
PIDS+=($!)

n=0
for h in "${HOSTS[@]}"; do
    wait "${PIDS[$n]}" || fail "ipoibd in $h exited with status $?"
    n=$((n + 1))
done

for h in a b; do
    peer=10.0.0.$([ "$h" = a ] && echo 2 || echo 1)
    out="$WORK/$h.out"
    grep -q "(no leak)" "$out" || fail "$h: mbufs leaked or no pool line"
    grep -Eq "^  $peer +reachable" "$out" || fail "$h: neighbour $peer not resolved"
    grep -Eq "^ping $peer from ib0: [0-9]+ sent, [1-9][0-9]* received" "$out" \
        || fail "$h: no echo replies from $peer"
    # The peer's 1000 pps flow arrived (most of its 3 s; resolution takes a few ms).
    rx=$(awk '$1 == "ib0" && $3 ~ /^[0-9]+$/ { print $3; exit }' "$out")
    [ "${rx:-0}" -ge 1500 ] || fail "$h: received ${rx:-no} packets of the peer's flow"
    echo "== host $h: $rx packets received"
    grep -E "\(no leak\)|^  $peer |^ping " "$out"
done
echo "ipoibd over rocev2 in two namespaces: ok"
