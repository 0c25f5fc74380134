#!/usr/bin/env bash
# Delivered packets per second between two network namespaces joined by a
# veth pair, in the same run, at 64 and 1400 bytes of payload:
#   rocev2      the rocev2 provider (rocev2_peer blast/sink): UDP GSO sends,
#               UDP GRO receives, every message's ICRC checked at the receiver
#   iperf3      `iperf3 -u -b 0 -l SIZE`, delivered (sent minus lost), not sent
#   udp_ceiling a minimal UDP GSO/GRO blaster with no RoCE processing at all
#               (udp_blaster): what the kernel path allows
# Prints `name: value` lines and last the headline. Goals: ratio_vs_iperf3_64
# >= 10, ratio_vs_iperf3_1400 >= 5, fraction_of_udp_ceiling_* >= 0.5. Each
# figure is the best of ROUNDS runs (default 2) of SECS seconds (default 2).
# Needs root (namespaces) and iperf3; compare figures within one run only.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "skipped: needs root (network namespaces)"; exit 0; }
command -v iperf3 >/dev/null || { echo "skipped: iperf3 is not installed"; exit 0; }
SECS=${SECS:-2}
ROUNDS=${ROUNDS:-2}

cargo build --release -q -p ipoib-dataplane --example rocev2_peer --example udp_blaster
T="${CARGO_TARGET_DIR:-target}/release/examples"

NS=rvi$$
A=10.77.0.1 B=10.77.0.2
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    ip netns del "${NS}a" 2>/dev/null || true
    ip netns del "${NS}b" 2>/dev/null || true
    rm -rf "$W"
}
W=$(mktemp -d)
trap cleanup EXIT
ip netns add "${NS}a"
ip netns add "${NS}b"
ip link add eth0 netns "${NS}a" type veth peer name eth0 netns "${NS}b"
ip -n "${NS}a" addr add $A/24 dev eth0
ip -n "${NS}b" addr add $B/24 dev eth0
for n in a b; do ip -n "${NS}$n" link set eth0 up; ip -n "${NS}$n" link set lo up; done

# Waits until FILE has a line matching REGEX (10 s at most).
wait_for() {
    local end=$((SECONDS + 10))
    until grep -q "$2" "$1" 2>/dev/null; do
        [ $SECONDS -lt $end ] || { echo "timed out waiting for $2 in $1" >&2; cat "$1" >&2; exit 1; }
        sleep 0.05
    done
}
calc() { awk "BEGIN { print $1 }"; }
mpps_of() { sed -n 's/.*= \([0-9.]*\) Mpps.*/\1/p' "$1"; }
best() { printf '%s\n' "$@" | sort -g | tail -n 1; }

rocev2() {
    local size=$1 out=$W/sink.out
    ip netns exec "${NS}b" "$T/rocev2_peer" sink --local $B --qpn 0x22 --secs "$SECS" --gro 1 >"$out" 2>&1 &
    local sink=$!; PIDS+=("$sink")
    wait_for "$out" ready
    ip netns exec "${NS}a" "$T/rocev2_peer" blast --local $A --qpn 0x11 --to $B --to-qpn 0x22 \
        --size "$size" --secs "$(calc "$SECS + 1.5")" --gso 1 >"$W/blast.out" 2>&1
    wait "$sink"
    grep -q 'bad_icrc 0 drops 0' "$out" || { echo "rocev2 receiver dropped messages: $(cat "$out")" >&2; exit 1; }
    mpps_of "$out"
}

ceiling() {
    local size=$1 out=$W/urecv.out
    ip netns exec "${NS}b" "$T/udp_blaster" recv --bind $B:5555 --size "$size" --secs "$SECS" >"$out" 2>&1 &
    local r=$!; PIDS+=("$r")
    wait_for "$out" ready
    ip netns exec "${NS}a" "$T/udp_blaster" send --from $A --to $B:5555 --size "$size" \
        --secs "$(calc "$SECS + 1.5")" >/dev/null
    wait "$r"
    mpps_of "$out"
}

iperf() {
    local size=$1
    ip netns exec "${NS}b" iperf3 -s -1 -p 5201 >/dev/null 2>&1 &
    local s=$!; PIDS+=("$s")
    local end=$((SECONDS + 10))
    until ip netns exec "${NS}b" ss -ltn 2>/dev/null | grep -q ':5201 '; do
        [ $SECONDS -lt $end ] || { echo "iperf3 server did not start" >&2; exit 1; }
        sleep 0.05
    done
    ip netns exec "${NS}a" iperf3 -u -b 0 -l "$size" -t "$SECS" -c $B -p 5201 -J >"$W/iperf.json"
    wait "$s" || true
    python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))["end"]["sum"]
print("%.6f" % ((s["packets"] - s["lost_packets"]) / s["seconds"] / 1e6))' "$W/iperf.json"
}

for size in 64 1400; do
    r=() i=() c=()
    for _ in $(seq "$ROUNDS"); do
        r+=("$(rocev2 "$size")")
        i+=("$(iperf "$size")")
        c+=("$(ceiling "$size")")
    done
    R=$(best "${r[@]}") I=$(best "${i[@]}") C=$(best "${c[@]}")
    printf 'rocev2_mpps_%s: %.3f\n' "$size" "$R"
    printf 'rocev2_gbps_%s: %.2f\n' "$size" "$(calc "$R * $size * 8 / 1000")"
    printf 'iperf3_mpps_%s: %.3f\n' "$size" "$I"
    printf 'iperf3_gbps_%s: %.2f\n' "$size" "$(calc "$I * $size * 8 / 1000")"
    printf 'udp_ceiling_mpps_%s: %.3f\n' "$size" "$C"
    printf 'udp_ceiling_gbps_%s: %.2f\n' "$size" "$(calc "$C * $size * 8 / 1000")"
    eval "R$size=$R I$size=$I C$size=$C"
done
ratio() { calc "$1 / $2"; }
printf 'fraction_of_udp_ceiling_64: %.2f\n' "$(ratio "$R64" "$C64")"
printf 'fraction_of_udp_ceiling_1400: %.2f\n' "$(ratio "$R1400" "$C1400")"
printf 'ratio_vs_iperf3_1400: %.1f\n' "$(ratio "$R1400" "$I1400")"
printf 'ratio_vs_iperf3_64: %.1f\n' "$(ratio "$R64" "$I64")"
