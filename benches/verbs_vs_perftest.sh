#!/usr/bin/env bash
# Packets per second of ipoibd over the verbs provider against perftest's
# `ib_send_bw -c UD` on the same pair of kernel soft-RoCE (rxe) QEMU guests
# and the same UD message size: perftest first, then `ipoibd pktgen` as fast
# as it goes from one guest into `ipoibd pktgen --sink` in the other (the
# sink's QPN and GID pass through a board on the host). The ipoibd figure is
# what the sink received over the generator's measured time (from its end
# packets). The guests' CPUs are emulated (TCG), so only the ratio means
# anything. Needs root (a namespace with taps).
#   benches/verbs_vs_perftest.sh             512-byte messages, 5 s each
#   BENCH_SIZE=256 BENCH_SECONDS=10 benches/verbs_vs_perftest.sh
# Prints perftest_rx_mpps, ipoibd_generated_mpps, ipoibd_posted_mpps,
# ipoibd_rx_mpps, ipoibd_lost, then ratio_vs_ib_send_bw (goal >= 0.9).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
. tests/rxe_lib.sh
why=$(rxe_unavailable)
[ -z "$why" ] || { echo "$why" >&2; exit 2; }
SIZE=${BENCH_SIZE:-512}
SECONDS_EACH=${BENCH_SECONDS:-5}

WORK=$(mktemp -d)
NS="rxeb$$"
PIDS=()
cleanup() {
    rxe_stop
    rm -rf "$WORK"
}
trap cleanup EXIT
trap "exit 143" TERM INT

rxe_build_image || exit 1
rxe_extra
rxe_netns_up 2
rxe_board_start 7412 || { cat "$WORK/board.out" >&2; exit 1; }
board=("${PIDS[@]}")

RXE_TIMEOUT=300
common=("BENCH_SIZE=$SIZE" "BENCH_SECONDS=$SECONDS_EACH" "IPOIB_BOARD=10.99.0.1:7412")
rxe_boot a 10.99.0.2 tap0 bench-recv IPOIB_ADDR=10.50.0.2 "${common[@]}" &
PIDS+=($!)
rxe_boot b 10.99.0.3 tap1 bench-send IPOIB_ADDR=10.50.0.3 PEER_IPOIB=10.50.0.2 "${common[@]}" \
    --peer=10.99.0.2 &
PIDS+=($!)
for p in "${PIDS[@]:${#board[@]}}"; do wait "$p" || true; done
PIDS=("${board[@]}")

perf=$(rxe_marker "$WORK/a.log" perftest_rx_mpps)
rxe_marker "$WORK/a.log" "json sink" >"$WORK/sink.json"
if [ -z "$perf" ] || [ ! -s "$WORK/sink.json" ]; then
    tr -d '\r' <"$WORK/a.log" | grep -v "^IPOIB-TEST: json " | tail -n 60
    tr -d '\r' <"$WORK/b.log" | grep -v "^IPOIB-TEST: json " | tail -n 60
    echo "a measurement is missing (perftest: '${perf}', pktgen sink report: $(wc -c <"$WORK/sink.json") bytes)" >&2
    exit 1
fi
rxe_marker "$WORK/b.log" "json gen" >"$WORK/gen.json"
python3 - "$perf" "$WORK/sink.json" "$WORK/gen.json" "$SIZE" <<'PY'
import json, sys
perf, size = float(sys.argv[1]), int(sys.argv[4])
sink = json.load(open(sys.argv[2]))
streams = sink["phases"][0]["streams"]
if not streams or not streams[0]["seconds"]:
    sys.exit("the sink saw no stream with its generator's report")
s = streams[0]
r = s["receivers"][0]
secs = s["seconds"]
rx = r["unique"] / secs / 1e6
print(f"message_bytes: {size}")
print(f"perftest_rx_mpps: {perf:.4f}")
# Generated: what pktgen produced; posted: what the device's send queue
# took (the rest is the generator's tx_provider_busy_drops).
print(f"ipoibd_generated_mpps: {s['achieved_pps'] / 1e6:.4f}")
try:
    gen = json.load(open(sys.argv[3]))
    x = gen["phases"][0]["ports"][0]["xstats"]
    print(f"ipoibd_posted_mpps: {x['tx_good_packets'] / secs / 1e6:.4f}")
except (OSError, ValueError, KeyError, IndexError):
    pass
print(f"ipoibd_rx_mpps: {rx:.4f}")
print(f"ipoibd_lost: {r['lost']}")
print(f"ratio_vs_ib_send_bw: {rx / perf:.2f}")
PY
