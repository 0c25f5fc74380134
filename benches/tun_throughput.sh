#!/usr/bin/env bash
# Kernel applications through TUN: two ipoibd hosts on rocev2 in network
# namespaces (tests/netns_tun.sh), then a longer iperf3 TCP run from one
# host's kernel to the other's through both dataplanes, and the echo round
# trip of the host's ping. Needs root, iproute2, iperf3 and ping.
#
# Prints `name: value` lines, the headline last:
#   tun_ping_rtt_ms: N       (average of the host's ping)
#   tun_tcp_mbps: N          (iperf3 receiver rate)
# Env: IPERF_SECONDS (default 10).
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in iperf3 ping; do
    command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install iperf3 iputils-ping)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces, TUN devices)" >&2; exit 1; }
out=$(IPERF_SECONDS="${IPERF_SECONDS:-10}" bash tests/netns_tun.sh 2>&1) || {
    echo "$out" >&2
    exit 1
}
rtt=$(sed -nE 's|^rtt min/avg/max/mdev = [0-9.]+/([0-9.]+)/.*|\1|p' <<<"$out")
mbps=$(sed -nE 's|^iperf3 TCP through the TUN devices: ([0-9.]+) Mb/s|\1|p' <<<"$out")
[ -n "$rtt" ] && [ -n "$mbps" ] || { echo "$out" >&2; echo "no figures in the test's output" >&2; exit 1; }
echo "tun_ping_rtt_ms: $rtt"
echo "tun_tcp_mbps: $mbps"
