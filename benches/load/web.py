#!/usr/bin/env python3
"""Web UI load figures (issue 13's targets), measured against a real `dispatch serve` (release
build) on SQLite, loopback only, every loop bounded:

1. Time to first byte of `/board` with 10,000 issues (target: p99 <= 50 ms), sequential and with
   16 concurrent readers.
2. Live terminal fan-out: 1,000 SSE viewers on one issue's activity stream; one chunk is posted
   and the latency from the POST to each viewer receiving it is recorded (target: p99 <= 100 ms),
   with the server's peak RSS.

    python3 benches/load/web.py [--issues 10000] [--viewers 1000]

Uses only the standard library. DISPATCH_BIN overrides the binary
($CARGO_TARGET_DIR/release/dispatch by default).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import os
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.parse

KEY = "dsp_web_bench_key_0123456789abcdef0123456789"
PASSWORD = "web-bench-password"


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kb(pid: int, field: str = "VmHWM") -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field):
            return int(line.split()[1])
    return 0


class Server:
    def __init__(self) -> None:
        target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/dispatch-target"))
        binary = os.environ.get("DISPATCH_BIN", f"{target}/release/dispatch")
        self.dir = tempfile.mkdtemp(prefix="dispatch-web-bench-")
        self.port = free_port()
        env = {
            "PATH": os.environ["PATH"],
            "PORT": str(self.port),
            "HOST": "127.0.0.1",
            "DATABASE_URL": f"{self.dir}/dispatch.db",
            "DISPATCH_API_KEY": KEY,
            "DISPATCH_PASSWORD": PASSWORD,
            "SPAWN_KILL_SWITCH": "true",
            "DISPATCH_WORKERS": "false",
            "RUST_LOG": "warn",
            "SSE_KEEPALIVE_SECONDS": "60",
        }
        self.proc = subprocess.Popen([binary, "serve"], env=env, cwd=self.dir,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                if self.request("GET", "/api/health")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("the server did not start")
            time.sleep(0.05)

    def request(self, method: str, path: str, body: object | None = None,
                headers: dict[str, str] | None = None, auth: bool = True) -> tuple[int, bytes]:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        h = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["content-type"] = "application/json"
        if auth:
            h["authorization"] = f"Bearer {KEY}"
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        out = r.read()
        c.close()
        return r.status, out

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(15)


def create_issues(s: Server, n: int) -> None:
    def one(i: int) -> int:
        st, _ = s.request("POST", "/api/issues", {"title": f"Issue {i}: checkout fails for plan {i % 97}",
                                                  "description": "Generated for the board benchmark."})
        return st
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        codes = list(ex.map(one, range(n)))
    bad = [c for c in codes if c != 201]
    assert not bad, bad[:5]
    print(f"created {n} issues in {time.monotonic() - started:.1f} s")


def login_cookie(s: Server) -> str:
    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
    body = urllib.parse.urlencode({"password": PASSWORD, "next": "/board"})
    c.request("POST", "/login", body=body, headers={"content-type": "application/x-www-form-urlencoded"})
    r = c.getresponse()
    r.read()
    cookie = r.getheader("set-cookie") or ""
    assert r.status == 303 and cookie, (r.status, cookie)
    return cookie.split(";")[0]


def ttfb(s: Server, cookie: str) -> float:
    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=30)
    t0 = time.perf_counter()
    c.request("GET", "/board", headers={"cookie": cookie})
    r = c.getresponse()
    first = time.perf_counter() - t0  # status line and headers received
    body = r.read()
    assert r.status == 200 and b'class="card"' in body
    c.close()
    return first * 1000


def board(s: Server, cookie: str) -> None:
    for _ in range(20):
        ttfb(s, cookie)  # warm-up
    seq = [ttfb(s, cookie) for _ in range(300)]
    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        conc = list(ex.map(lambda _: ttfb(s, cookie), range(800)))
    print(f"/board TTFB, 10k issues, sequential: p50 {pct(seq, 50):.1f} ms  p99 {pct(seq, 99):.1f} ms  "
          f"(n={len(seq)})")
    print(f"/board TTFB, 16 concurrent readers: p50 {pct(conc, 50):.1f} ms  p99 {pct(conc, 99):.1f} ms  "
          f"(n={len(conc)})")


def open_viewer(port: int, path: str) -> socket.socket:
    """An SSE viewer: connected, its response headers read, then non-blocking."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\n"
                 f"Accept: text/event-stream\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the stream"
        head += chunk
    assert b" 200 " in head.split(b"\r\n", 1)[0], head
    sock.setblocking(False)
    return sock


def fanout(s: Server, n: int) -> None:
    """One chunk to n viewers. The viewers are read with epoll in one loop that does nothing
    else (an asyncio loop per viewer cost more than the server did), and none is closed before
    all have the chunk, so the server is not also handling 1,000 disconnects meanwhile."""
    import select
    import threading
    st, body = s.request("POST", "/api/issues", {"title": "fan-out"})
    ident = json.loads(body)["identifier"]
    st, _ = s.request("POST", f"/api/issues/{ident}/runs", {"workflow_type": "investigate"})
    assert st in (200, 201), st
    path = f"/api/issues/{ident}/activity/stream"
    socks = [open_viewer(s.port, path) for _ in range(n)]
    ep = select.epoll()
    bufs: dict[int, bytes] = {}
    for sk in socks:
        ep.register(sk.fileno(), select.EPOLLIN)
        bufs[sk.fileno()] = b""
    by_fd = {sk.fileno(): sk for sk in socks}
    rss_before = rss_kb(s.proc.pid, "VmRSS")
    # Drain what the streams sent on connecting (the "connected" event), then post the chunk.
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        for fd, _ in ep.poll(0.05):
            try:
                by_fd[fd].recv(65536)
            except BlockingIOError:
                pass
    got: dict[int, float] = {}
    t0 = [0.0]

    def post() -> None:
        t0[0] = time.perf_counter()
        st, _ = s.request("POST", f"/api/issues/{ident}/terminal", {"content": "BENCH-CHUNK hello\n", "seq": 1})
        assert st in (200, 201), st

    th = threading.Thread(target=post)
    th.start()
    end = time.monotonic() + 60
    while len(got) < n and time.monotonic() < end:
        for fd, _ in ep.poll(1.0):
            try:
                data = by_fd[fd].recv(65536)
            except BlockingIOError:
                continue
            now = time.perf_counter()
            bufs[fd] += data
            if fd not in got and b"BENCH-CHUNK" in bufs[fd]:
                got[fd] = now
                ep.unregister(fd)
    th.join()
    for sk in socks:
        sk.close()
    lat = [(t - t0[0]) * 1000 for t in got.values()]
    assert len(lat) == n, f"{len(lat)} of {n} viewers got the chunk"
    print(f"terminal chunk to {n} SSE viewers: p50 {pct(lat, 50):.1f} ms  p99 {pct(lat, 99):.1f} ms  "
          f"max {max(lat):.1f} ms; RSS with {n} viewers {rss_before / 1024:.1f} MB, "
          f"peak {rss_kb(s.proc.pid) / 1024:.1f} MB")


def main() -> None:
    import resource
    # 1,000 viewers need more than the usual 1,024 descriptors, here and in the server (inherited).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    ap = argparse.ArgumentParser()
    ap.add_argument("--issues", type=int, default=10_000)
    ap.add_argument("--viewers", type=int, default=1_000)
    a = ap.parse_args()
    s = Server()
    try:
        create_issues(s, a.issues)
        board(s, login_cookie(s))
        fanout(s, a.viewers)
        print(f"server peak RSS {rss_kb(s.proc.pid) / 1024:.1f} MB")
    finally:
        s.stop()


if __name__ == "__main__":
    main()
