#!/usr/bin/env python3
"""A key/value board for QEMU guests on one bridge: what one guest learns at
run time (a pktgen sink's QPN and GID) and another needs. One request line
per connection, one answer line: "put KEY VALUE..." -> "ok",
"get KEY" -> the value, or an empty line while nobody put it.
Guests speak it with bash's /dev/tcp (they have no netcat)."""
import socketserver
import sys
import threading

values = {}
lock = threading.Lock()


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        line = self.rfile.readline(4096).decode(errors="replace").strip()
        words = line.split(" ", 2)
        if len(words) == 3 and words[0] == "put":
            with lock:
                values[words[1]] = words[2]
            print(f"board: {words[1]} = {words[2]}", flush=True)
            answer = "ok"
        elif len(words) == 2 and words[0] == "get":
            with lock:
                answer = values.get(words[1], "")
        else:
            answer = "error"
        self.wfile.write((answer + "\n").encode())


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    with Server((host, port), Handler) as srv:
        print(f"board: listening on {host}:{port}", flush=True)
        srv.serve_forever()


if __name__ == "__main__":
    main()
