#!/usr/bin/env bash
# Packets per second of ipoibd over the verbs provider against perftest's
# `ib_send_bw -c UD` on the same pair of kernel soft-RoCE (rxe) QEMU guests
# and the same UD message size. The guests' CPUs are emulated (TCG), so only
# the ratio means anything. Needs root (a namespace with taps).
#   benches/verbs_vs_perftest.sh             512-byte messages, 5 s each
#   BENCH_SIZE=256 BENCH_SECONDS=10 benches/verbs_vs_perftest.sh
# Prints perftest_rx_mpps, ipoibd_rx_mpps, then ratio_vs_ib_send_bw (goal >= 0.9).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "needs root (a network namespace with taps)" >&2; exit 2; }
RXE_VM=${RXE_VM:-$PWD/../shared/rxe-vm}
[ -x "$RXE_VM/boot.sh" ] || { echo "the rxe-vm harness is not at $RXE_VM" >&2; exit 2; }
SIZE=${BENCH_SIZE:-512}
SECONDS_EACH=${BENCH_SECONDS:-5}

WORK=$(mktemp -d)
NS="rxeb$$"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    bash "$RXE_VM/netns.sh" down "$NS" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap "exit 143" TERM INT

bash "$RXE_VM/build.sh" >"$WORK/build.out" 2>&1 || { cat "$WORK/build.out"; exit 1; }
cargo build --release -q --bin ipoibd --bin ipoibctl
DIR="${CARGO_TARGET_DIR:-target}/release"
mkdir -p "$WORK/x/extra"
for b in ipoibd ipoibctl; do
    cp "$DIR/$b" "$WORK/x/extra/"
    strip "$WORK/x/extra/$b" 2>/dev/null || true
done
cp tests/rxe_verbs/guest.sh "$WORK/x/extra/run.sh"
bash "$RXE_VM/mkcpio.sh" "$WORK/x" "$WORK/extra.cpio" >/dev/null
bash "$RXE_VM/netns.sh" up "$NS" 2 >/dev/null

boot() { # NAME IP TAP ROLE ENV...
    local name=$1 ip=$2 tap=$3 role=$4
    shift 4
    local envs=()
    for e in "$@"; do
        case $e in
        --peer=*) envs+=(--peer "${e#--peer=}") ;;
        *) envs+=(--env "$e") ;;
        esac
    done
    exec bash "$RXE_VM/boot.sh" --name "$name" --role exec --ip "$ip" --netns "$NS" --tap "$tap" \
        --extra-cpio "$WORK/extra.cpio" --env "IPOIB_ROLE=$role" "${envs[@]}" \
        --timeout 300 --log "$WORK/$name.log" >/dev/null 2>&1
}
common=("BENCH_SIZE=$SIZE" "BENCH_SECONDS=$SECONDS_EACH")
boot a 10.99.0.2 tap0 bench-recv IPOIB_ADDR=10.50.0.2 "${common[@]}" &
PIDS+=($!)
boot b 10.99.0.3 tap1 bench-send IPOIB_ADDR=10.50.0.3 PEER_IPOIB=10.50.0.2 "${common[@]}" \
    --peer=10.99.0.2 &
PIDS+=($!)
for p in "${PIDS[@]}"; do wait "$p" || true; done
PIDS=()

marker() { tr -d '\r' <"$WORK/$1.log" | sed -n "s/^IPOIB-TEST: $2 //p" | tail -n1; }
perf=$(marker a perftest_rx_mpps)
rx=$(marker a bench_rx)
if [ -z "$perf" ] || [ -z "$rx" ]; then
    tr -d '\r' <"$WORK/a.log" | tail -n 60
    tr -d '\r' <"$WORK/b.log" | tail -n 60
    echo "a measurement is missing (perftest: '${perf}', ipoibd: '${rx}')" >&2
    exit 1
fi
python3 - "$perf" "$rx" "$SECONDS_EACH" "$SIZE" <<'PY'
import sys
perf, rx, secs, size = float(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
ipoibd = rx / secs / 1e6
print(f"message_bytes: {size}")
print(f"perftest_rx_mpps: {perf:.4f}")
print(f"ipoibd_rx_mpps: {ipoibd:.4f}")
print(f"ratio_vs_ib_send_bw: {ipoibd / perf:.2f}")
PY
