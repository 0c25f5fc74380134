#!/usr/bin/env bash
# The rocev2 provider against Linux kernel rxe (soft-RoCE) in QEMU guests
# (../shared/rxe-vm): two guests on a bridge in a network namespace, and the
# project's rxe_peer example (the rocev2 provider) on the bridge's host side.
#   ud_pingpong_to_guest    our client  <-> guest a's ibv_ud_pingpong server
#   ud_pingpong_from_guest  guest b's ibv_ud_pingpong client <-> our server
#   mckey_to_guest          our sender (opcode 0x65, UDP GSO) -> guest a's mckey receiver
#   mckey_from_guest        guest b's mckey sender -> our receiver
#   ud_pingpong6_to_guest   as ud_pingpong_to_guest on IPv6 GIDs: guest a adds
#                           fd99::2 to its netdev, rxe's GID table gains it,
#                           ibv_ud_pingpong -g <that index> serves our client
#                           at fd99::11 (RoCEv2 over IPv6 both ways)
#   ud_pingpong6_from_guest guest b (fd99::3, its IPv6 GID) -> our server at fd99::12
#   rxe_counters            no *_err counter above 0 in either guest
#   icrc_bridge             every RoCEv2 frame on the bridge has a valid ICRC
#                           (roce-pcap-check.py and `ipoibctl decode`), enough
#                           of them came from our peer, rxe's follow its rules
# Prints PASS/FAIL per case and exits 1 if any failed. Namespace, QEMU,
# tcpdump and peers are stopped by PID on any exit. Skips (exit 0) with a
# reason without root or when QEMU cannot be had. Builds the guest image
# cache first when needed (rxe-vm's build.sh, about 45 s; it installs the
# host packages it needs).
#   tests/rxe_interop.sh
#   RXE_VM_CACHE=DIR tests/rxe_interop.sh         another image cache
#   RXE_INTEROP_KEEP=DIR tests/rxe_interop.sh     keep logs and the capture
set -uo pipefail
cd "$(dirname "$0")/.."

skip() { echo "skipped: $*"; exit 0; }
[ "$(id -u)" = 0 ] || skip "needs root (network namespace, taps, tcpdump)"
RXE_VM=../shared/rxe-vm
[ -x "$RXE_VM/boot.sh" ] || [ -f "$RXE_VM/boot.sh" ] || skip "$RXE_VM (the rxe guest harness) is not there"
CACHE=${RXE_VM_CACHE:-${HOME:-/root}/.cache/rxe-vm}
T0=$SECONDS

W=$(mktemp -d -t rxe-interop.XXXXXX)
NS=rxei$$
NS_UP=0 PASSED=0 FAILED=0
PIDS=()
pass() { PASSED=$((PASSED + 1)); echo "PASS $1${2:+ ($2)}"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL $1${2:+ ($2)}"; }

# shellcheck disable=SC2317  # run by trap
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    [ "$NS_UP" = 0 ] || bash "$RXE_VM/netns.sh" down "$NS" >/dev/null 2>&1 || true
    if [ -n "${RXE_INTEROP_KEEP:-}" ]; then
        mkdir -p "$RXE_INTEROP_KEEP" && cp -r "$W"/. "$RXE_INTEROP_KEEP"/
    fi
    if [ "$FAILED" -gt 0 ]; then
        for f in "$W"/*.log "$W"/*.out "$W"/*.check; do
            [ -s "$f" ] || continue
            echo "--- $(basename "$f")"; tail -n 25 "$f" | tr -d '\r'
        done
    fi
    rm -rf "$W"
    echo "rxe interop took $((SECONDS - T0)) s: $PASSED passed, $FAILED failed"
}
trap cleanup EXIT
trap 'echo "interrupted"; FAILED=$((FAILED + 1)); exit 130' INT TERM HUP

# Waits until FILE has a line matching REGEX, at most S seconds, while PID lives.
wait_for() {
    local f=$1 re=$2 s=$3 pid=${4:-} end=$((SECONDS + $3))
    until grep -aqE -- "$re" "$f" 2>/dev/null; do
        [ $SECONDS -lt "$end" ] || return 1
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            grep -aqE -- "$re" "$f" 2>/dev/null; return
        fi
        sleep 0.1
    done
}
marker() { grep -aoE "^RXE-VM: $2" "$W/$1.log" 2>/dev/null | tail -n 1; }
step_rc() { marker "$1" "step role=$2 rc=[0-9]+" | sed 's/.*rc=//'; }
why() { echo "guest $1 step $2 rc=$(step_rc "$1" "$2")"; }

# ---- the guest image, and QEMU (build.sh installs it when it can)
if ! bash "$RXE_VM/build.sh" "$CACHE" >"$W/build.out" 2>&1; then
    command -v qemu-system-x86_64 >/dev/null || skip "QEMU is not installed and could not be: $(tail -n 1 "$W/build.out")"
    fail build "$(tail -n 3 "$W/build.out" | tr '\n' ' ')"
    exit 1
fi
command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 is missing"
pass build "$(grep -s '^KERNEL_RELEASE=' "$CACHE/build.info" | cut -d= -f2), rdma-core $(grep -s '^RDMA_CORE_VERSION=' "$CACHE/build.info" | cut -d= -f2)"

# ---- our programs
cargo build --release -q -p ipoib-dataplane --example rxe_peer || { fail build-peer; exit 1; }
cargo build --release -q --bin ipoibctl || { fail build-ipoibctl; exit 1; }
PEER="${CARGO_TARGET_DIR:-target}/release/examples/rxe_peer"
IPOIBCTL="${CARGO_TARGET_DIR:-target}/release/ipoibctl"

# ---- namespace: bridge br0 (10.99.0.1), taps for guests a and b; one
# address per peer program, since each binds UDP 4791 on its own address.
if bash "$RXE_VM/netns.sh" up "$NS" 2 >"$W/netns.out" 2>&1; then
    NS_UP=1
else
    fail netns "$(tail -n 2 "$W/netns.out" | tr '\n' ' ')"; exit 1
fi
A=10.99.0.2 B=10.99.0.3
CLIENT=10.99.0.11 SERVER=10.99.0.12 MRECV=10.99.0.13 MSEND=10.99.0.14
G_TO_GUEST=239.1.1.1 G_FROM_GUEST=239.1.1.2
for ip in $CLIENT $SERVER $MRECV $MSEND; do ip -n "$NS" addr add "$ip/24" dev br0; done
# IPv6: the guests add fd99::2 (a) and fd99::3 (b) in their last step.
CLIENT6=fd99::11 SERVER6=fd99::12
for ip in $CLIENT6 $SERVER6; do ip -n "$NS" addr add "$ip/64" dev br0 nodad; done
in_ns() { ip netns exec "$NS" "$@"; }

# The guests' IPv6 step (role exec): an IPv6 address on the netdev, so rxe
# adds its GID; then ibv_ud_pingpong on that GID index, a as the server, b
# as the client of our server at fd99::12.
mkdir -p "$W/v6/extra"
cat >"$W/v6/extra/run.sh" <<'GUEST'
#!/bin/sh
case $RXE_VM_NAME in
    a) me=fd99::2 full=fd99:0000:0000:0000:0000:0000:0000:0002 ;;
    *) me=fd99::3 full=fd99:0000:0000:0000:0000:0000:0000:0003 ;;
esac
ip -6 addr add $me/64 dev "$RXE_VM_NETDEV" nodad || exit 3
# One grep over the table (rxe's has 1024 entries; a process per entry
# takes a minute on an emulated CPU).
idx="" n=0
while [ -z "$idx" ] && [ $n -lt 100 ]; do
    f=$(grep -lx $full /sys/class/infiniband/$RXE_VM_DEV/ports/1/gids/* 2>/dev/null | head -n 1)
    idx=${f##*/}
    [ -n "$idx" ] || { n=$((n + 1)); sleep 0.1; }
done
[ -n "$idx" ] || { echo "RXE-VM: ipv6 no GID for $me"; exit 4; }
echo "RXE-VM: ipv6 gid index=$idx gid=$full type=$(cat /sys/class/infiniband/$RXE_VM_DEV/ports/1/gid_attrs/types/$idx)"
if [ "$RXE_VM_NAME" = a ]; then
    exec ibv_ud_pingpong -d "$RXE_VM_DEV" -g "$idx" -s 510 -n 20 -c
fi
tries=0
until ibv_ud_pingpong -d "$RXE_VM_DEV" -g "$idx" -s 512 -n 10 -c fd99::12 >/tmp/pp6.out 2>&1; do
    cat /tmp/pp6.out
    tries=$((tries + 1))
    grep -q "Couldn't connect" /tmp/pp6.out && [ $tries -lt 60 ] || exit 1
    sleep 1
done
cat /tmp/pp6.out
GUEST
bash "$RXE_VM/mkcpio.sh" "$W/v6" "$W/v6.cpio" || { fail build-v6-cpio; exit 1; }

in_ns tcpdump -i br0 -U -s 0 -Z root -w "$W/bridge.pcap" 2>"$W/tcpdump.log" &
TCPDUMP=$!; PIDS+=("$TCPDUMP")
wait_for "$W/tcpdump.log" 'listening on' 10 "$TCPDUMP" || { fail capture "tcpdump did not start"; exit 1; }

# Our receiver joins before guest b's mckey sends; our server listens before
# guest b's client connects (it retries anyway); our client retries until
# guest a's server listens.
in_ns "$PEER" mckey-recv --local $MRECV --group $G_FROM_GUEST --count 10 --size 100 --qpn 0x31 --secs 150 \
    >"$W/mckey-recv.out" 2>&1 &
MR=$!; PIDS+=("$MR")
in_ns "$PEER" ud-server --local $SERVER --iters 10 --size 512 --qpn 0x21 --secs 150 >"$W/ud-server.out" 2>&1 &
US=$!; PIDS+=("$US")
in_ns "$PEER" ud-server --local $SERVER6 --iters 10 --size 512 --qpn 0x22 --secs 170 >"$W/ud-server6.out" 2>&1 &
US6=$!; PIDS+=("$US6")
wait_for "$W/mckey-recv.out" '^ready' 10 "$MR" || fail mckey_from_guest "our receiver did not start"
wait_for "$W/ud-server.out" '^listening' 10 "$US" || fail ud_pingpong_from_guest "our server did not start"
wait_for "$W/ud-server6.out" '^listening' 10 "$US6" || fail ud_pingpong6_from_guest "our server did not start"

boot() {
    local n=$1; shift
    bash "$RXE_VM/boot.sh" --cache "$CACHE" --name "$n" --log "$W/$n.log" --timeout 180 --netns "$NS" "$@" \
        >"$W/$n.boot" 2>&1 &
}
t=$SECONDS
boot a --tap tap0 --ip $A --role server,mckey-recv,exec --count 20 --size 510 --group $G_TO_GUEST \
    --extra-cpio "$W/v6.cpio"; GA=$!
boot b --tap tap1 --ip $B --peer $SERVER --role client,mckey-send,exec --count 10 --bursts 2 --group $G_FROM_GUEST \
    --extra-cpio "$W/v6.cpio"; GB=$!
PIDS+=("$GA" "$GB")

in_ns "$PEER" ud-client --local $CLIENT --server $A --iters 20 --size 510 --qpn 0x11 --secs 150 >"$W/ud-client.out" 2>&1 &
UC=$!; PIDS+=("$UC")
# Our sender starts when guest a's mckey starts (it joins, then waits 3 s)
# and stops when that step ends. Each round of 5 is one UDP GSO send: rxe
# must see 5 ordinary datagrams (IPv4 IDs 0..4, each ICRC made for its own).
(
    wait_for "$W/a.log" '^RXE-VM: step role=mckey-recv start' 150 || exit 1
    exec ip netns exec "$NS" "$PEER" mckey-send --local $MSEND --group $G_TO_GUEST --count 5 --size 100 --qpn 0x41 \
        --interval 0.2 --gso 1 --secs 60 --until-file "$W/a.log" --until-text "RXE-VM: step role=mckey-recv rc="
) >"$W/mckey-send.out" 2>&1 &
MS=$!; PIDS+=("$MS")
# Our IPv6 client starts with guest a's IPv6 step (so it does not meet the
# IPv4 server before it); the out-of-band exchange stays on IPv4.
(
    wait_for "$W/a.log" '^RXE-VM: ipv6 gid index=' 170 || exit 1
    exec ip netns exec "$NS" "$PEER" ud-client --local $CLIENT6 --server $A --iters 20 --size 510 --qpn 0x12 --secs 60
) >"$W/ud-client6.out" 2>&1 &
UC6=$!; PIDS+=("$UC6")

ready="" n_ready=0
for g in a b; do
    if wait_for "$W/$g.log" '^RXE-VM: ready' 120; then
        ready="$ready $g=$((SECONDS - t)) s"; n_ready=$((n_ready + 1))
    fi
done
wait "$GA"; RA=$?
wait "$GB"; RB=$?
# The guests are done: whatever of ours still runs has failed; stop it.
for p in $UC $US $MR $MS $UC6 $US6; do
    end=$((SECONDS + 5))
    while kill -0 "$p" 2>/dev/null && [ $SECONDS -lt $end ]; do sleep 0.1; done
    kill -TERM "$p" 2>/dev/null || true
done
wait "$UC"; RUC=$?
wait "$US"; RUS=$?
wait "$MR"; RMR=$?
wait "$MS"; RMS=$?
wait "$UC6"; RUC6=$?
wait "$US6"; RUS6=$?
kill -TERM "$TCPDUMP" 2>/dev/null; wait "$TCPDUMP" 2>/dev/null
PIDS=()

if [ "$n_ready" = 2 ]; then pass boot "ready after$ready, two guests at once"; else fail boot "ready:${ready:- none}"; fi

last() { tail -n 1 "$W/$1.out" | tr -d '\r'; }
if [ $RUC = 0 ] && [ "$(step_rc a server)" = 0 ]; then
    pass ud_pingpong_to_guest "$(last ud-client)"
else
    fail ud_pingpong_to_guest "peer rc=$RUC: $(last ud-client); $(why a server)"
fi
if [ $RUS = 0 ] && [ "$(step_rc b client)" = 0 ]; then
    pass ud_pingpong_from_guest "$(last ud-server); guest: $(grep -a 'iters in' "$W/b.log" | tr -d '\r')"
else
    fail ud_pingpong_from_guest "peer rc=$RUS: $(last ud-server); $(why b client)"
fi
if [ $RMS = 0 ] && [ "$(step_rc a mckey-recv)" = 0 ]; then
    pass mckey_to_guest "$(last mckey-send); guest a's mckey received 20"
else
    fail mckey_to_guest "peer rc=$RMS: $(last mckey-send); $(why a mckey-recv)"
fi
if [ $RMR = 0 ] && [ "$(step_rc b mckey-send)" = 0 ] && grep -q ' 10 with the sender' "$W/mckey-recv.out"; then
    pass mckey_from_guest "$(last mckey-recv)"
else
    fail mckey_from_guest "peer rc=$RMR: $(last mckey-recv); $(why b mckey-send)"
fi

gid6() { marker "$1" 'ipv6 gid index=[0-9]+ gid=[0-9a-f:]+ type=[A-Za-z0-9 ]+' | tr -d '\r'; }
# Our QP at an IPv6 address refuses an IPv4 GID: success means IPv6 GIDs.
if [ $RUC6 = 0 ] && [ "$(step_rc a exec)" = 0 ]; then
    pass ud_pingpong6_to_guest "$(last ud-client6); guest a: $(gid6 a)"
else
    fail ud_pingpong6_to_guest "peer rc=$RUC6: $(last ud-client6); $(why a exec); $(gid6 a)"
fi
if [ $RUS6 = 0 ] && [ "$(step_rc b exec)" = 0 ] && grep -q "GID fd99::3)" "$W/ud-server6.out"; then
    pass ud_pingpong6_from_guest "$(last ud-server6); guest b: $(gid6 b)"
else
    fail ud_pingpong6_from_guest "peer rc=$RUS6: $(last ud-server6); $(why b exec); $(gid6 b)"
fi

errs=$(for g in a b; do marker $g 'counters.*' | tr ' ' '\n' | grep -E '_err=[1-9]' | sed "s/^/$g:/"; done | paste -sd ' ')
# rcvd_pkts counts only frames rxe accepted (ICRC and Q_Key right): a got
# our client's 20 and at least the 20 its mckey took, b our server's 10.
rcvd() { marker "$1" 'counters.*' | grep -oE ' rcvd_pkts=[0-9]+' | cut -d= -f2; }
ra=$(rcvd a) rb=$(rcvd b)
if [ -z "$errs" ] && [ "${ra:-0}" -ge 40 ] && [ "${rb:-0}" -ge 10 ]; then
    pass rxe_counters "no *_err counter above 0 in a or b; rcvd_pkts a=$ra b=$rb"
else
    fail rxe_counters "${errs:-no error counter}; rcvd_pkts a=${ra:-none} (want >= 40) b=${rb:-none} (want >= 10)"
fi

# Every RoCEv2 frame valid; our peer's frames counted by source address.
icrc_ok=0
if python3 "$RXE_VM/tools/roce-pcap-check.py" "$W/bridge.pcap" --rxe-src $A --rxe-src $B \
        --min-opcode 0x64:60 --min-opcode 0x65:30 --min-mcast 30 --expect-bad 0 >"$W/bridge.check" 2>&1; then
    icrc_ok=1
fi
"$IPOIBCTL" decode "$W/bridge.pcap" >"$W/decode.out" 2>"$W/decode.err"
ours=$(python3 - "$W/decode.out" $CLIENT $SERVER $MSEND $CLIENT6 $SERVER6 <<'EOF'
import json, sys
ours = set(sys.argv[2:])
n = ok = imm = 0
for line in open(sys.argv[1]):
    o = json.loads(line)
    if o.get("src_ip") in ours:
        n += 1
        ok += o.get("icrc_ok") is True and "error" not in o
        imm += o.get("opcode") == 0x65
print(n, ok, imm)
EOF
)
read -r n_ours ok_ours imm_ours <<<"${ours:-0 0 0}"
if [ $icrc_ok = 1 ] && [ "$n_ours" -ge 50 ] && [ "$n_ours" = "$ok_ours" ] && [ "$imm_ours" -ge 20 ]; then
    pass icrc_bridge "$(tail -n 1 "$W/bridge.check" | sed 's/^[^:]*: //'); ipoibctl decode: $ok_ours of $n_ours frames from our peer with a valid ICRC, $imm_ours with immediate data"
else
    fail icrc_bridge "$(tr '\n' ' ' <"$W/bridge.check"); ipoibctl decode: $ok_ours of $n_ours frames from our peer valid, $imm_ours with immediate"
fi
[ $RA = 0 ] && [ $RB = 0 ] || echo "note: boot.sh exit a=$RA b=$RB"
[ $FAILED = 0 ]
