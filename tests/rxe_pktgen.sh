#!/usr/bin/env bash
# `ipoibd pktgen` on the verbs provider against Linux's own soft-RoCE
# (rdma_rxe), in two QEMU guests on a bridge in a network namespace
# (../shared/rxe-vm): guest a runs `ipoibd pktgen --sink`, leaves its QPN
# and GID on a board on the host, guest b reads them and runs paced
# generators to a: a unicast stream, a stream to a group both are full
# members of and one to a group b joins send-only (each interface joins
# through rdma_cm before sending and leaves at the end: no rdma_cm id left,
# rdma_cm's books balanced). Both run two queues on two lcores: b's three
# streams leave through both queues, a counts on queue 0 (the QPN and the
# attach). The multicast streams arrive whole (received == sent, lost 0).
# The counts must be exact: the sink's announced count is
# what the generator sent, sent == received + lost, no duplicate, and what
# was lost is what the generator could not post (its device's send queue
# full for a second) plus what it posted and the sink did not receive, less the end
# copies that went missing; rxe sent every frame ipoibd posted; a
# latency histogram over every received packet; the sink reports the
# generator's tx figures (bytes, time, rate) from its end packets; no mbuf
# leaked on either side.
# Needs root (namespace, taps); skips with a reason where QEMU cannot run.
#   tests/rxe_pktgen.sh                 builds ipoibd, then runs
#   IPOIBD_DIR=target/release tests/rxe_pktgen.sh
#   RXE_PKTGEN_KEEP=1                   keeps the logs
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
. tests/rxe_lib.sh

skip() { echo "skipped: $*"; exit 0; }
why=$(rxe_unavailable)
[ -z "$why" ] || skip "$why"
command -v python3 >/dev/null || skip "python3 runs the board and reads the JSON reports"

WORK=$(mktemp -d)
NS="rxep$$"
PIDS=()
cleanup() {
    rxe_stop
    if [ "${RXE_PKTGEN_KEEP:-0}" = 1 ]; then echo "logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap "exit 143" TERM INT
fail() {
    echo "FAIL: $*"
    for f in "$WORK"/*.log "$WORK"/*.boot "$WORK"/board.out; do
        [ -f "$f" ] && { echo "--- $f"; tr -d '\r' <"$f" | grep -v "^IPOIB-TEST: json " | tail -n 80; }
    done
    exit 1
}

rxe_build_image || fail "rxe-vm build failed"
command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 is missing and could not be installed"
rxe_extra || fail "cannot build or pack ipoibd"
rxe_netns_up 2 || fail "cannot create namespace $NS"
BOARD_PORT=7411
rxe_board_start $BOARD_PORT || fail "the board never listened: $(cat "$WORK/board.out")"

COUNT=${RXE_PKTGEN_COUNT:-5000}
RATE=${RXE_PKTGEN_RATE:-1000}
G_FULL=239.1.2.4
G_SENDONLY=239.1.2.5
board=("${PIDS[@]}")
for attempt in 1 2; do
    start=$(date +%s)
    rxe_boot a 10.99.0.2 tap0 pktgen-sink IPOIB_ADDR=10.50.0.2 IPOIB_BOARD=10.99.0.1:$BOARD_PORT \
        IPOIB_QUEUES=2 PKTGEN_GROUPS=$G_FULL,$G_SENDONLY &
    PIDS+=($!)
    rxe_boot b 10.99.0.3 tap1 pktgen-gen IPOIB_ADDR=10.50.0.3 PEER_IPOIB=10.50.0.2 \
        IPOIB_BOARD=10.99.0.1:$BOARD_PORT IPOIB_QUEUES=2 PKTGEN_GROUPS=$G_FULL PKTGEN_SENDONLY=$G_SENDONLY \
        "PKTGEN_ARGS=--to,$G_FULL,--to,$G_SENDONLY,--count,$COUNT,--rate-pps,$RATE,--size,200" &
    PIDS+=($!)
    status=0
    for p in "${PIDS[@]:${#board[@]}}"; do wait "$p" || status=$?; done
    PIDS=("${board[@]}")
    echo "guests ran in $(($(date +%s) - start)) s"
    # A guest that never became ready (QEMU starved) says nothing about ipoibd.
    if rxe_booted a && rxe_booted b; then break; fi
    echo "a guest never became ready (attempt $attempt)"
done

for g in a b; do
    [ -f "$WORK/$g.log" ] || fail "no console log for $g"
    tr -d '\r' <"$WORK/$g.log" | { grep -E "^IPOIB-TEST: (ok|fail) " || true; } | sed "s/^IPOIB-TEST: /$g: /"
done
for g in a b; do
    if tr -d '\r' <"$WORK/$g.log" | grep "^IPOIB-TEST: fail " >/dev/null; then fail "guest $g reported a failure"; fi
done
[ "$status" = 0 ] || fail "a guest exited with status $status"

rxe_marker "$WORK/a.log" "json sink" >"$WORK/sink.json"
rxe_marker "$WORK/b.log" "json gen" >"$WORK/gen.json"
[ -s "$WORK/sink.json" ] || fail "the sink printed no JSON report"
[ -s "$WORK/gen.json" ] || fail "the generator printed no JSON report"
python3 - "$WORK/gen.json" "$WORK/sink.json" "$COUNT" \
    "$(rxe_counter "$WORK/b.log" sent_pkts)" "$(rxe_counter "$WORK/a.log" rcvd_pkts)" \
    "$G_FULL" "$G_SENDONLY" <<'PY' || fail "the reports do not add up"
import json, sys
gen, sink = (json.load(open(p)) for p in sys.argv[1:3])
count = int(sys.argv[3])
rxe_sent, rxe_rcvd = (int(x) if x else None for x in sys.argv[4:6])
groups = sys.argv[6:8]
assert gen["provider"] == sink["provider"] == "verbs"
for name, doc in (("generator", gen), ("sink", sink)):
    m = doc["mempool"]
    assert m["capacity"] == m["free_after_stop"], f"the {name} leaked mbufs: {m}"
gs = gen["phases"][0]["streams"]
ss = {t["id"]: t for t in sink["phases"][0]["streams"]}
assert [g["to"] for g in gs][1:] == groups, f"streams to {[g['to'] for g in gs]}"
assert len(ss) == len(gs), f"the sink saw {len(ss)} streams, the generator sent {len(gs)}"
ports = lambda doc, k: sum(p["xstats"][k] for p in doc["phases"][0]["ports"])
wire_sent, wire_rx = ports(gen, "tx_good_packets"), ports(sink, "rx_good_packets")
busy = ports(gen, "tx_provider_busy_drops")
sent_all = end_all = end_rx_all = lost_all = 0
for g in gs:
    t = ss[g["id"]]
    assert len(t["receivers"]) == 1, f"stream {g['id']}: receivers {t['receivers']}"
    r = t["receivers"][0]
    sent, end_sent = g["tx_packets"], g["end_packets"]
    print(f"stream {g['id']} to {g['to']}: sent {sent} (+{end_sent} end), received {r['unique']} "
          f"(+{r['end_packets']} end), lost {r['lost']}, duplicates {r['duplicates']}, "
          f"reordered {r['reordered']}")
    assert sent == count, f"the generator sent {sent}, not {count}"
    assert r["announced"] == sent, f"announced {r['announced']} != sent {sent}"
    assert r["unique"] + r["lost"] == sent, "sent != received + lost"
    assert r["rx_packets"] == r["unique"] and r["duplicates"] == 0
    if g["to"] in groups:
        # Joined before the first packet: nothing waits for a route.
        assert r["unique"] == sent and r["lost"] == 0, f"multicast stream to {g['to']} lost packets"
    l = r["latency_ns"]
    assert l["count"] == r["unique"] > 0, f"latency histogram of {l['count']} for {r['unique']} packets"
    assert l["min"] <= l["p50"] <= l["p99"] <= l["max"]
    # The generator's tx figures, from its end packets.
    assert t["tx_bytes"] == g["tx_bytes"] > 0 and t["target_pps"] == g["target_pps"]
    assert t["seconds"] > 0 and abs(t["seconds"] - g["seconds"]) <= 1e-6 * g["seconds"]
    sent_all += sent
    end_all += end_sent
    end_rx_all += r["end_packets"]
    lost_all += r["lost"]
print(f"ipoibd posted {wire_sent} (send queue full {busy}), received {wire_rx}; "
      f"rxe sent_pkts {rxe_sent}, rcvd_pkts {rxe_rcvd}")
# What the generator's interface could not post (a send queue that stayed
# full for a second, or at the stop) is lost before the wire, and counted.
assert wire_sent + busy == sent_all + end_all, f"posted {wire_sent} + {busy} busy, generated {sent_all} + {end_all}"
assert lost_all == wire_sent + busy - wire_rx - (end_all - end_rx_all), \
    "lost != data packets that were not posted or did not arrive"
if rxe_sent is not None:
    assert rxe_sent == wire_sent, f"rxe sent {rxe_sent} frames, ipoibd posted {wire_sent}"
# Two queues on two lcores each side: the generator's streams left through
# both; the sink received on queue 0, whose QPN peers address and which is
# attached to the groups.
gq = gen["phases"][0]["ports"][0]["queues"]
sq = sink["phases"][0]["ports"][0]["queues"]
assert [q["lcore"] for q in gq] == [0, 1] == [q["lcore"] for q in sq], f"queues {gq} {sq}"
assert all(q["tx_packets"] > 0 for q in gq), f"a generator queue sent nothing: {gq}"
assert sq[0]["rx_packets"] == wire_rx and sq[1]["rx_packets"] == 0, f"sink queues {sq}"
print(f"generator queues sent {[q['tx_packets'] for q in gq]}, sink queues received "
      f"{[q['rx_packets'] for q in sq]}")
t = ss[gs[0]["id"]]
l = t["receivers"][0]["latency_ns"]
print(f"sink: the sender's {t['achieved_pps']:.0f} pps over {t['seconds']:.2f} s "
      f"(rate accuracy {t['rate_accuracy']:.4f}), latency (one-way, two guests' clocks) "
      f"p50 {l['p50'] / 1e3:.0f} us p99 {l['p99'] / 1e3:.0f} us")
PY
echo "pktgen over verbs on kernel rxe in two guests: ok"
