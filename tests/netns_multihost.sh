#!/usr/bin/env bash
# Four hosts (network namespaces a, b, c, d) on a bridge with IGMP snooping,
# each running `ipoibd` with the rocev2 provider, a control socket and a
# capture (--pcap). Flows: a -> b -> c -> a unicast UDP, a -> 239.5.5.5 as a
# send-only sender, c -> 255.255.255.255 (broadcast); each host pings the
# next. d joins late: it starts once the others run, with 239.5.5.5 in its
# configured groups, a flow to b and a ping to a. Checked, always by
# polling ipoibctl, the bridge or files against a deadline:
#   - ARP resolves every flow's neighbour; unicast counters grow;
#   - b and c join 239.5.5.5 with `ipoibctl join` (seen in `bridge mdb`, the
#     send-only sender a is not), c leaves it again (gone from `bridge mdb`);
#   - the late joiner d: in `bridge mdb` for 239.5.5.5, receives a's group
#     traffic, resolves b and a, and b receives its flow;
#   - tshark decodes a bridge capture as RoCEv2/InfiniBand (UD SEND_ONLY,
#     the right destination QPs, Q_Key 0x0b1b, no malformed frame or error)
#     and the daemons' pcaps as IPoIB (received group and broadcast frames,
#     the send-only sender's frames to QP 0xffffff);
#   - 5% loss on c's link (netem, or nftables where the kernel has no
#     netem): the daemons keep answering, and b's sent minus c's received
#     unicast frames is exactly what the link dropped;
#   - c is killed and restarted on another QP: b learns the new address from
#     its announcement, traffic to and from c resumes;
#   - every daemon exits 0 with no mbuf leaked and echo replies received.
# Namespaces and processes are always removed, also on failure. Skips
# (exit 0) with a reason without root, `ip`, `tc`, `bridge` or tshark.
#   tests/netns_multihost.sh         builds ipoibd and ipoibctl, then runs
#   IPOIBD=... IPOIBCTL=... tests/netns_multihost.sh
#   WAIT_LOG=/dev/stderr ...         also shows why each poll did not pass yet
set -euo pipefail
cd "$(dirname "$0")/.."

. tests/netns_lib.sh
netns_require
command -v tc >/dev/null || skip "the tc tool (iproute2) is missing"
command -v bridge >/dev/null || skip "the bridge tool (iproute2) is missing"
command -v tshark >/dev/null || skip "tshark is missing (apt-get install tshark)"
command -v python3 >/dev/null || skip "python3 is missing"

netns_bins ipoibd ipoibctl

netns_bridge "imh$$" 10.82.0 a b c d
# Ports drop a group at once on a leave. (No querier: its IGMPv2 queries
# would turn the hosts to IGMPv2, whose report suppression hides members.)
for h in "${HOSTS[@]}"; do ip -n "$BR" link set "p$h" type bridge_slave fastleave on; done

GROUP=239.5.5.5

# On failure, the bridge's and the daemons' view too.
lib_fail() { fail "$@"; }
eval "$(declare -f fail | sed 's/^fail/lib_fail/')"
fail() {
    echo "--- bridge mdb"
    bridge -n "$BR" mdb show || true
    for h in "${!DAEMON[@]}"; do
        echo "--- $h: groups, neigh, stats"
        ctl "$h" groups || true
        ctl "$h" neigh || true
        ctl "$h" stats || true
    done
    lib_fail "$@"
}

# config HOST_NUMBER PORT EXTRA [RATE] [IFACE_KEYS]: one rocev2 interface
# on QP 0x100 + PORT with IFACE_KEYS, a unicast flow to the next host of
# a -> b -> c -> a (d's to b; RATE, default 1000 pps), then EXTRA.
config() {
    local n=$1 next=$(($1 % 3 + 1))
    rocev2_conf 2048
    cat <<CONF
[[interface]]
name = "ib0"
port = $2
mtu = 1020
local_ip = "10.82.0.$n"
ipv4 = ["10.0.0.$n/24"]
${5:-}

[[traffic]]
from = "ib0"
to = "10.0.0.$next"
rate_pps = ${4:-1000}
$3
CONF
}
flow() {
    printf '\n[[traffic]]\nfrom = "ib0"\nto = "%s"\nrate_pps = %s\ndst_port = %s\n' "$1" "$2" "$3"
}
config 1 1 "$(flow $GROUP 200 5005)" >"$WORK/a.toml"
config 2 2 "" >"$WORK/b.toml"
config 3 3 "$(flow 255.255.255.255 100 6006)" >"$WORK/c.toml"
config 3 9 "$(flow 255.255.255.255 100 6006)" >"$WORK/c2.toml"
config 4 4 "" 1000 "groups = [\"$GROUP\"]" >"$WORK/d.toml"

# start HOST CONFIG_NAME PING: a daemon until SIGTERM, with its socket and pcap.
start() {
    ip netns exec "${tag}$1" "$IPOIBD" --config "$WORK/$2.toml" --duration 0 \
        --socket "$WORK/$1.sock" --pcap "$WORK/$2.pcap" --ping "$3" \
        >"$WORK/$2.out" 2>&1 &
    DAEMON[$1]=$!
    PIDS+=($!)
}

ctl() {
    local h=$1
    shift
    "$IPOIBCTL" "$@" --socket "$WORK/$h.sock"
}

# json HOST PYTHON_EXPR CMD...: evaluates EXPR on `ipoibctl CMD --json` (as d).
json() {
    local h=$1 expr=$2
    shift 2
    ctl "$h" "$@" --json 2>/dev/null | python3 -c "import json,sys; d=json.load(sys.stdin); print($expr)"
}

# xstat HOST NAME: an ib0 counter.
xstat() {
    json "$1" "dict(d['interfaces'][0]['xstats'])['$2']" stats
}

carrier() { [ "$(json "$1" "d['interfaces'][0]['carrier']" status)" = True ]; }
# resolved HOST IP [HWADDR_PREFIX]
resolved() {
    json "$1" "[n['hwaddr'] for n in d['interfaces'][0]['neighbours'] if n['ip'] == '$2' and n['hwaddr']]" neigh \
        | grep -q "'${3:-}"
}
at_least() { [ "$(xstat "$1" "$2")" -ge "$3" ]; }
in_mdb() { bridge -n "$BR" mdb show | grep -Eq "port p$1 grp $2( |$)"; }
not_in_mdb() { ! in_mdb "$@"; }

start a a 10.0.0.2
start b b 10.0.0.3
start c c 10.0.0.1
for h in a b c; do
    wait_for "$h answers on its socket" 60 ctl "$h" status
    wait_for "$h has carrier (broadcast group joined over IGMP)" 60 carrier "$h"
done

# ARP and unicast.
wait_for "a resolves b" 30 resolved a 10.0.0.2
wait_for "b resolves c" 30 resolved b 10.0.0.3
wait_for "c resolves a" 30 resolved c 10.0.0.1
for h in a b c; do
    wait_for "$h receives its unicast flow" 30 at_least "$h" rx_good_packets 500
done
wait_for "the broadcast group in the bridge's mdb" 10 in_mdb a 239.255.255.255

# Multicast join and leave, visible to the bridge; a only sends to the group.
ctl b join ib0 $GROUP >/dev/null
ctl c join ib0 $GROUP >/dev/null
wait_for "b and c in the mdb for $GROUP" 20 eval "in_mdb b $GROUP && in_mdb c $GROUP"
not_in_mdb a $GROUP || fail "the send-only sender a joined $GROUP over IGMP"
mgid=$("$IPOIBCTL" mgid $GROUP)
wait_for "a's send-only membership of $GROUP" 20 eval \
    "json a \"[g['flags'] for i in d['interfaces'] for g in i['groups'] if g['mgid'] == '$mgid']\" groups | grep -q SENDONLY"
c_mc=$(xstat c rx_multicast_packets)
wait_for "c receives the send-only sender's group traffic" 20 at_least c rx_multicast_packets $((c_mc + 100))

# tshark on the wire: a's bridge port carries RoCEv2 UD to b (QP 0x102), to
# the group (0xffffff) and from c (to 0x101).
ip netns exec "$BR" timeout 60 tshark -i pa -c 400 -w "$WORK/bridge.pcap" -q >"$WORK/tshark.out" 2>&1 &
PIDS+=($!)
tpid=$!
wait_for "the bridge capture" 60 eval "! kill -0 $tpid"
tshark -r "$WORK/bridge.pcap" -T fields -e infiniband.bth.opcode -e infiniband.bth.destqp \
    -e infiniband.deth.q_key -e infiniband.deth.srcqp -Y infiniband 2>/dev/null >"$WORK/bth.txt"
python3 - "$WORK/bth.txt" <<'PY' || fail "tshark's InfiniBand fields"
import sys
rows = [l.split("\t") for l in open(sys.argv[1]) if l.strip()]
assert len(rows) >= 100, f"only {len(rows)} RoCE frames"
ops = {r[0] for r in rows}
assert ops == {"100"}, f"opcodes {ops}"
qkeys = {int(r[2], 0) for r in rows}
assert qkeys == {0x0B1B}, f"Q_Keys {qkeys}"
dest = {int(r[1], 0) for r in rows}
assert dest <= {0x101, 0x102, 0xFFFFFF}, f"destination QPs {sorted(map(hex, dest))}"
assert {0x102, 0xFFFFFF} <= dest, f"destination QPs {sorted(map(hex, dest))}"
src = {int(r[3], 0) for r in rows}
assert src <= {0x101, 0x103}, f"source QPs {sorted(map(hex, src))}"
print(f"ok: tshark decodes {len(rows)} RoCEv2 UD frames: destination QPs "
      f"{sorted(map(hex, dest))}, Q_Key 0x0b1b")
PY
bad=$(tshark -r "$WORK/bridge.pcap" -Y "_ws.malformed || _ws.expert.severity >= error" 2>/dev/null | wc -l)
[ "$bad" = 0 ] || fail "$bad malformed or erroneous frames in the bridge capture"

ctl c leave ib0 $GROUP >/dev/null
wait_for "c gone from the mdb for $GROUP, b still in" 20 eval "not_in_mdb c $GROUP && in_mdb b $GROUP"
echo "ok: c left $GROUP"

# d joins late, a full member of the group from its config.
start d d 10.0.0.1
wait_for "d answers on its socket" 60 ctl d status
wait_for "d has carrier" 60 carrier d
wait_for "d in the mdb for $GROUP" 20 in_mdb d $GROUP
wait_for "d receives the send-only sender's group traffic" 30 at_least d rx_multicast_packets 100
wait_for "d resolves b" 30 resolved d 10.0.0.2
wait_for "b resolves d" 30 resolved b 10.0.0.4
wait_for "d resolves a (its ping)" 30 resolved d 10.0.0.1
echo "ok: the late joiner d receives $GROUP and reaches a and b"

# 5% loss of b's frames on c's link (b -> c unicast): nothing hangs, and what b sent
# minus what c received is exactly what the link dropped. b's flow slows to
# 1 pps (a live reload; 0 would mean unpaced) around the lossy run, so the
# counters are read at rest.
b_rate() {
    config 2 2 "" "$1" >"$WORK/b.toml"
    ctl b reload >/dev/null
}
# b's unicast frames sent and c's received, read from both control sockets
# in one process; with "rest", once two readings 50 ms apart agree (within
# 30 s, else it fails).
uni() {
    python3 - "$WORK/b.sock" "$WORK/c.sock" "${1:-}" <<'PY'
import json, socket, sys, time
def xstats(path):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    s.sendall(b'{"cmd":"stats"}\n')
    line = s.makefile().readline()
    return dict(json.loads(line)["data"]["interfaces"][0]["xstats"])
def sample():
    b, c = xstats(sys.argv[1]), xstats(sys.argv[2])
    return (b["tx_good_packets"] - b["tx_multicast_packets"],
            c["rx_good_packets"] - c["rx_multicast_packets"])
first = sample()
deadline = time.monotonic() + 30
while sys.argv[3] == "rest":
    time.sleep(0.05)  # the interval over which "still" is judged
    now = sample()
    if now == first:
        break
    if time.monotonic() > deadline:
        sys.exit(1)
    first = now
print(*first)
PY
}
# c's kernel drops what arrives while its lcore is off the CPU and the
# socket buffer is full (a loaded machine): the drops column of c's
# unicast socket (10.82.0.3:4791) in /proc/net/udp.
sock_drops() {
    ip netns exec "${tag}c" cat /proc/net/udp \
        | awk '$2 == "0300520A:12B7" { n += $NF } END { print n + 0 }'
}
b_rate 1
loss_on c 5 10.82.0.2 || skip "neither netem nor nftables can drop frames here"
echo "ok: 5% loss on c's link with $LOSS"
read -r t0 r0 < <(uni rest) || fail "b's flow did not stay still"
d0=$(loss_drops) k0=$(sock_drops)
b_rate 1000
wait_for "b sends 3000 frames through the lossy link" 60 eval "[ \$(uni | cut -d' ' -f1) -ge $((t0 + 3000)) ]"
b_rate 1
read -r t1 r1 < <(uni rest) || fail "b's flow did not stay still"
d1=$(loss_drops) k1=$(sock_drops)
loss_off
b_rate 1000
python3 - "$((t1 - t0))" "$((r1 - r0))" "$((d1 - d0))" "$((k1 - k0))" <<'PY' || fail "loss counters"
import sys
sent, got, dropped, overflow = map(int, sys.argv[1:])
print(f"lossy link: b sent {sent}, c received {got}, the link dropped {dropped}, "
      f"c's socket buffer overflowed {overflow}")
assert 0.02 <= dropped / sent <= 0.10, "the loss rate is not near 5%"
# At rest the counts agree exactly, but for the odd frame b sends to a
# (an ARP reply) rather than to c.
lost = sent - got - dropped - overflow
assert 0 <= lost <= 3, f"{lost} frames lost unaccounted"
PY
echo "ok: 5% loss on c's link counted consistently"
wait_for "c receives b's flow at full rate again" 30 eval "[ \$(uni | cut -d' ' -f2) -ge $((r1 + 500)) ]"

# c dies and comes back on QP 0x109: b learns it from the announcement.
kill -KILL "${DAEMON[c]}"
wait "${DAEMON[c]}" 2>/dev/null || true
unset 'DAEMON[c]'
a_rx=$(xstat a rx_good_packets)
start c c2 10.0.0.1
wait_for "c answers again" 60 ctl c status
wait_for "b re-resolves c on QP 0x109" 30 resolved b 10.0.0.3 00:00:01:09
wait_for "c receives b's flow again" 30 at_least c rx_good_packets 500
wait_for "a receives c's flow again" 30 at_least a rx_good_packets $((a_rx + 500))

# Stop every daemon; each exits 0 with its mbufs back and pings answered.
stop_daemons a b c d
for out in a b c2 d; do
    f="$WORK/$out.out"
    grep -q "(no leak)" "$f" || fail "$out: mbufs leaked or no pool line"
    grep -Eq "^ping [0-9.]+ from ib0: [0-9]+ sent, [1-9][0-9]* received" "$f" \
        || fail "$out: no echo replies"
    grep -E "^capture: |^ping " "$f" | sed "s/^/$out: /"
done

# The daemons' captures decode as IPoIB: b received the group's and the
# broadcast flow's frames, a sent the group's to QP 0xffffff.
for p in a b c2 d; do
    bad=$(tshark -r "$WORK/$p.pcap" -Y "_ws.malformed || _ws.expert.severity >= error" 2>/dev/null | wc -l)
    [ "$bad" = 0 ] || fail "$bad malformed frames in $p's capture"
    protos=$(tshark -r "$WORK/$p.pcap" -T fields -e frame.protocols 2>/dev/null | sort | uniq -c)
    echo "$p.pcap:" $protos
    echo "$protos" | grep -qv " ipoib:" && fail "$p's capture has frames that are not IPoIB"
done
count() { tshark -r "$WORK/$1.pcap" -Y "$2" 2>/dev/null | wc -l; }
[ "$(count b "ipoib.grh && ip.dst == $GROUP && udp.dstport == 5005")" -gt 0 ] \
    || fail "b's capture has no received $GROUP frames"
[ "$(count b "ipoib.grh && ip.dst == 255.255.255.255 && udp.dstport == 6006")" -gt 0 ] \
    || fail "b's capture has no received broadcast frames"
[ "$(count a "ipoib.daddr.qpn == 0xffffff && ip.dst == $GROUP")" -gt 0 ] \
    || fail "a's capture has no frames sent to $GROUP"
[ "$(count a "arp")" -gt 0 ] || fail "a's capture has no ARP"
[ "$(count d "ipoib.grh && ip.dst == $GROUP && udp.dstport == 5005")" -gt 0 ] \
    || fail "d's capture has no received $GROUP frames"
echo "ipoibd over rocev2, four hosts in network namespaces: ok"
