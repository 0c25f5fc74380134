#!/usr/bin/env bash
# Three hosts (network namespaces) on a bridge with IGMP snooping exchange
# RoCEv2 UD messages through the rocev2 provider (the rocev2_peer example):
# unicast A -> B (also with UDP GSO sends), multicast A -> {B, C} on a group
# B and C joined, and nothing for a host that did not join. Namespaces and processes are always
# removed, also on failure. Skips (exit 0) with a reason without root or `ip`.
#   tests/netns_rocev2.sh            builds the example, then runs
#   PEER=path/to/rocev2_peer tests/netns_rocev2.sh
set -euo pipefail
cd "$(dirname "$0")/.."

. tests/netns_lib.sh
netns_require

if [ -z "${PEER:-}" ]; then
    cargo build --release -q -p ipoib-dataplane --example rocev2_peer
    PEER="${CARGO_TARGET_DIR:-target}/release/examples/rocev2_peer"
fi

netns_bridge "rv2$$" 10.79.0 a b c
A=10.79.0.1 B=10.79.0.2 C=10.79.0.3 GROUP=239.9.9.9

# Starts a receiver in the background; its output goes to $WORK/NAME.out.
start_recv() {
    local name=$1 host=$2; shift 2
    ip netns exec "${tag}$host" "$PEER" recv "$@" >"$WORK/$name.out" 2>&1 &
    PIDS+=($!)
    local deadline=$((SECONDS + 10))
    until grep -q ready "$WORK/$name.out" 2>/dev/null; do
        [ $SECONDS -lt $deadline ] || fail "$name never got ready"
        sleep 0.05
    done
}

# Waits for a receiver to exit; fails unless it exited 0.
wait_recv() {
    local pid=$1 name=$2
    wait "$pid" || fail "$name: $(cat "$WORK/$name.out")"
    echo "$name: $(tail -n 1 "$WORK/$name.out")"
}

echo "== unicast A -> B"
start_recv uni b --local "$B" --qpn 0x22 --count 50 --secs 10
uni=$!
ip netns exec "${tag}a" "$PEER" send --local "$A" --qpn 0x11 --to "$B" --to-qpn 0x22 --count 50 --size 200
wait_recv "$uni" uni

echo "== unicast A -> B with UDP GSO sends (B receives ordinary datagrams)"
start_recv gso b --local "$B" --qpn 0x22 --count 64 --secs 10
gso=$!
ip netns exec "${tag}a" "$PEER" send --local "$A" --qpn 0x11 --to "$B" --to-qpn 0x22 --count 64 --size 256 --gso 1
wait_recv "$gso" gso

echo "== multicast A -> $GROUP (B and C joined, A's own copy not counted)"
start_recv mc-b b --local "$B" --qpn 0x22 --join "$GROUP" --count 20 --secs 10
mcb=$!
start_recv mc-c c --local "$C" --qpn 0x33 --join "$GROUP" --count 20 --secs 10
mcc=$!
if command -v bridge >/dev/null; then
    # IGMP snooping learned both members from the kernel's reports.
    mdb="$(ip netns exec "$BR" bridge mdb show)"
    for port in pb pc; do
        grep -q "port $port grp $GROUP" <<<"$mdb" || fail "bridge mdb has no $GROUP on $port: $mdb"
    done
    grep -q "port pa grp $GROUP" <<<"$mdb" && fail "bridge mdb lists $GROUP on A, which only sends"
    echo "bridge mdb: $GROUP on pb and pc"
fi
ip netns exec "${tag}a" "$PEER" send --local "$A" --qpn 0x11 --to "$GROUP" --count 20 --size 100
wait_recv "$mcb" mc-b
wait_recv "$mcc" mc-c
grep -q "multicast 20 " "$WORK/mc-b.out" || fail "B did not see 20 multicast messages"
grep -q "multicast 20 " "$WORK/mc-c.out" || fail "C did not see 20 multicast messages"

echo "== a host that did not join sees no multicast"
start_recv none c --local "$C" --qpn 0x33 --count 1 --secs 1
none=$!
ip netns exec "${tag}a" "$PEER" send --local "$A" --qpn 0x11 --to "$GROUP" --count 5 --size 100
if wait "$none"; then fail "C received multicast without joining"; fi
grep -q "received 0 " "$WORK/none.out" || fail "C: $(cat "$WORK/none.out")"
echo "none: $(tail -n 1 "$WORK/none.out")"

echo "netns rocev2: all checks passed"
