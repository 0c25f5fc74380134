#!/usr/bin/env bash
# Soak: ipoibd runs as a daemon on the soft fabric (three hosts, unicast and
# multicast flows, IPv4 and IPv6, send-only groups; two of the hosts with a
# P_Key 0x8001 child interface and a flow between them) with SA faults injected
# (delays, failures, resets, lost answers, early callbacks, SA restarts)
# while random port events (flushes of every level, on one interface or
# all), group joins and leaves, configuration reloads and queries hit it
# through ipoibctl and SIGHUP. It must end, on SIGTERM, with exit status 0,
# every mbuf back in the pool, the SA's books balanced (joins = leaves, no
# leave of an invalid membership), and the fault scenario after it clean.
#   tests/soak.sh                 30 seconds (CI)
#   SOAK=1 tests/soak.sh          10 minutes
#   SOAK_SECONDS=120 SOAK_SEED=7 tests/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${SOAK_SECONDS:-$([ "${SOAK:-0}" = 1 ] && echo 600 || echo 30)}"
seed="${SOAK_SEED:-$(date +%s)}"
faults="delay=0-20ms,fail=0.05,reset=0.02,noanswer=0.01,early=0.5,restart=0.002"

if [ -z "${IPOIBD:-}" ]; then
    cargo build --release -q --bin ipoibd --bin ipoibctl
    IPOIBD="${CARGO_TARGET_DIR:-target}/release/ipoibd"
    IPOIBCTL="${CARGO_TARGET_DIR:-target}/release/ipoibctl"
fi
IPOIBCTL="${IPOIBCTL:-$(dirname "$IPOIBD")/ipoibctl}"

WORK="$(mktemp -d)"
PID=""
cleanup() {
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then kill -KILL "$PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
sock="$WORK/ipoibd.sock"
ctl() { "$IPOIBCTL" "$@" --socket "$sock"; }

# config EXTRA_GROUP RATE: the extra group on ib2 and ib0's flow rate are what
# reloads change.
config() {
    cat <<CONF
[dataplane]
lcores = [0, 1]
mempool_size = 4096
hugepages = "off"

[[interface]]
name = "ib0"
port = 1
lcore = 0
ipv4 = ["10.0.0.1/24"]
ipv6 = ["fd00::1/64"]
groups = ["239.1.1.1"]
sendonly = ["239.2.2.2"]

[[interface]]
name = "ib1"
port = 2
lcore = 0
ipv4 = ["10.0.0.2/24"]
ipv6 = ["fd00::2/64"]
groups = ["239.1.1.1", "239.2.2.2"]

[[interface]]
name = "ib2"
port = 3
lcore = 1
ipv4 = ["10.0.0.3/24"]
ipv6 = ["fd00::3/64"]
groups = ["239.1.1.1", "239.2.2.2"$1]

[[interface]]
name = "ib0.8001"
parent = "ib0"
pkey = 0x8001
ipv4 = ["10.1.0.1/24"]
groups = ["239.1.1.1"]

[[interface]]
name = "ib2.8001"
parent = "ib2"
pkey = 0x8001
ipv4 = ["10.1.0.3/24"]
groups = ["239.1.1.1"]

[[traffic]]
from = "ib0"
to = "10.0.0.2"
rate_pps = $2

[[traffic]]
from = "ib0.8001"
to = "10.1.0.3"
rate_pps = 10000

[[traffic]]
from = "ib2.8001"
to = "239.1.1.1"
rate_pps = 2000

[[traffic]]
from = "ib1"
to = "fd00::3"
rate_pps = 20000

[[traffic]]
from = "ib2"
to = "10.0.0.1"
rate_pps = 20000

[[traffic]]
from = "ib1"
to = "239.1.1.1"
rate_pps = 5000

[[traffic]]
from = "ib0"
to = "239.2.2.2"
rate_pps = 5000

[control]
join_timeout_ms = 200

[run]
duration_s = 0.0
stats_interval_ms = 5000

[log]
level = "warn"
CONF
}
config "" 50000 >"$WORK/soak.toml"

echo "soak: ${seconds}s, seed $seed, SA faults $faults"
"$IPOIBD" --config "$WORK/soak.toml" --socket "$sock" --duration 0 \
    --sa-faults "$faults" --seed "$seed" --fault-rounds 100 \
    >"$WORK/out" 2>"$WORK/err" &
PID=$!

fail() {
    echo "soak: FAILED: $*" >&2
    echo "--- stdout (tail)" >&2; tail -40 "$WORK/out" >&2 || true
    echo "--- stderr (tail)" >&2; tail -20 "$WORK/err" >&2 || true
    exit 1
}

# Up: the socket answers (polled, with a deadline).
deadline=$((SECONDS + 60))
until ctl status >/dev/null 2>&1; do
    kill -0 "$PID" 2>/dev/null || fail "ipoibd exited during start-up"
    [ "$SECONDS" -lt "$deadline" ] || fail "the control socket never answered"
    sleep 0.1
done

RANDOM=$((seed % 32768))
ifaces=(ib0 ib1 ib2 ib0.8001 ib2.8001)
levels=(light normal heavy)
events=0 flushes=0 joins=0 reloads=0 errors=0
end=$((SECONDS + seconds))
while [ "$SECONDS" -lt "$end" ]; do
    kill -0 "$PID" 2>/dev/null || fail "ipoibd died after $events events"
    i=${ifaces[RANDOM % ${#ifaces[@]}]}
    case $((RANDOM % 10)) in
    0 | 1 | 2)
        # A port event on one interface, or on all.
        if [ $((RANDOM % 4)) = 0 ]; then
            ctl flush "${levels[RANDOM % 3]}" >/dev/null || errors=$((errors + 1))
        else
            ctl flush "${levels[RANDOM % 3]}" --interface "$i" >/dev/null || errors=$((errors + 1))
        fi
        flushes=$((flushes + 1))
        ;;
    3 | 4)
        # Join, then later leave, an extra group (leaving one not joined is
        # an answered error, not a failure).
        g="239.9.9.$((RANDOM % 4))"
        if [ $((RANDOM % 2)) = 0 ]; then ctl join "$i" "$g" >/dev/null || errors=$((errors + 1))
        else ctl leave "$i" "$g" >/dev/null 2>&1 || true; fi
        joins=$((joins + 1))
        ;;
    5)
        # A reload that adds or removes ib2's extra group and changes a rate.
        if [ $((RANDOM % 2)) = 0 ]; then config ', "239.7.7.7"' $((10000 + RANDOM)) >"$WORK/soak.toml"
        else config "" $((10000 + RANDOM)) >"$WORK/soak.toml"; fi
        kill -HUP "$PID"
        reloads=$((reloads + 1))
        ;;
    *)
        for q in status stats groups neigh paths; do
            ctl "$q" --json >/dev/null || errors=$((errors + 1))
        done
        ;;
    esac
    events=$((events + 1))
    # Pacing, not synchronisation: every request above waited for its answer.
    sleep 0.05
done

ctl stats >"$WORK/stats" || fail "stats at the end"
# The children's partition carried its unicast flow through it all.
ctl stats --json >"$WORK/stats.json" || fail "stats at the end"
child_rx=$(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
i = next(i for i in d["interfaces"] if i["interface"] == "ib2.8001")
print(dict(i["xstats"])["rx_good_packets"])' "$WORK/stats.json") || fail "no ib2.8001 in stats"
[ "$child_rx" -gt 0 ] || fail "ib2.8001 received nothing"
kill -TERM "$PID"
deadline=$((SECONDS + 120))
while kill -0 "$PID" 2>/dev/null; do
    [ "$SECONDS" -lt "$deadline" ] || fail "ipoibd did not stop within 120 s of SIGTERM"
    sleep 0.1
done
status=0
wait "$PID" || status=$?
PID=""

echo "soak: $events events ($flushes flushes, $joins joins/leaves, $reloads reloads), $errors refused requests, ib2.8001 received $child_rx"
grep -E '^(control|mempool|sa-faults scenario):' "$WORK/out" || true
[ "$status" = 0 ] || fail "exit status $status"
grep -q '(no leak)' "$WORK/out" || fail "mbufs leaked"
grep -q 'unbalanced=0 violations=0' "$WORK/out" || fail "the SA's books do not balance"
grep -Eq '^sa-faults scenario:.*unbalanced=0.*hung_flushes=0' "$WORK/out" || fail "fault scenario"
# Queries may be refused while the control thread is busy; flushes and
# joins must not fail outright more than rarely.
[ "$errors" -le $((events / 10)) ] || fail "$errors of $events requests refused"
[ ! -e "$sock" ] || fail "control socket left behind"
echo "soak: ok"
