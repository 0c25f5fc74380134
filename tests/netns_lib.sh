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
