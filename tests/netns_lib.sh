# Shared by the namespace tests (sourced, not run): root/iproute2 checks that
# skip with a reason, and hosts on a bridge with IGMP snooping that are always
# removed on exit, with their processes.

skip() { echo "skipped: $*"; exit 0; }

netns_require() {
    [ "$(id -u)" = 0 ] || skip "needs root (network namespaces)"
    command -v ip >/dev/null || skip "the ip tool (iproute2) is missing"
}

netns_cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    for h in "${HOSTS[@]}"; do ip netns del "${tag}$h" 2>/dev/null || true; done
    ip netns del "$BR" 2>/dev/null || true
    rm -rf "$WORK"
}

fail() { echo "FAIL: $*"; for f in "$WORK"/*.out; do echo "--- $f"; cat "$f"; done; exit 1; }

# netns_bridge TAG PREFIX HOST...: namespaces TAG+HOST, each with eth0 on
# bridge br0 (in namespace TAG+br) and address PREFIX.N/24, N counting from 1.
# Sets tag, BR, HOSTS, WORK and PIDS (background processes to stop on exit).
netns_bridge() {
    tag=$1
    local prefix=$2
    shift 2
    HOSTS=("$@")
    BR="${tag}br"
    WORK="$(mktemp -d)"
    PIDS=()
    trap netns_cleanup EXIT
    ip netns add "$BR"
    ip -n "$BR" link add br0 type bridge mcast_snooping 1
    ip -n "$BR" link set br0 up
    local i=1 h ns
    for h in "${HOSTS[@]}"; do
        ns="${tag}$h"
        ip netns add "$ns"
        ip link add "eth0" netns "$ns" type veth peer name "p$h" netns "$BR"
        ip -n "$BR" link set "p$h" master br0 up
        ip -n "$ns" addr add "$prefix.$i/24" dev eth0
        ip -n "$ns" link set eth0 up
        ip -n "$ns" link set lo up
        i=$((i + 1))
    done
}

# netns_bins BIN...: the release binaries the test drives (ipoibd, ipoibctl),
# built unless IPOIBD / IPOIBCTL already name them.
netns_bins() {
    local missing=() b var
    for b in "$@"; do
        var=$(tr '[:lower:]' '[:upper:]' <<<"$b")
        [ -n "${!var:-}" ] || missing+=(--bin "$b")
    done
    [ ${#missing[@]} = 0 ] || cargo build --release -q "${missing[@]}"
    for b in "$@"; do
        var=$(tr '[:lower:]' '[:upper:]' <<<"$b")
        [ -n "${!var:-}" ] || printf -v "$var" '%s' "${CARGO_TARGET_DIR:-target}/release/$b"
    done
}

# rocev2_conf MEMPOOL [ROCEV2_KEYS]: the [dataplane] and [provider] sections
# of a one-lcore rocev2 host (no hugepages); ROCEV2_KEYS (lines) go into
# [provider.rocev2]. The test appends its interfaces and flows.
rocev2_conf() {
    cat <<CONF
[dataplane]
lcores = [0]
mempool_size = $1
hugepages = "off"

[provider]
kind = "rocev2"

[provider.rocev2]
${2:-}
CONF
}

# Background daemons by host name (also in PIDS, for the clean-up);
# wait_for fails as soon as one has died.
declare -gA DAEMON=()

# wait_for WHAT SECONDS CMD...: polls CMD until it succeeds; fails at the
# deadline or when a daemon in DAEMON has exited. WAIT_LOG=/dev/stderr shows
# why each poll did not pass yet.
wait_for() {
    local what=$1 secs=$2 end=$((SECONDS + $2)) h
    shift 2
    until "$@" >/dev/null 2>"${WAIT_LOG:-/dev/null}"; do
        for h in "${!DAEMON[@]}"; do
            kill -0 "${DAEMON[$h]}" 2>/dev/null || fail "the daemon in $h exited waiting for $what"
        done
        [ "$SECONDS" -lt "$end" ] || fail "timed out after $secs s waiting for $what"
        sleep 0.05 # poll interval, not a synchronisation
    done
    echo "ok: $what"
}

# stop_daemons HOST...: SIGTERM, then each must exit 0 within 60 s.
stop_daemons() {
    local h end
    for h in "$@"; do kill -TERM "${DAEMON[$h]}"; done
    for h in "$@"; do
        end=$((SECONDS + 60))
        while kill -0 "${DAEMON[$h]}" 2>/dev/null; do
            [ "$SECONDS" -lt "$end" ] || fail "ipoibd in $h did not stop after SIGTERM"
            sleep 0.1 # poll interval
        done
        wait "${DAEMON[$h]}" || fail "ipoibd in $h exited with status $?"
        unset "DAEMON[$h]"
    done
}

# Random loss of RoCEv2 frames on their way into HOST (only those from
# FROM_IP when given): netem on its bridge port where the kernel has
# sch_netem (behind a prio qdisc whose u32 filter picks FROM_IP), else an
# nftables numgen rule at the host's input from eth0 (CI installs nftables;
# the host's own multicast looped back is not touched). Neither is an error
# the sender sees. loss_on HOST PERCENT [FROM_IP] sets LOSS (how);
# loss_drops prints the frames dropped so far; loss_off removes it.
loss_on() {
    LOSS_HOST=$1
    local dev="p$1" from=${3:-}
    if [ -z "$from" ] && tc -n "$BR" qdisc add dev "$dev" root handle 1: netem loss "$2%" 2>/dev/null; then
        LOSS=netem
    elif [ -n "$from" ] \
        && tc -n "$BR" qdisc add dev "$dev" root handle 1: prio bands 3 priomap 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 2>/dev/null \
        && { tc -n "$BR" qdisc add dev "$dev" parent 1:3 handle 30: netem loss "$2%" 2>/dev/null \
            && tc -n "$BR" filter add dev "$dev" parent 1: protocol ip u32 match ip src "$from/32" flowid 1:3 \
            || { tc -n "$BR" qdisc del dev "$dev" root; false; }; }; then
        LOSS=netem
    elif command -v nft >/dev/null && ip netns exec "${tag}$1" nft -f - 2>/dev/null <<NFT
table inet netns_loss {
    chain in {
        type filter hook input priority 0; policy accept;
        iifname "eth0" ${from:+ip saddr $from} udp dport 4791 numgen random mod 100 < $2 counter drop
    }
}
NFT
    then
        LOSS=nftables
    else
        return 1
    fi
}
loss_drops() {
    if [ "$LOSS" = netem ]; then
        tc -n "$BR" -s qdisc show dev "p$LOSS_HOST" \
            | awk '/^qdisc netem/ { n = 1 } n && /dropped/ { gsub(",", ""); print $7; exit }'
    else
        ip netns exec "${tag}$LOSS_HOST" nft list chain inet netns_loss in \
            | awk '/counter packets/ { for (i = 1; i < NF; i++) if ($i == "packets") { print $(i + 1); exit } }'
    fi
}
loss_off() {
    if [ "$LOSS" = netem ]; then
        tc -n "$BR" qdisc del dev "p$LOSS_HOST" root
    else
        ip netns exec "${tag}$LOSS_HOST" nft delete table inet netns_loss
    fi
}
