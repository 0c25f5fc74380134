#!/usr/bin/env bash
# Two hosts (network namespaces) on a bridge with IGMP snooping, each running
# `ipoibd --config` with the rocev2 provider and no static neighbours: each
# resolves the other with IPoIB ARP (broadcast over IGMP-joined multicast),
# sends it a UDP flow and pings it. Both daemons must exit 0, with every
# mbuf back in the pool, the neighbour resolved and echo replies received.
# Host a sends with UDP GSO and receives with UDP GRO, host b with neither:
# the two must not tell the difference.
# Each host also has a P_Key 0x8001 child interface on the same address
# (its own QP, steered by QPN in the kernel): the children resolve each
# other and exchange a flow, kept apart from the parents' partition; a's
# child also sends to b's parent QP (a static neighbour in the wrong
# partition), which b must drop.
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

[[interface]]
name = "ib0.8001"
parent = "ib0"
pkey = 0x8001
ipv4 = ["10.1.0.$1/24"]
$4

[[traffic]]
from = "ib0"
to = "10.0.0.$2"
rate_pps = 1000

[[traffic]]
from = "ib0.8001"
to = "10.1.0.$2"
rate_pps = 1000
$5
CONF
}
# a's child: a static neighbour 10.1.0.99 that is b's parent QP (0x100 +
# port), in the other partition, and a flow to it.
cross_neighbour='[[interface.neighbour]]
ip = "10.1.0.99"
qpn = 0x102
gid = "::ffff:10.81.0.2"'
cross_flow='[[traffic]]
from = "ib0.8001"
to = "10.1.0.99"
rate_pps = 1000'

config 1 2 true "$cross_neighbour" "$cross_flow" >"$WORK/a.toml"
config 2 1 false "" "" >"$WORK/b.toml"
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
    # The peer's flow arrived: nearly all it sent (it stops a little later).
    rx=$(awk '$1 == "ib0" && $3 ~ /^[0-9]+$/ { print $3; exit }' "$out")
    other=$WORK/$([ "$h" = a ] && echo b || echo a).out
    peer_tx=$(awk '$1 == "ib0" && $2 ~ /^[0-9]+$/ { print $2; exit }' "$other")
    [ "${rx:-0}" -ge 100 ] && [ "$((${rx:-0} * 10))" -ge "$((${peer_tx:-1} * 9))" ] \
        || fail "$h: received ${rx:-no} packets, the peer sent ${peer_tx:-none}"
    # The child's partition: resolved by its own ARP, its peer's flow arrived
    # (as many as the peer's parent flow, which runs at the same rate).
    child_peer=10.1.0.$([ "$h" = a ] && echo 2 || echo 1)
    grep -Eq "^  $child_peer +reachable" "$out" || fail "$h: child's neighbour $child_peer not resolved"
    crx=$(awk '$1 == "ib0.8001" && $3 ~ /^[0-9]+$/ { print $3; exit }' "$out")
    [ "${crx:-0}" -ge 100 ] && [ "$((${crx:-0} * 10))" -ge "$((${peer_tx:-1} * 8))" ] \
        || fail "$h: child received ${crx:-no} packets of the peer child's flow (peer parent sent ${peer_tx:-none})"
    echo "== host $h: $rx packets received (the peer sent $peer_tx), child $crx"
    grep -E "\(no leak\)|^  $peer |^  $child_peer |^ping " "$out"
done
# b's parent got its peer's flow and nothing of a's child's 1000 pps to it
# (dropped by its P_Key check): well under two flows' worth.
rx=$(awk '$1 == "ib0" && $3 ~ /^[0-9]+$/ { print $3; exit }' "$WORK/b.out")
a_tx=$(awk '$1 == "ib0" && $2 ~ /^[0-9]+$/ { print $2; exit }' "$WORK/a.out")
[ "$((rx * 10))" -le "$((a_tx * 12))" ] \
    || fail "b: its parent received $rx packets, a's parent sent $a_tx: the other partition's flow got through"
echo "ipoibd over rocev2 in two namespaces: ok"
