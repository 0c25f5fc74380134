#!/usr/bin/env bash
# Kernel applications through TUN: two hosts (network namespaces) on a bridge,
# each running `ipoibd` on the rocev2 provider with a TUN device that carries
# its IPoIB addresses and MTU. The hosts' own kernels and sockets then talk
# through the dataplane: ICMP echo both ways (a raw-socket pinger that also
# counts duplicate replies, so exactly one IP stack must answer), UDP echo
# and TCP transfers checked by hash, both ways, over IPv4 and IPv6 (the
# IPv4 underlay carries IPoIB's IPv6 and ND groups as IPv4 groups of
# provider.rocev2.ipv6_group_range, here its default 239.254.0.0/16, which
# the bridge's mdb must show).
# Then SIGTERM: both daemons exit 0 with every mbuf back in the pool, joins
# and leaves balanced, and packets counted through each TUN device.
# Skips (exit 0) with a reason without root, `ip` or /dev/net/tun.
#   tests/netns_tun.sh               builds ipoibd, then runs
#   IPOIBD=path/to/ipoibd tests/netns_tun.sh
set -euo pipefail
cd "$(dirname "$0")/.."

. tests/netns_lib.sh
netns_require
[ -c /dev/net/tun ] || skip "/dev/net/tun is missing (modprobe tun)"
command -v python3 >/dev/null || skip "python3 is missing"

netns_bins ipoibd
TOOLS="$PWD/tests/tun_tools.py"

netns_bridge "tun$$" 10.83.0 a b
# Room for 2 KiB IB messages in one Ethernet frame: an IPoIB MTU of 1500
# (a 2176-byte buffer holds it with the RoCEv2 headers; 2044 would not).
for h in a b; do
    ip -n "$BR" link set "p$h" mtu 9000
    ip -n "${tag}$h" link set eth0 mtu 9000
done

# config HOST_NUMBER: one rocev2 interface with a TUN device, no traffic of its own.
config() {
    rocev2_conf 4096 "ib_mtu = 2048"
    cat <<CONF
[[interface]]
name = "ib0"
port = $1
mtu = 1500
local_ip = "10.83.0.$1"
ipv4 = ["10.0.0.$1/24"]
ipv6 = ["fd00::$1/64"]
tun = { name = "ipoib0" }
CONF
}
config 1 >"$WORK/a.toml"
config 2 >"$WORK/b.toml"

for h in a b; do
    ip netns exec "${tag}$h" "$IPOIBD" --config "$WORK/$h.toml" --no-socket \
        --duration 0 >"$WORK/$h.out" 2>&1 &
    PIDS+=($!)
    DAEMON[$h]=$!
done

for h in a b; do
    wait_for "carrier on $h" 30 grep -q "carrier on every interface" "$WORK/$h.out"
    wait_for "ipoib0 up on $h" 5 ip -n "${tag}$h" addr show dev ipoib0 up
done
echo "== TUN devices"
for h in a b; do
    n=$([ $h = a ] && echo 1 || echo 2)
    dev=$(ip -n "${tag}$h" addr show dev ipoib0)
    ip -n "${tag}$h" -br addr show dev ipoib0
    [[ $dev == *"inet 10.0.0.$n/24"* ]] || fail "$h: no IPv4 address on ipoib0"
    [[ $dev == *"inet6 fd00::$n/64"* ]] || fail "$h: no IPv6 address on ipoib0"
    [[ $dev == *"mtu 1500 "* ]] || fail "$h: ipoib0 does not have the IPoIB MTU"
done

inns() { local h=$1; shift; ip netns exec "${tag}$h" "$@"; }

# ICMP echo both ways; the kernel answers, the daemon's own stack does not.
inns a python3 "$TOOLS" ping 10.0.0.2 5 || fail "ping a -> b"
inns b python3 "$TOOLS" ping 10.0.0.1 5 || fail "ping b -> a"

# serve HOST KIND ADDR PORT: a server in the background, up when it says so.
serve() {
    local ready="$WORK/ready.$2.$4"
    inns "$1" python3 "$TOOLS" "$2-server" "$3" "$4" "$ready" >"$WORK/$2-$4.srv" 2>&1 &
    PIDS+=($!)
    wait_for "$2 server on $1" 10 test -e "$ready"
}

serve b udp 10.0.0.2 5001
inns a python3 "$TOOLS" udp-client 10.0.0.2 5001 20 || fail "UDP a -> b"
serve a udp 10.0.0.1 5002
inns b python3 "$TOOLS" udp-client 10.0.0.1 5002 20 || fail "UDP b -> a"

serve b tcp 10.0.0.2 5003
inns a python3 "$TOOLS" tcp-client 10.0.0.2 5003 4000000 || fail "TCP a -> b"
serve a tcp 10.0.0.1 5004
inns b python3 "$TOOLS" tcp-client 10.0.0.1 5004 1000000 || fail "TCP b -> a"

# IPv6 through the same IPv4 underlay: the daemons resolve each other with
# ND (solicitations to the solicited-node group, an IPv4 group of the range).
inns a python3 "$TOOLS" ping fd00::2 5 || fail "ping fd00::2 a -> b"
inns b python3 "$TOOLS" ping fd00::1 5 || fail "ping fd00::1 b -> a"
serve b udp fd00::2 5011
inns a python3 "$TOOLS" udp-client fd00::2 5011 20 || fail "UDP over IPv6 a -> b"
serve a udp fd00::1 5012
inns b python3 "$TOOLS" udp-client fd00::1 5012 20 || fail "UDP over IPv6 b -> a"
serve b tcp fd00::2 5013
inns a python3 "$TOOLS" tcp-client fd00::2 5013 1000000 || fail "TCP over IPv6 a -> b"
# Every group on the bridge is IPv4 (MLD from the TUN devices stays in the
# hosts: the kernel's own multicast on ipoib0 goes nowhere but the daemon),
# and both hosts' solicited-node groups are there in 239.254.0.0/16.
mdb=$(bridge -n "$BR" mdb show 2>/dev/null || true)
for h in a b; do
    grep -Eq "port p$h grp 239\.254\.[0-9]+\.[0-9]+" <<<"$mdb" \
        || fail "no group of 239.254.0.0/16 for $h in the bridge's mdb: $mdb"
done
echo "ok: ping, UDP and TCP over IPv6 through the IPv4 underlay"

# The host's own tools, where installed (.ci/run installs them).
if command -v ping >/dev/null; then
    out=$(inns a ping -c 3 -i 0.2 -w 10 10.0.0.2) || fail "ping: $out"
    [[ $out != *DUP!* ]] || fail "duplicate echo replies: $out"
    tail -2 <<<"$out"
    out=$(inns a ping -6 -c 3 -i 0.2 -w 10 fd00::2) || fail "ping -6: $out"
    [[ $out != *DUP!* ]] || fail "duplicate echo replies over IPv6: $out"
    tail -2 <<<"$out"
else
    echo "skipped ping: not installed (.ci/run installs iputils-ping)"
fi
if command -v iperf3 >/dev/null; then
    inns b iperf3 -s -1 -B 10.0.0.2 -p 5201 >"$WORK/iperf3.srv" 2>&1 &
    PIDS+=($!)
    listening() { [[ -n $(inns b ss -ltnH "sport = :5201") ]]; }
    wait_for "iperf3 server" 10 listening
    out=$(inns a iperf3 -c 10.0.0.2 -p 5201 -t "${IPERF_SECONDS:-2}" -f m) \
        || fail "iperf3: $out"
    mbps=$(awk '/receiver/ { print $7 }' <<<"$out")
    [ -n "$mbps" ] || fail "iperf3 printed no receiver rate: $out"
    echo "iperf3 TCP through the TUN devices: $mbps Mb/s"
else
    echo "skipped iperf3: not installed (.ci/run installs it)"
fi

# Stop the daemons with SIGTERM: a clean exit, and their summaries.
stop_daemons a b

for h in a b; do
    out="$WORK/$h.out"
    grep -q "(no leak)" "$out" || fail "$h: mbufs leaked or no pool line"
    line=$(grep "^control: joins=" "$out") || fail "$h: no control summary"
    joins=$(sed -E 's/.*joins=([0-9]+).*/\1/' <<<"$line")
    leaves=$(sed -E 's/.* leaves=([0-9]+).*/\1/' <<<"$line")
    [ "$joins" = "$leaves" ] || fail "$h: joins and leaves differ: $line"
    grep -q "unbalanced=0 violations=0" <<<"$line" || fail "$h: $line"
    # Balanced on IGMP too: each group joined at stop (broadcast at least) is left.
    joined=$(sed -n '/^multicast groups at stop:/,/^control: joins=/p' "$out" | grep -c " joined ")
    left=$(sed -nE 's/^control: ([0-9]+) membership\(s\) left at stop/\1/p' "$out")
    [ "$joined" -ge 1 ] && [ "$joined" = "$left" ] \
        || fail "$h: $joined groups joined at stop, ${left:-no} leaves"
    grep -Eq "^tun ipoib0 \(ib0\): from host [1-9][0-9]* pkts .* to host [1-9][0-9]* pkts" "$out" \
        || fail "$h: no packets counted through the TUN device"
    echo "== host $h"
    grep -E "^ib0 |^control: |^tun |\(no leak\)" "$out"
done
echo "kernel applications through TUN over rocev2 in two namespaces: ok"
