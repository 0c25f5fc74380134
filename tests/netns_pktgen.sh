#!/usr/bin/env bash
# pktgen on the rocev2 provider across two hosts (network namespaces on a
# bridge): `ipoibd pktgen` generates in host a, `ipoibd pktgen --sink`
# measures in host b. A lossless run must arrive whole (received = sent,
# lost 0); then the network drops RoCEv2 packets at random on their way to
# b (tc netem on the bridge port where the kernel has it, else an nftables
# numgen rule with a counter at b's input; never at a's output, where a drop
# is an error the sender sees), and the sink's lost count must equal
# sent - received, and the data packets the network dropped. The sink's
# report carries the generator's tx figures (bytes, seconds, rates) from its
# end packets. With a 20 ms delay on the way to b only (netem, or a relay
# where the kernel has no sch_netem), the
# generator's round-trip latency (probes reflected by the sink, timed on
# a's clock) must land near 20 ms, and the clock offset it estimates shows
# the asymmetry (half the delay). A last run gives both interfaces
# `queues = 2` on two lcores: a's two streams leave through one queue
# each, b's queues share its QPN and address (the kernel picks one for a's
# packets), and each stream is still counted exactly once. Namespaces and processes are always
# removed, also on failure. Skips (exit 0) with a reason without root or `ip`.
#   tests/netns_pktgen.sh            builds ipoibd, then runs
#   IPOIBD=path/to/ipoibd tests/netns_pktgen.sh
set -euo pipefail
cd "$(dirname "$0")/.."

. tests/netns_lib.sh
netns_require
command -v python3 >/dev/null || skip "python3 reads the JSON reports"

netns_bins ipoibd

netns_bridge "pkg$$" 10.83.0 a b

# config HOST PEER: one rocev2 interface; the peer is a static neighbour
# (QPN 0x100 + port, GID its local_ip), as pktgen resolves nothing itself.
config() {
    rocev2_conf 8192
    cat <<CONF
[[interface]]
name = "ib0"
port = $1
mtu = 1020
local_ip = "10.83.0.$1"
ipv4 = ["10.0.0.$1/24"]

[[interface.neighbour]]
ip = "10.0.0.$2"
qpn = 0x10$2
gid = "::ffff:10.83.0.$2"
CONF
}
config 1 2 >"$WORK/a.toml"
config 2 1 >"$WORK/b.toml"
# The same hosts with two queues on two lcores.
for h in a b; do
    sed -e 's/^lcores = \[0\]/lcores = [0, 1]/' -e 's/^mtu = 1020$/mtu = 1020\nqueues = 2/' \
        "$WORK/$h.toml" >"$WORK/$h.q.toml"
done

COUNT=20000
# run NAME [GENERATOR FLAGS]: a sink in b, then a paced generator in a
# (configurations $WORK/{a,b}$RUN_CFG.toml); both must exit 0.
run() {
    local name=$1
    shift
    ip netns exec "${tag}b" "$IPOIBD" pktgen --config "$WORK/b${RUN_CFG:-}.toml" --sink -q \
        --duration 60 --json "$WORK/$name.sink.json" >"$WORK/$name.sink.out" 2>&1 &
    local sink=$!
    PIDS+=("$sink")
    local deadline=$((SECONDS + 20))
    until grep -q "sink: ready" "$WORK/$name.sink.out" 2>/dev/null; do
        kill -0 "$sink" 2>/dev/null || fail "$name: the sink exited early"
        [ $SECONDS -lt $deadline ] || fail "$name: the sink never got ready"
        sleep 0.05
    done
    ip netns exec "${tag}a" "$IPOIBD" pktgen --config "$WORK/a${RUN_CFG:-}.toml" -q \
        --to 10.0.0.2 --count "${RUN_COUNT:-$COUNT}" --rate-pps "${RUN_RATE:-100000}" "$@" \
        --json "$WORK/$name.gen.json" >"$WORK/$name.gen.out" 2>&1 \
        || fail "$name: the generator exited with status $?"
    wait "$sink" || fail "$name: the sink exited with status $?"
}

# check NAME DROPPED: the reports agree with each other and with the
# network's drop count (DROPPED; 0 for the lossless run).
check() {
    python3 - "$WORK/$1.gen.json" "$WORK/$1.sink.json" "$2" "$(rcvbuf_errors)" <<'PY'
import json, sys
gen, sink = (json.load(open(p)) for p in sys.argv[1:3])
dropped, kernel = int(sys.argv[3]), int(sys.argv[4])
g = gen["phases"][0]["streams"][0]
s = sink["phases"][0]["streams"]
assert len(s) == 1, f"the sink saw {len(s)} streams"
r = s[0]["receivers"][0]
sent, end_sent = g["tx_packets"], g["end_packets"]
ports = lambda doc, k: sum(p["xstats"][k] for p in doc["phases"][0]["ports"])
wire_sent, wire_rx = ports(gen, "tx_good_packets"), ports(sink, "rx_good_packets")
print(f"sent {sent} (+{end_sent} end), received {r['unique']} (+{r['end_packets']} end), "
      f"lost {r['lost']}, network dropped {dropped}, socket overflows {kernel}")
assert kernel == 0, "the sink's socket overflowed: not the network's loss"
assert r["announced"] == sent, f"announced {r['announced']} != sent {sent}"
assert r["lost"] == sent - r["unique"], "lost != sent - received"
assert r["rx_packets"] == r["unique"] and r["duplicates"] == 0
assert wire_sent - wire_rx == dropped, f"{wire_sent} on the wire, {wire_rx} arrived, {dropped} dropped"
assert r["lost"] == dropped - (end_sent - r["end_packets"]), "lost != data packets dropped"
if dropped == 0:
    assert r["unique"] == sent and r["lost"] == 0, "a lossless run lost packets"
else:
    assert r["lost"] > 0
# The sink reports the generator's tx figures from its end packets.
t = s[0]
assert t["tx_packets"] == sent and t["tx_bytes"] == g["tx_bytes"] > 0, \
    f"sink tx {t['tx_packets']}/{t['tx_bytes']} B, generator {sent}/{g['tx_bytes']} B"
assert t["target_pps"] == g["target_pps"], f"target {t['target_pps']} != {g['target_pps']}"
assert t["seconds"] > 0 and abs(t["seconds"] - g["seconds"]) <= 1e-6 * g["seconds"], \
    f"sink {t['seconds']} s, generator {g['seconds']} s"
assert abs(t["achieved_pps"] - g["achieved_pps"]) <= 1e-6 * g["achieved_pps"]
assert abs(t["achieved_gbps"] - g["achieved_gbps"]) <= 1e-6 * g["achieved_gbps"]
print(f"sink reports the sender's {t['achieved_pps']:.0f} pps ({t['achieved_gbps']:.4f} Gb/s) "
      f"over {t['seconds']:.3f} s, rate accuracy {t['rate_accuracy']:.4f}")
PY
}

# UDP receive-buffer overflows in host b (kernel drops that are not the network's).
rcvbuf_errors() {
    ip netns exec "${tag}b" awk '/^Udp:/ { if (h) { print $6; exit } h = 1 }' /proc/net/snmp
}

run lossless
check lossless 0 || fail "lossless run"

# delay_on MS: MS more on every frame on its way into b (b's frames out
# are not delayed): netem on the bridge's port to b where the kernel has
# sch_netem, else tests/netns_delay.py relaying frames between that port,
# taken off the bridge, and a new bridge port. Sets DELAY (how); delay_off
# restores the bridge.
delay_on() {
    if tc -n "$BR" qdisc add dev pb root netem delay "${1}ms" 2>/dev/null; then
        DELAY=netem
        return
    fi
    DELAY=relay
    ip -n "$BR" link set pb nomaster
    ip -n "$BR" link add db type veth peer name eb
    ip -n "$BR" link set eb master br0 up
    ip -n "$BR" link set db up promisc on
    ip -n "$BR" link set pb promisc on
    ip netns exec "$BR" python3 tests/netns_delay.py db pb "$1" >"$WORK/delay.out" 2>&1 &
    RELAY=$!
    PIDS+=("$RELAY")
    wait_for "the delay relay" 10 grep -q ready "$WORK/delay.out"
}
delay_off() {
    if [ "$DELAY" = netem ]; then
        tc -n "$BR" qdisc del dev pb root
        return
    fi
    kill "$RELAY"
    wait "$RELAY" || fail "the delay relay exited with status $?"
    ip -n "$BR" link del db
    ip -n "$BR" link set pb promisc off master br0
}

# Round trips: the sink in b reflects the generator's probes over rocev2
# through its neighbour table, and a times them on its own clock, with 20
# ms more on the way to b only: the round trip must be near 20 ms, and the
# offset estimated from the probes half the asymmetry (+10 ms). Both
# namespaces share one clock, so the sink's one-way figure is valid here
# and shows the delay too. At 10000 pps: the relay may be Python.
DELAY_MS=20
delay_on $DELAY_MS
RUN_COUNT=5000 RUN_RATE=10000 run rtt --latency rtt --probe-pps 2000
delay_off
echo "delay by $DELAY: $(cat "$WORK/delay.out" 2>/dev/null || echo netem)"
check rtt 0 || fail "round-trip run"
python3 - "$WORK/rtt.gen.json" "$WORK/rtt.sink.json" "$DELAY_MS" <<'PY' || fail "round-trip run"
import json, sys
gen, sink = (json.load(open(p)) for p in sys.argv[1:3])
delay = int(sys.argv[3]) * 1e6
g = gen["phases"][0]["streams"][0]
rtt = g["rtt"]
r = sink["phases"][0]["streams"][0]["receivers"][0]
probes, back = rtt["probes"], rtt["reflections"]
l, one = rtt["latency_ns"], r["latency_ns"]
off = rtt["clock_offset_ns"]
print(f"probes {probes} (arrived {r['probes']}), reflections {back}, lost {rtt['lost']}; "
      f"rtt min {l['min']/1e6:.3f} p50 {l['p50']/1e6:.3f} p99 {l['p99']/1e6:.3f} ms; "
      f"one-way min {one['min']/1e6:.3f} p50 {one['p50']/1e6:.3f} ms; offset {off/1e6:+.3f} ms")
assert probes > 0 and r["probes"] == probes, "every probe arrived, once, as data"
assert back == probes and rtt["lost"] == 0, "every probe came back"
assert r["unique"] == g["tx_packets"] and r["lost"] == 0, "probes disturb no accounting"
# A round trip holds its probe's one-way trip (one clock in namespaces;
# hdrhistogram keeps 3 digits).
assert l["min"] >= 0.999 * one["min"], "a round trip shorter than a one-way trip"
# Every frame is delayed by at least the delay; a loaded 2-core machine
# adds a little.
assert 0.999 * delay <= l["min"] <= l["p50"] <= delay + 30e6, f"rtt p50 {l['p50']} ns"
assert 0.999 * delay <= one["p50"] <= delay + 30e6, "one-way p50"
assert off is not None and abs(off - delay / 2) <= 5e6, f"offset {off} ns"
PY
# The generator's summary presents the round trip as the latency to trust
# (its sink is elsewhere); the sink's says what its one-way figure is.
grep -q "round trip (one clock: the latency to trust" "$WORK/rtt.gen.out" \
    || fail "the generator's summary does not present the round trip"
grep -q "one-way latency here is this host's clock" "$WORK/rtt.sink.out" \
    || fail "the sink's summary does not label its one-way latency"
echo "round trip over rocev2 with ${DELAY_MS} ms one way: ok"

# Two queues each side, two streams: one per generator queue, all exact.
RUN_CFG=.q run queues --to 10.0.0.2
python3 - "$WORK/queues.gen.json" "$WORK/queues.sink.json" "$COUNT" <<'PY' || fail "queues run"
import json, sys
gen, sink = (json.load(open(p)) for p in sys.argv[1:3])
count = int(sys.argv[3])
gs = gen["phases"][0]["streams"]
ss = {t["id"]: t for t in sink["phases"][0]["streams"]}
assert len(gs) == 2 and len(ss) == 2, f"{len(gs)} streams sent, {len(ss)} seen"
for g in gs:
    r = ss[g["id"]]["receivers"][0]
    assert g["tx_packets"] == count == r["announced"], f"stream {g['id']}: {g['tx_packets']} sent"
    assert r["unique"] == count and r["lost"] == 0 and r["duplicates"] == 0, f"stream {g['id']}: {r}"
gq = gen["phases"][0]["ports"][0]["queues"]
sq = sink["phases"][0]["ports"][0]["queues"]
assert [q["lcore"] for q in gq] == [0, 1] == [q["lcore"] for q in sq], f"queues {gq} {sq}"
# Each stream (and its end copies) left through its own queue.
end = gs[0]["end_packets"]
assert [q["tx_packets"] for q in gq] == [count + end] * 2, f"generator queues {gq}"
rx = sink["phases"][0]["ports"][0]["xstats"]["rx_good_packets"]
assert sum(q["rx_packets"] for q in sq) == rx == 2 * (count + end), f"sink queues {sq}, rx {rx}"
print(f"queues: generator queues sent {[q['tx_packets'] for q in gq]}, "
      f"sink queues received {[q['rx_packets'] for q in sq]}; both streams whole")
PY

# 10% loss between a and b: netem on the bridge's port to b where the
# kernel has it, else nftables at b's input.
if ! loss_on b 10; then
    echo "lossless run: ok"
    skip "lossy run: this kernel has no sch_netem and nft is missing (CI installs nftables)"
fi
run lossy
check lossy "$(loss_drops)" || fail "lossy run ($LOSS)"
echo "pktgen over rocev2 in two namespaces, lossless and with $LOSS loss: ok"
