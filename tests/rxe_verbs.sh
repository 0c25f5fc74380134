#!/usr/bin/env bash
# ipoibd with the verbs provider against Linux's own soft-RoCE (rdma_rxe),
# in two QEMU guests on a bridge in a network namespace (../shared/rxe-vm):
# guest a is a full member of a multicast group, guest b resolves a with
# IPoIB ARP, sends it a unicast UDP flow, a multicast flow (send-only join
# through rdma_cm) and pings. Both daemons stop cleanly: exit 0, every
# membership left (rdma_cm ids gone), no mbuf leaked. Mid-traffic, b's link
# goes down and up: the port events flush, the groups are joined again and
# the flows resume. Each daemon runs two lcores with one UD QP each (the
# interface's `queues = 2`): b's flows leave through both.
# Then guest c (verbs) and an ipoibd on the rocev2 provider in the
# namespace exchange IPoIB both ways: flows each way, c's multicast to a
# group the rocev2 host joined with IGMP, c's pings answered.
# Needs root (namespace, taps); skips with a reason where QEMU cannot run.
#   tests/rxe_verbs.sh                 builds ipoibd, then runs
#   IPOIBD_DIR=target/release tests/rxe_verbs.sh
#   RXE_VERBS_KEEP=1                   keeps the logs
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
. tests/rxe_lib.sh

skip() { echo "skipped: $*"; exit 0; }
why=$(rxe_unavailable)
[ -z "$why" ] || skip "$why"

WORK=$(mktemp -d)
NS="rxev$$"
PIDS=()
cleanup() {
    rxe_stop
    if [ "${RXE_VERBS_KEEP:-0}" = 1 ]; then echo "logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap "exit 143" TERM INT
fail() {
    echo "FAIL: $*"
    for f in "$WORK"/*.log "$WORK"/*.boot; do [ -f "$f" ] && { echo "--- $f"; tail -n 80 "$f"; }; done
    exit 1
}

rxe_build_image || fail "rxe-vm build failed"
command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 is missing and could not be installed"
rxe_extra || fail "cannot build or pack ipoibd"
rxe_netns_up 3 || fail "cannot create namespace $NS"
RXE_TIMEOUT=${RXE_VERBS_TIMEOUT:-240}
boot() { rxe_boot "$@"; }
counter() { awk -v k="$1" '$1 == k {print $2; exit}' <<<"$2"; }
section() { rxe_section "$@"; }

# Phase 1: two verbs guests. (RXE_VERBS_PHASES picks phases, default "1 2".)
if [[ " ${RXE_VERBS_PHASES:-1 2} " == *" 1 "* ]]; then
# A guest that never reached its ready marker (QEMU starved on a loaded
# machine) says nothing about ipoibd: the pair is booted once more.
booted() { rxe_booted "$@"; }
for attempt in 1 2; do
    start=$(date +%s)
    boot a 10.99.0.2 tap0 recv IPOIB_ADDR=10.50.0.2 IPOIB_QUEUES=2 &
    PIDS+=($!)
    boot b 10.99.0.3 tap1 send IPOIB_ADDR=10.50.0.3 PEER_IPOIB=10.50.0.2 IPOIB_FLAP=1 IPOIB_SECONDS=20 IPOIB_QUEUES=2 &
    PIDS+=($!)
    status=0
    for p in "${PIDS[@]}"; do wait "$p" || status=$?; done
    PIDS=()
    echo "guests ran in $(($(date +%s) - start)) s"
    if booted a && booted b; then break; fi
    echo "a guest never became ready (attempt $attempt)"
done

for g in a b; do
    log="$WORK/$g.log"
    [ -f "$log" ] || fail "no console log for $g"
    tr -d '\r' <"$log" | { grep -E "^IPOIB-TEST: (ok|fail) " || true; } | sed "s/^IPOIB-TEST: /$g: /"
done
for g in a b; do
    if tr -d '\r' <"$WORK/$g.log" | grep "^IPOIB-TEST: fail " >/dev/null; then fail "guest $g reported a failure"; fi
done
[ "$status" = 0 ] || fail "a guest exited with status $status"
tr -d '\r' <"$WORK/b.log" | grep "^IPOIB-TEST: ok queues " >/dev/null || fail "b did not report traffic through both queues"
tr -d '\r' <"$WORK/b.log" | grep "^IPOIB-TEST: ok child_pkey_missing " >/dev/null ||
    fail "b did not check that a P_Key child needs its P_Key in the port's table"

# What the daemons saw.
b_out=$(section "$WORK/b.log" ipoibd.out)
a_out=$(section "$WORK/a.log" ipoibd.out)
a_stats=$(section "$WORK/a.log" stats.out)
b_groups=$(section "$WORK/b.log" groups.out)
grep -Eq "^  10\.50\.0\.2 +reachable" <<<"$b_out" || fail "b did not resolve 10.50.0.2 with ARP"
grep -Eq "^ping 10\.50\.0\.2 from ib0: [0-9]+ sent, [1-9][0-9]* received" <<<"$b_out" \
    || fail "b got no echo reply from a"
grep -E "^ping " <<<"$b_out"
rx_mcast=$(counter rx_multicast_packets "$a_stats")
[ "${rx_mcast:-0}" -gt 0 ] || fail "a received no multicast (rx_multicast_packets=${rx_mcast:-none})"
rx=$(counter rx_good_packets "$a_stats")
[ "${rx:-0}" -gt $((rx_mcast + 100)) ] || fail "a received no unicast flow (rx_good_packets=${rx:-none})"
echo "a: rx_good_packets=$rx rx_multicast_packets=$rx_mcast"
# The provider's own counters reach ipoibctl stats (published per burst):
# it delivered at least what the interface counted.
vrx=$(counter verbs_rx_packets "$a_stats")
[ "${vrx:-0}" -ge "$rx" ] || fail "a: verbs_rx_packets=${vrx:-none} in ipoibctl stats, below rx_good_packets=$rx"
echo "a: verbs_rx_packets=$vrx"
grep -E "ff12:401b:ffff::f01:203" <<<"$b_groups" | grep -q "SENDONLY" \
    || fail "b's group 239.1.2.3 is not a send-only membership: $b_groups"
grep -E "^rdma_cm ib0: " <<<"$a_out" | sed 's/^/a: /'
grep -E "^rdma_cm ib0: " <<<"$b_out" | sed 's/^/b: /'
echo "ipoibd over verbs on kernel rxe in two guests: ok"
fi

# Phase 2: a verbs guest and a rocev2 host in the namespace.
[[ " ${RXE_VERBS_PHASES:-1 2} " == *" 2 "* ]] || exit 0
cat >"$WORK/host.toml" <<CONF
[dataplane]
lcores = [0]
mempool_size = 4096
hugepages = "off"

[provider]
kind = "rocev2"

[[interface]]
name = "ib0"
port = 1
mtu = 1020
local_ip = "10.99.0.1"
ipv4 = ["10.50.0.1/24"]
groups = ["239.1.2.4"]

[[traffic]]
from = "ib0"
to = "10.50.0.4"
rate_pps = 1000
dst_port = 9100
CONF
in_ns() { ip netns exec "$NS" "$@"; }
# A guest's flag address answers (a TCP RST) once the guest added it.
answers() {
    local out
    out=$(in_ns timeout 2 bash -c "exec 3<>/dev/tcp/$1/9" 2>&1 || true)
    [[ $out == *refused* ]]
}
# Niced: its busy-polling lcore must not starve the guest's emulated CPU.
# Started directly (not through a function) so that its PID is ipoibd's own.
ip netns exec "$NS" nice -n 19 "$IPOIBD_DIR/ipoibd" --config "$WORK/host.toml" --socket "$WORK/host.sock" --duration 0 \
    >"$WORK/host.out" 2>&1 &
HOST_PID=$!
PIDS+=("$HOST_PID")
boot c 10.99.0.4 tap2 send IPOIB_ADDR=10.50.0.4 PEER_IPOIB=10.50.0.1 IPOIB_GROUP=239.1.2.4 \
    IPOIB_FLAG_UP=10.99.0.210 IPOIB_FLAG_DONE=10.99.0.211 IPOIB_FLAG_ACK=10.99.0.212 &
GUEST_PID=$!
PIDS+=("$GUEST_PID")
n=0
until grep -q "control: carrier on every interface" "$WORK/host.out"; do
    n=$((n + 1))
    [ $n -lt 300 ] || fail "the rocev2 host never had carrier: $(cat "$WORK/host.out")"
    sleep 0.1
done
in_ns ip addr add 10.99.0.210/32 dev lo
n=0
until answers 10.99.0.211; do
    n=$((n + 1))
    kill -0 "$GUEST_PID" 2>/dev/null || fail "guest c stopped before it finished"
    [ $n -lt 150 ] || fail "guest c never finished its run"
    sleep 1
done
"$IPOIBD_DIR/ipoibctl" stats --socket "$WORK/host.sock" >"$WORK/host.stats" 2>&1 || true
kill -TERM "$HOST_PID"
wait "$HOST_PID" || fail "the rocev2 host exited with status $?: $(tail -n 30 "$WORK/host.out")"
in_ns ip addr add 10.99.0.212/32 dev lo
wait "$GUEST_PID" || fail "guest c exited with status $?"
PIDS=()
tr -d '\r' <"$WORK/c.log" | { grep -E "^IPOIB-TEST: (ok|fail) " || true; } | sed "s/^IPOIB-TEST: /c: /"
if tr -d '\r' <"$WORK/c.log" | grep "^IPOIB-TEST: fail " >/dev/null; then fail "guest c reported a failure"; fi
c_out=$(section "$WORK/c.log" ipoibd.out)
c_stats=$(section "$WORK/c.log" stats.out)
h_stats=$(cat "$WORK/host.stats")
grep -q "(no leak)" "$WORK/host.out" || fail "the rocev2 host leaked mbufs"
grep -Eq "^  10\.50\.0\.4 +reachable" "$WORK/host.out" || fail "the rocev2 host did not resolve c"
grep -Eq "^ping 10\.50\.0\.1 from ib0: [0-9]+ sent, [1-9][0-9]* received" <<<"$c_out" \
    || fail "c got no echo reply from the rocev2 host"
grep -E "^ping " <<<"$c_out" | sed 's/^/c: /'
h_rx=$(counter rx_good_packets "$h_stats")
h_mc=$(counter rx_multicast_packets "$h_stats")
c_rx=$(counter rx_good_packets "$c_stats")
[ "${h_mc:-0}" -gt 0 ] || fail "the rocev2 host received no multicast from c (rx_multicast_packets=${h_mc:-none})"
[ "${h_rx:-0}" -gt $((h_mc + 100)) ] || fail "the rocev2 host received no unicast flow from c (rx_good_packets=${h_rx:-none})"
[ "${c_rx:-0}" -gt 100 ] || fail "c received no flow from the rocev2 host (rx_good_packets=${c_rx:-none})"
echo "rocev2 host: rx_good_packets=$h_rx rx_multicast_packets=$h_mc; c: rx_good_packets=$c_rx"
echo "verbs guest and rocev2 host exchange IPoIB both ways: ok"
