"""Hostile clients for the abuse suite (tests/e2e/test_abuse.py), run as their own processes so that their
sockets do not count against the test's descriptors. Loopback only, bounded in count and time.

    python -m tests.e2e.attacker idle PORT COUNT HOLD_S      # COUNT connections that send nothing
    python -m tests.e2e.attacker trickle PORT INTERVAL_S MAX_S  # a request head, one byte per INTERVAL_S
    python -m tests.e2e.attacker body PORT PATH BYTES [HEADER...]  # a chunked POST of BYTES bytes

Each prints one JSON object with what it saw.
"""

from __future__ import annotations

import json
import resource
import select
import socket
import sys
import time

HOST = "127.0.0.1"


def idle(port: int, count: int, hold_s: float) -> dict[str, object]:
    """Open ``count`` connections that never send a byte and hold them ``hold_s`` seconds; report how many
    connected, and how many the server had closed by the end of the hold (and how quickly)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    socks: list[socket.socket] = []
    refused = 0
    started = time.monotonic()
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect((HOST, port))
        except OSError:
            refused += 1
            s.close()
            continue
        s.setblocking(False)
        socks.append(s)
    opened_s = time.monotonic() - started
    print(json.dumps({"event": "open", "connected": len(socks), "refused": refused}), flush=True)
    poller = select.poll()
    by_fd = {s.fileno(): s for s in socks}
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    closed: dict[int, bytes] = {}
    deadline = time.monotonic() + hold_s
    while time.monotonic() < deadline and len(closed) < len(by_fd):
        for fd, _ in poller.poll(100):
            s = by_fd[fd]
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            if not data or fd in closed:
                poller.unregister(fd)
            closed[fd] = closed.get(fd, b"") + data
    answers: dict[str, int] = {}
    for data in closed.values():
        line = data.split(b"\r\n", 1)[0].decode("latin-1") or "(closed without a response)"
        answers[line] = answers.get(line, 0) + 1
    for s in socks:
        s.close()
    return {"event": "done", "connected": len(socks), "refused": refused, "open_seconds": round(opened_s, 2),
            "closed_by_server": len(closed), "answers": answers}


def trickle(port: int, interval_s: float, max_s: float) -> dict[str, object]:
    """Send a request head one byte every ``interval_s`` until the server answers or closes (or ``max_s``)."""
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Slow: " + b"a" * 10_000 + b"\r\n\r\n"
    s = socket.create_connection((HOST, port), timeout=5)
    started = time.monotonic()
    answer = b""
    for i in range(len(head)):
        if time.monotonic() - started > max_s:
            break
        try:
            s.sendall(head[i:i + 1])
        except OSError:
            break
        ready, _, _ = select.select([s], [], [], interval_s)
        if ready:
            try:
                answer = s.recv(4096)
            except OSError:
                answer = b""
            break
    held = time.monotonic() - started
    s.close()
    return {"event": "done", "held_seconds": round(held, 2), "answer": answer.split(b"\r\n", 1)[0].decode("latin-1")}


def body(port: int, path: str, total: int, headers: list[str]) -> dict[str, object]:
    """POST ``total`` bytes to ``path`` as a chunked body (1 MiB chunks of JSON-ish filler), stopping as soon
    as the server answers or closes; report how much was sent and the status line."""
    chunk = b"[" + b"1," * (512 * 1024 - 1) + b"1"  # 1 MiB
    framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
            "Content-Type: application/json\r\n" + "".join(f"{h}\r\n" for h in headers) + "\r\n").encode()
    s = socket.create_connection((HOST, port), timeout=30)
    s.sendall(head)
    sent, answer, started = 0, b"", time.monotonic()
    while sent < total:
        ready, _, _ = select.select([s], [], [], 0)
        if ready:
            break
        try:
            s.sendall(framed)
        except OSError:  # the server closed the connection
            break
        sent += len(chunk)
    else:
        s.sendall(b"0\r\n\r\n")
    try:
        s.settimeout(30)
        answer = s.recv(65536)
    except OSError:
        pass
    s.close()
    return {"event": "done", "sent": sent, "seconds": round(time.monotonic() - started, 2),
            "answer": answer.split(b"\r\n", 1)[0].decode("latin-1"),
            "body": answer.split(b"\r\n\r\n", 1)[-1][:300].decode("latin-1")}


def main(argv: list[str]) -> int:
    kind, *args = argv
    if kind == "idle":
        result = idle(int(args[0]), int(args[1]), float(args[2]))
    elif kind == "body":
        result = body(int(args[0]), args[1], int(args[2]), args[3:])
    elif kind == "trickle":
        result = trickle(int(args[0]), float(args[1]), float(args[2]))
    else:
        raise SystemExit(f"unknown attack {kind!r}")
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
