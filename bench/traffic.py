"""Bulk TCP for many sessions at once: run inside the test namespaces by bench/many.py.

``serve`` listens on the inside host; ``connect`` opens one connection per tunnel device
(SO_BINDTODEVICE, so that each flow really goes through its own session whatever routes the
clients' vpnc-scripts left behind). In ``up`` the connecting side sends and the server side
counts; in ``down`` the reverse. The receiving side prints ``{"bytes": n, "seconds": t}``.
One process and a selector per side: iperf3 serves one test at a time, and 100 iperf3 pairs
would cost the two cores more than the servers under test.
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import sys
import time

CHUNK = bytes(65536)


def pump(socks: list[socket.socket], send: bool, seconds: float | None) -> tuple[int, float]:
    """Move bytes on ``socks`` until ``seconds`` have passed (or, without a limit, until every
    peer has closed); returns the bytes received and the time from the first byte."""
    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_WRITE if send else selectors.EVENT_READ)
    received, first, last = 0, 0.0, 0.0
    deadline = time.monotonic() + seconds if seconds else None
    open_socks = len(socks)
    while open_socks and (deadline is None or time.monotonic() < deadline):
        for key, _ in sel.select(timeout=0.5):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                if send:
                    sock.send(CHUNK)
                    continue
                data = sock.recv(262144)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                sel.unregister(sock)
                open_socks -= 1
                continue
            last = time.monotonic()
            first = first or last
            received += len(data)
    for s in socks:
        s.close()
    return received, (last - first) if first else 0.0


def serve(ip: str, port: int, flows: int, send: bool, seconds: float) -> None:
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((ip, port))
    lsock.listen(1024)
    print("listening", flush=True)
    conns = [lsock.accept()[0] for _ in range(flows)]
    lsock.close()
    received, elapsed = pump(conns, send, seconds if send else None)
    if not send:
        print(json.dumps({"bytes": received, "seconds": elapsed}), flush=True)


def connect(ip: str, port: int, devices: list[str], send: bool, seconds: float) -> None:
    socks = []
    for dev in devices:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, dev.encode())
        s.settimeout(10)
        s.connect((ip, port))
        socks.append(s)
    print("connected", flush=True)
    received, elapsed = pump(socks, send, seconds if send else None)
    if not send:
        print(json.dumps({"bytes": received, "seconds": elapsed}), flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("role", choices=("serve", "connect"))
    p.add_argument("--ip", required=True)
    p.add_argument("--port", type=int, default=5301)
    p.add_argument("--direction", choices=("up", "down"), default="up")
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--flows", type=int, default=1, help="serve: connections to wait for")
    p.add_argument("--devices", default="", help="connect: comma list of tunnel devices")
    args = p.parse_args(argv)
    up = args.direction == "up"
    if args.role == "serve":
        serve(args.ip, args.port, args.flows, send=not up, seconds=args.seconds)
    else:
        connect(args.ip, args.port, args.devices.split(","), send=up, seconds=args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
