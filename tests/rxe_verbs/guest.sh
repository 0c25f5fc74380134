#!/bin/bash
# Runs inside an rxe-vm guest (as /extra/run.sh): ipoibd with the verbs
# provider on the guest's kernel soft-RoCE device rxe0. IPOIB_ROLE picks
# what this guest does:
#   recv  full member of GROUP; waits until a peer's unicast flow, multicast
#         flow and pings arrived, then stops and checks its leaves
#   send  once the receiver is up: a unicast flow, a multicast flow to GROUP
#         (send-only join on first use) and pings to PEER_IPOIB
#   pktgen-sink  `ipoibd pktgen --sink`: leaves its QPN and GID on the
#         host's board (IPOIB_BOARD=host:port) and measures what arrives
#   pktgen-gen   reads the sink's QPN and GID from the board and runs
#         `ipoibd pktgen` to PEER_IPOIB (PKTGEN_ARGS: count, rate, size,
#         more --to); PKTGEN_GROUPS and PKTGEN_SENDONLY (comma-separated)
#         are the interface's groups and sendonly lists in either pktgen
#         role, joined through rdma_cm and left at the end
#   bench-recv / bench-send  (benches/verbs_vs_perftest.sh) ib_send_bw -c UD
#         with BENCH_SIZE-byte messages, then a pktgen stream of the same UD
#         message size as fast as it goes into a pktgen sink
# With IPOIB_FLAP=1 the sender takes its link down and up mid-traffic: the
# port events flush every membership, the broadcast group and the send-only
# group are joined again and the flows resume.
# With IPOIB_QUEUES=2 the interface has two UD QPs on two lcores: the
# sender's unicast flow leaves through the first, its multicast flow
# through the second, and both lcores must have sent.
# Lines "IPOIB-TEST: ok|fail NAME detail" are what the host checks.
cd /extra || exit 2
ROLE=${IPOIB_ROLE:?}
GROUP=${IPOIB_GROUP:-239.1.2.3}
IP=$RXE_VM_IP
FLAG_UP=${IPOIB_FLAG_UP:-10.99.0.200}     # the receiver's "ipoibd is up" address
FLAG_DONE=${IPOIB_FLAG_DONE:-10.99.0.201} # the sender's "done" address
FLAG_ACK=${IPOIB_FLAG_ACK:-10.99.0.202}   # the receiver saw it: the sender may power off
SOCK=/tmp/ipoibd.sock
fails=0
mark() { echo "IPOIB-TEST: $*"; }
ok() { mark "ok $*"; }
bad() { mark "fail $*"; fails=$((fails + 1)); }

# A flag address answers (a TCP RST from the kernel) once its guest added it.
# It goes on lo: an address on eth0 would be a new GID of rxe0, and the GID
# change event flushes every multicast membership.
answers() { timeout 2 bash -c "exec 3<>/dev/tcp/$1/9" 2>&1 | grep -q refused; }
wait_for() {
    local n=0
    until answers "$1"; do
        n=$((n + 1))
        [ $n -lt "${2:-120}" ] || return 1
        sleep 1
    done
}
wait_line() { # FILE PATTERN SECONDS
    local n=0
    until grep -q "$2" "$1" 2>/dev/null; do
        n=$((n + 1))
        [ $n -lt $(($3 * 10)) ] || return 1
        sleep 0.1
    done
}

# The board: a line to the host's key/value server and its answer.
board() {
    local host=${IPOIB_BOARD%:*} port=${IPOIB_BOARD#*:} line=
    exec 3<>"/dev/tcp/$host/$port" || return 1
    echo "$*" >&3
    read -r -t 10 line <&3
    exec 3<&-
    echo "$line"
}
# board_get KEY SECONDS: the value once a peer put it.
board_get() {
    local n=0 v
    while [ $n -lt "$2" ]; do
        v=$(board get "$1" 2>/dev/null)
        [ -n "$v" ] && { echo "$v"; return 0; }
        n=$((n + 1))
        sleep 1
    done
    return 1
}

QUEUES=${IPOIB_QUEUES:-1}
config() {
    local lcores="[0]"
    [ "$QUEUES" = 2 ] && lcores="[0, 1]"
    cat <<CONF
[dataplane]
lcores = $lcores
mempool_size = 4096
hugepages = "off"

[provider]
kind = "verbs"

[provider.verbs]
device = "$RXE_VM_DEV"
gid_index = $RXE_VM_GID_V4

[[interface]]
name = "ib0"
port = 1
mtu = $((RXE_VM_MTU - 4))
ipv4 = ["${IPOIB_ADDR:?}/24"]
queues = $QUEUES
CONF
    # A comma-separated list as a TOML array of strings.
    toml_list() { echo "[\"${1//,/\", \"}\"]"; }
    case $ROLE in
    pktgen-*)
        [ -n "${PKTGEN_GROUPS:-}" ] && echo "groups = $(toml_list "$PKTGEN_GROUPS")"
        [ -n "${PKTGEN_SENDONLY:-}" ] && echo "sendonly = $(toml_list "$PKTGEN_SENDONLY")"
        ;;
    esac
    case $ROLE in
    recv) echo "groups = [\"$GROUP\"]" ;;
    pktgen-gen | bench-send)
        # The sink as a static neighbour: pktgen resolves nothing itself.
        cat <<CONF

[[interface.neighbour]]
ip = "$PEER_IPOIB"
qpn = ${SINK_QPN:?}
gid = "${SINK_GID:?}"
CONF
        ;;
    send)
        cat <<CONF

[[traffic]]
from = "ib0"
to = "$PEER_IPOIB"
rate_pps = 2000
dst_port = 9000

[[traffic]]
from = "ib0"
to = "$GROUP"
rate_pps = 1000
dst_port = 9001
CONF
        ;;
    esac
}
case $ROLE in
pktgen-gen | bench-send) ;; # written once the sink's address is known
*)
    config >verbs.toml
    mark "config $ROLE $(tr '\n' ' ' <verbs.toml)"
    ;;
esac

# pktgen_sink SECONDS: a pktgen sink until every stream ended (at most
# SECONDS); its address goes on the board. Output in pktgen.out, sink.json.
pktgen_sink() {
    ./ipoibd pktgen --config verbs.toml --sink -q --duration "$1" --json sink.json >pktgen.out 2>&1 &
    local pid=$! addr
    if wait_line pktgen.out "pktgen sink: ready" 60; then
        # "pktgen sink: ready on 1 interface(s): ib0 qpn 0x11 gid ::ffff:10.99.0.2"
        addr=$(sed -n 's/^pktgen sink: ready .*: ib0 qpn \([0-9a-fx]*\) gid \([^ ,]*\).*/\1 \2/p' pktgen.out)
        mark "sink_address $addr"
        # Memberships are joined before "ready": one rdma_cm id each.
        ok "cm_ids_running $(cm_ids) rdma_cm ids while measuring"
        [ "$(board put sink "$addr")" = ok ] || bad "board the sink's address was not taken"
    else
        bad "sink_ready the sink never got ready: $(cat pktgen.out)"
    fi
    wait $pid
}

# pktgen_gen ARGS...: reads the sink's address from the board, then sends.
pktgen_gen() {
    local addr
    addr=$(board_get sink 150) || { bad "board no sink address within 150 s"; return 1; }
    SINK_QPN=${addr% *} SINK_GID=${addr#* } config >verbs.toml
    mark "config $ROLE $(tr '\n' ' ' <verbs.toml)"
    ./ipoibd pktgen --config verbs.toml -q --to "$PEER_IPOIB" --json gen.json "$@" >pktgen.out 2>&1
}

# The JSON report on one line (no spaces in its strings), for the host.
json_line() { [ -f "$2" ] && mark "json $1 $(tr -d ' \n' <"$2")"; }

cm_ids() { rdma res show cm_id 2>/dev/null | grep -c "ps UDP"; }

# After a pktgen run with groups: every membership left, no rdma_cm id.
pktgen_left() {
    [ -n "${PKTGEN_GROUPS:-}${PKTGEN_SENDONLY:-}" ] || return 0
    local line left
    line=$(grep -E "^pktgen: rdma_cm ib0: " pktgen.out)
    echo "$line" | grep -q "outstanding=0" && ok "pktgen_balanced $line" || bad "pktgen_balanced ${line:-no rdma_cm line}"
    left=$(cm_ids)
    [ "$left" = 0 ] && ok "pktgen_cm_ids_after no rdma_cm id left" || bad "pktgen_cm_ids_after $left rdma_cm ids left"
}

case $ROLE in
bench-recv)
    timeout 120 ib_send_bw -c UD -d "$RXE_VM_DEV" -x "$RXE_VM_GID_V4" -s "$BENCH_SIZE" \
        -D "${BENCH_SECONDS:-5}" >perftest.out 2>&1
    echo "----- perftest.out"; cat perftest.out
    mark "perftest_rx_mpps $(awk '$1 == '"$BENCH_SIZE"' && NF >= 5 {r = $5} END {print r}' perftest.out)"
    pktgen_sink 150
    rc=$?
    echo "----- pktgen.out"; cat pktgen.out; echo "----- end"
    json_line sink sink.json
    [ "$rc" = 0 ] || bad "pktgen_sink exited $rc"
    exit $((fails > 0))
    ;;
bench-send)
    n=0
    # The server may still be booting: retry while it does not listen.
    until timeout 120 ib_send_bw -c UD -d "$RXE_VM_DEV" -x "$RXE_VM_GID_V4" -s "$BENCH_SIZE" \
        -D "${BENCH_SECONDS:-5}" "$RXE_VM_PEER" >perftest.out 2>&1; do
        n=$((n + 1))
        [ $n -lt 60 ] || { bad "perftest never reached the server"; break; }
        sleep 1
    done
    echo "----- perftest.out"; cat perftest.out
    # The last row: #bytes #iterations BW-peak BW-average MsgRate[Mpps].
    mark "perftest_mpps $(awk '$1 == '"$BENCH_SIZE"' && NF >= 5 {r = $5} END {print r}' perftest.out)"
    # The same UD message size: the IP packet plus the 4-byte IPoIB header.
    pktgen_gen --size $((BENCH_SIZE - 4)) --duration "${BENCH_SECONDS:-5}"
    rc=$?
    echo "----- pktgen.out"; cat pktgen.out; echo "----- end"
    json_line gen gen.json
    [ "$rc" = 0 ] || bad "pktgen_gen exited $rc"
    exit $((fails > 0))
    ;;
pktgen-sink)
    pktgen_sink "${PKTGEN_MAX_SECONDS:-150}"
    rc=$?
    echo "----- pktgen.out"; cat pktgen.out; echo "----- end"
    json_line sink sink.json
    pktgen_left
    [ "$rc" = 0 ] && ok "sink_exit pktgen sink exited 0" || bad "sink_exit pktgen sink exited $rc"
    exit $((fails > 0))
    ;;
pktgen-gen)
    # shellcheck disable=SC2086 # PKTGEN_ARGS is a list of flags
    pktgen_gen $(echo "${PKTGEN_ARGS:-}" | tr ',' ' ')
    rc=$?
    echo "----- pktgen.out"; cat pktgen.out; echo "----- end"
    json_line gen gen.json
    pktgen_left
    [ "$rc" = 0 ] && ok "gen_exit pktgen generator exited 0" || bad "gen_exit pktgen generator exited $rc"
    exit $((fails > 0))
    ;;
recv)
    ./ipoibd --config verbs.toml --socket $SOCK --duration 0 >ipoibd.out 2>&1 &
    pid=$!
    if wait_line ipoibd.out "control: carrier on every interface" 60; then
        ok "carrier broadcast and $GROUP joined through rdma_cm"
    else
        bad "carrier no carrier within 60 s"
    fi
    ok "cm_ids_running $(cm_ids) rdma_cm ids while running"
    ip addr add "$FLAG_UP/32" dev lo
    if wait_for "$FLAG_DONE" 150; then ok "peer_done"; else bad "peer_done the sender never finished"; fi
    ip addr add "$FLAG_ACK/32" dev lo
    timeout 20 ./ipoibctl stats --socket $SOCK >stats.out 2>&1
    timeout 20 ./ipoibctl groups --socket $SOCK >groups.out 2>&1
    timeout 20 ./ipoibctl neigh --socket $SOCK >neigh.out 2>&1
    kill -TERM $pid
    wait $pid
    rc=$?
    ;;
send)
    # A P_Key child needs its P_Key in the port's table; rxe's holds only
    # 0xFFFF: one line naming what is there, status 2.
    { config; printf '\n[[interface]]\nname = "ib0.8001"\nparent = "ib0"\npkey = 0x8001\n'; } >child.toml
    ./ipoibd --config child.toml --no-socket --duration 0.1 >child.out 2>&1
    rc=$?
    want="pkey 0x8001 is not in the P_Key table of $RXE_VM_DEV port 1, which has 0xffff (index 0)"
    if [ $rc = 2 ] && grep -qF "$want" child.out; then
        ok "child_pkey_missing $(grep -F "$want" child.out)"
    else
        bad "child_pkey_missing status $rc: $(tail -n 3 child.out | tr '\n' ' ')"
    fi
    if wait_for "$FLAG_UP" 120; then ok "peer_up"; else bad "peer_up the receiver never came up"; fi
    ./ipoibd --config verbs.toml --socket $SOCK --duration "${IPOIB_SECONDS:-6}" \
        --ping "$PEER_IPOIB" >ipoibd.out 2>&1 &
    pid=$!
    wait_line ipoibd.out "control: carrier on every interface" 60 || bad "carrier no carrier within 60 s"
    sleep 3
    ok "cm_ids_running $(cm_ids) rdma_cm ids while running"
    if [ "${IPOIB_FLAP:-0}" = 1 ]; then
        timeout 20 ./ipoibctl stats --socket $SOCK >before.out 2>&1
        ip link set eth0 down
        sleep 1
        ip link set eth0 up
        # Traffic resumes: the counter moves again once carrier is back.
        tx0=$(awk '$1 == "tx_good_packets" {print $2; exit}' before.out)
        n=0 moved=0
        while [ $n -lt 200 ]; do
            timeout 20 ./ipoibctl stats --socket $SOCK >after.out 2>&1
            tx1=$(awk '$1 == "tx_good_packets" {print $2; exit}' after.out)
            if [ "${tx1:-0}" -gt $((${tx0:-0} + 200)) ] && timeout 20 ./ipoibctl groups --socket $SOCK | grep -q "carrier up"; then
                moved=1
                break
            fi
            sleep 0.1
            n=$((n + 1))
        done
        [ $moved = 1 ] && ok "flap traffic resumed after the link came back (tx $tx0 -> $tx1)" \
            || bad "flap traffic did not resume (tx $tx0 -> ${tx1:-none})"
    fi
    timeout 20 ./ipoibctl stats --socket $SOCK >stats.out 2>&1
    timeout 20 ./ipoibctl groups --socket $SOCK >groups.out 2>&1
    timeout 20 ./ipoibctl neigh --socket $SOCK >neigh.out 2>&1
    if [ "$QUEUES" = 2 ]; then
        # The per-lcore table is the second tx_good_packets row.
        per=$(awk '$1 == "tx_good_packets" {n++; if (n == 2) {print $2, $3; exit}}' stats.out)
        set -- $per
        [ "${1:-0}" -gt 100 ] && [ "${2:-0}" -gt 100 ] \
            && ok "queues both lcores sent (lcore0 $1, lcore1 $2)" \
            || bad "queues an lcore sent nothing (lcore0 ${1:-none}, lcore1 ${2:-none})"
        timeout 20 ./ipoibctl status --socket $SOCK >status.out 2>&1
    fi
    # A daemon that does not stop is a failure: show where its threads wait.
    n=0
    while kill -0 $pid 2>/dev/null && [ $n -lt $(((${IPOIB_SECONDS:-6} + 60) * 10)) ]; do
        sleep 0.1
        n=$((n + 1))
    done
    if kill -0 $pid 2>/dev/null; then
        bad "stop ipoibd did not stop: $(cat /proc/loadavg)"
        for t in /proc/$pid/task/*; do
            echo "thread $(cat $t/comm) $(cut -d' ' -f3,14,15 $t/stat): $(tr '\n' ' ' <$t/stack 2>/dev/null)"
        done
        kill -KILL $pid
    fi
    wait $pid
    rc=$?
    ip addr add "$FLAG_DONE/32" dev lo
    wait_for "$FLAG_ACK" 60 || bad "peer_ack the receiver did not see this guest finish"
    ;;
*)
    bad "role unknown role $ROLE"
    exit 2
    ;;
esac
for f in ipoibd.out stats.out groups.out neigh.out; do
    echo "----- $f"
    cat $f
done
echo "----- end"
[ "$rc" = 0 ] && ok "exit ipoibd exited 0" || bad "exit ipoibd exited $rc"
left=$(cm_ids)
[ "$left" = 0 ] && ok "cm_ids_after no rdma_cm id left" || bad "cm_ids_after $left rdma_cm ids left"
grep -E "^rdma_cm ib0: " ipoibd.out | grep -q "outstanding=0" \
    && ok "balanced $(grep -E '^rdma_cm ib0: ' ipoibd.out)" \
    || bad "balanced $(grep -E '^rdma_cm ib0: ' ipoibd.out)"
grep -q "(no leak)" ipoibd.out && ok "no_leak" || bad "no_leak $(grep '^mempool' ipoibd.out)"
if [ "${IPOIB_FLAP:-0}" = 1 ]; then
    f=$(sed -n 's/^port events: \([0-9]*\) flush.*/\1/p' ipoibd.out)
    [ "${f:-0}" -ge 2 ] && ok "port_events ${f} flushes (link down, link up)" \
        || bad "port_events ${f:-no} flushes after the link went down and up"
fi
exit $((fails > 0))
