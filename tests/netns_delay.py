#!/usr/bin/env python3
"""A one-way delay where the kernel has no sch_netem: relays Ethernet frames
between two interfaces with packet sockets, those from FAR to NEAR held back
DELAY_MS, those from NEAR to FAR at once. Frames are not changed (RoCEv2's
ICRC covers the IP header). Prints "ready" once both sockets are bound, then
runs until killed; counts relayed frames on SIGTERM.

    netns_delay.py FAR NEAR DELAY_MS
"""
import heapq
import selectors
import signal
import socket
import sys
import time

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SO_RCVBUFFORCE = 33


def open_raw(ifname):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((ifname, ETH_P_ALL))
    try:
        s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 32 << 20)
    except OSError:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 20)
    s.setblocking(False)
    return s


def main():
    far_if, near_if, delay_ms = sys.argv[1], sys.argv[2], float(sys.argv[3])
    delay = delay_ms / 1e3
    far, near = open_raw(far_if), open_raw(near_if)
    sel = selectors.DefaultSelector()
    sel.register(far, selectors.EVENT_READ, "far")
    sel.register(near, selectors.EVENT_READ, "near")
    held = []  # (release time, order, frame) on the way to NEAR
    order = 0
    counts = {"delayed": 0, "direct": 0}

    def stop(*_):
        print(f"relayed {counts['delayed']} delayed, {counts['direct']} direct", flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    print("ready", flush=True)
    while True:
        now = time.monotonic()
        while held and held[0][0] <= now:
            near.send(heapq.heappop(held)[2])
            counts["delayed"] += 1
        timeout = max(0.0, held[0][0] - now) if held else 0.5
        for key, _ in sel.select(timeout):
            sock = key.fileobj
            while True:
                try:
                    frame, addr = sock.recvfrom(65536)
                except BlockingIOError:
                    break
                if addr[2] == PACKET_OUTGOING:
                    continue  # our own send, seen on the way out
                if key.data == "far":
                    heapq.heappush(held, (time.monotonic() + delay, order, frame))
                    order += 1
                else:
                    far.send(frame)
                    counts["direct"] += 1


if __name__ == "__main__":
    main()
