"""Host-side tools for tests/netns_tun.sh: ICMP echo over a raw socket (one
reply per request, duplicates counted: exactly one IP stack must answer),
a UDP echo server and client, and a TCP server and client that check a
hash of what crossed. Every wait has a deadline; a failure exits non-zero
with one line saying what was missing.

  tun_tools.py ping DST COUNT
  tun_tools.py udp-server ADDR PORT READY_FILE
  tun_tools.py udp-client ADDR PORT COUNT
  tun_tools.py tcp-server ADDR PORT READY_FILE
  tun_tools.py tcp-client ADDR PORT BYTES
"""
import hashlib
import ipaddress
import os
import select
import socket
import struct
import sys
import time


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def family(addr):
    return socket.AF_INET6 if ipaddress.ip_address(addr).version == 6 else socket.AF_INET


def ping(dst, count):
    """Echo requests until `count` are answered, each sent once with its own
    sequence number (one more after a second without an answer); a second
    reply to any of them is a duplicate."""
    v6 = family(dst) == socket.AF_INET6
    if v6:
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        request, reply = 128, 129
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        request, reply = 8, 0
    ident = os.getpid() & 0xFFFF
    sent_at, answered, dups, rtts = {}, set(), 0, []

    def receive(until):
        nonlocal dups
        while time.monotonic() < until:
            r, _, _ = select.select([s], [], [], max(0.0, min(0.05, until - time.monotonic())))
            if not r:
                continue
            data, frm = s.recvfrom(2048)
            if not v6:
                data = data[(data[0] & 0x0F) * 4:]
            if len(data) < 8 or ipaddress.ip_address(frm[0]) != ipaddress.ip_address(dst):
                continue
            kind, _, _, rid, rseq = struct.unpack("!BBHHH", data[:8])
            if kind != reply or rid != ident or rseq not in sent_at:
                continue
            if rseq in answered:
                dups += 1
            else:
                answered.add(rseq)
                rtts.append((time.monotonic() - sent_at[rseq]) * 1e3)
                return

    deadline = time.monotonic() + 20
    seq = 0
    while len(answered) < count and time.monotonic() < deadline:
        payload = b"ipoib-tun-%04d" % seq
        # The kernel fills the ICMPv6 checksum of raw ICMPv6 sockets.
        head = struct.pack("!BBHHH", request, 0, 0, ident, seq)
        if not v6:
            head = struct.pack("!BBHHH", request, 0, checksum(head + payload), ident, seq)
        sent_at[seq] = time.monotonic()
        s.sendto(head + payload, (dst, 0))
        receive(min(deadline, sent_at[seq] + 1.0))
        seq += 1
    # Late answers and duplicates.
    end = time.monotonic() + 0.5
    while time.monotonic() < end:
        receive(end)
    avg = sum(rtts) / len(rtts) if rtts else 0.0
    print("ping %s: %d sent, %d received, %d duplicates, rtt avg %.3f ms"
          % (dst, seq, len(answered), dups, avg))
    return len(answered) >= count and dups == 0


def ready(path):
    with open(path, "w") as f:
        f.write("ready\n")


def udp_server(addr, port, ready_file):
    s = socket.socket(family(addr), socket.SOCK_DGRAM)
    s.bind((addr, port))
    s.settimeout(60)
    ready(ready_file)
    while True:
        data, peer = s.recvfrom(65536)
        s.sendto(data, peer)
        if data == b"quit":
            return True


def udp_client(addr, port, count):
    s = socket.socket(family(addr), socket.SOCK_DGRAM)
    s.settimeout(0.5)
    deadline = time.monotonic() + 15
    for i in range(count):
        # Small and near-MTU datagrams.
        msg = (b"udp-%d-" % i) * (1 if i % 2 else 100)
        while True:
            if time.monotonic() > deadline:
                print("udp %s:%d: no echo for message %d" % (addr, port, i))
                return False
            s.sendto(msg, (addr, port))
            try:
                data, _ = s.recvfrom(65536)
            except socket.timeout:
                continue
            if data == msg:
                break
    s.sendto(b"quit", (addr, port))
    print("udp %s:%d: %d datagrams echoed" % (addr, port, count))
    return True


def tcp_server(addr, port, ready_file):
    s = socket.socket(family(addr), socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(1)
    s.settimeout(60)
    ready(ready_file)
    c, _ = s.accept()
    c.settimeout(60)
    h = hashlib.sha256()
    while True:
        b = c.recv(65536)
        if not b:
            break
        h.update(b)
    c.sendall(h.hexdigest().encode())
    c.close()
    return True


def tcp_client(addr, port, nbytes):
    data = os.urandom(nbytes)
    start = time.monotonic()
    c = socket.create_connection((addr, port), timeout=30)
    c.sendall(data)
    c.shutdown(socket.SHUT_WR)
    answer = b""
    while True:
        b = c.recv(256)
        if not b:
            break
        answer += b
    secs = time.monotonic() - start
    ok = answer.decode() == hashlib.sha256(data).hexdigest()
    print("tcp %s:%d: %d bytes in %.3f s (%.1f Mb/s), hash %s"
          % (addr, port, nbytes, secs, nbytes * 8 / secs / 1e6, "matches" if ok else "DIFFERS"))
    return ok


def main(argv):
    cmd, args = argv[1], argv[2:]
    if cmd == "ping":
        return ping(args[0], int(args[1]))
    if cmd == "udp-server":
        return udp_server(args[0], int(args[1]), args[2])
    if cmd == "udp-client":
        return udp_client(args[0], int(args[1]), int(args[2]))
    if cmd == "tcp-server":
        return tcp_server(args[0], int(args[1]), args[2])
    if cmd == "tcp-client":
        return tcp_client(args[0], int(args[1]), int(args[2]))
    print("unknown command %s" % cmd)
    return False


if __name__ == "__main__":
    sys.exit(0 if main(sys.argv) else 1)
