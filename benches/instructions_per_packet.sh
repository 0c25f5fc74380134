#!/usr/bin/env bash
# Instructions per packet of the null-provider datapath for 64-byte IPv4/UDP
# (TX ring → IPoIB header → neighbour/MGID lookup → post burst → poll →
# decapsulate → deliver, stats per burst), counted by callgrind, in two modes:
#   forward  — a fixed set of packets goes round TX → loopback → RX → TX
#              (testpmd io forwarding): the datapath alone;
#   generate — traffic sources allocate and fill every packet (64-byte copy)
#              and RX frees it: the datapath plus packet generation.
#
# The measurement program runs twice with different packet counts; the
# difference of the two instruction totals over the difference of the packet
# counts cancels process start-up, pool set-up and warm-up.
#
# Prints `name: value` lines; the last one is `instructions_per_packet: N`,
# forward mode, unicast to a neighbour. Goal: <= 80.
#
# Env: IPP_SMALL / IPP_LARGE packet counts (default 200000 / 1200000),
#      IPP_RUNS mode:destination pairs measured (default: every pair, ending
#      with forward:unicast, the headline).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v valgrind >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "valgrind missing: installing it" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y valgrind >/dev/null ||
            { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y valgrind >/dev/null; }
    else
        echo "instructions_per_packet.sh: valgrind is not installed; install it (apt-get install valgrind) and rerun" >&2
        exit 1
    fi
fi

small=${IPP_SMALL:-200000}
large=${IPP_LARGE:-1200000}
runs=${IPP_RUNS:-"generate:multicast generate:mixed generate:unicast forward:multicast forward:mixed forward:unicast"}
target_dir=${CARGO_TARGET_DIR:-target}

# The release profile keeps line-level debug info, which callgrind reports use.
cargo build --quiet --release -p ipoib-dataplane --example datapath_pps
bin="$target_dir/release/examples/datapath_pps"

lcore_fn='ipoib_dataplane::lcore::Lcore<*>::poll_once'
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Runs one measurement; prints "instructions packets". A fourth argument
# counts only inside that function (callgrind --toggle-collect).
measure() {
    local mode=$1 dest=$2 packets=$3 only=${4:-}
    local tag="$mode.$dest.$packets${only:+.only}"
    local collect=()
    [ -n "$only" ] && collect=(--collect-atstart=no "--toggle-collect=$only")
    valgrind --tool=callgrind "${collect[@]}" --callgrind-out-file="$work/cg.$tag" \
        "$bin" --mode "$mode" --dest "$dest" --packets "$packets" --warmup 50000 \
        >"$work/run.$tag" 2>"$work/vg.$tag" || {
        echo "instructions_per_packet.sh: measurement run failed:" >&2
        cat "$work/vg.$tag" "$work/run.$tag" >&2
        exit 1
    }
    local ir sent
    ir=$(awk '/^(summary|totals):/ { print $2; exit }' "$work/cg.$tag")
    sent=$(awk '/^packets:/ { print $2 }' "$work/run.$tag")
    echo "$ir $sent"
}

for run in $runs; do
    mode=${run%%:*}
    dest=${run#*:}
    read -r ir1 n1 < <(measure "$mode" "$dest" "$small")
    read -r ir2 n2 < <(measure "$mode" "$dest" "$large")
    ipp=$(awk -v a="$ir1" -v b="$ir2" -v m="$n1" -v n="$n2" 'BEGIN { printf "%.1f", (b - a) / (n - m) }')
    # The same without the measurement harness: only the lcore's poll loop.
    read -r lr1 ln1 < <(measure "$mode" "$dest" "$small" "$lcore_fn")
    read -r lr2 ln2 < <(measure "$mode" "$dest" "$large" "$lcore_fn")
    lpp=$(awk -v a="$lr1" -v b="$lr2" -v m="$ln1" -v n="$ln2" 'BEGIN { printf "%.1f", (b - a) / (n - m) }')
    echo "instructions_per_packet_lcore_${mode}_${dest}: $lpp"
    echo "instructions_per_packet_${mode}_${dest}: $ipp"
    last=$ipp
done
echo "instructions_per_packet: $last"
