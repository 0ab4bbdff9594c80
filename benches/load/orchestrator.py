#!/usr/bin/env python3
"""Orchestrator relay latency and idle-session memory of a running `dispatch serve`.

Measures, against the release binary and a local fake of the streaming Messages API (both in
this process's clock):
  * relay latency: from the moment the fake upstream writes the first `text_delta` event's
    bytes to the moment the client reads the first `text_delta` event from
    `POST /api/orchestrator` (each turn a new session);
  * memory per idle session: the server's RSS after N finished sessions, minus before, over N
    (sessions live in the store, so an idle one should cost the process nothing).

Usage: benches/load/orchestrator.py [--turns 300] [--sessions 1000] [--bin target/release/dispatch]
Standard library only.
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time

FIRST = {}  # turn number -> perf_counter_ns when the first text delta was written upstream
LOCK = threading.Lock()


def sse(event):
    return f"event: {event['type']}\r\ndata: {json.dumps(event)}\r\n\r\n".encode()


def upstream_reply(conn, turn):
    start = [
        {"type": "message_start", "message": {"id": "msg_bench", "type": "message", "role": "assistant",
                                              "model": "claude-bench", "content": [], "stop_reason": None,
                                              "usage": {"input_tokens": 10, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ]
    head = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
            b"connection: close\r\n\r\n")
    conn.sendall(head + b"".join(sse(e) for e in start))
    first = sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": f"t{turn} "}})
    with LOCK:
        FIRST[turn] = time.perf_counter_ns()
    conn.sendall(first)
    rest = [{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}}
            for w in ["all ", "good."]]
    rest += [{"type": "content_block_stop", "index": 0},
             {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 3}},
             {"type": "message_stop"}]
    conn.sendall(b"".join(sse(e) for e in rest))


def serve_upstream(listener):
    while True:
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        while len(body) < length:
            body += conn.recv(65536)
        req = json.loads(body)
        text = req["messages"][-1]["content"][0]["text"]
        turn = int(text.split()[-1])
        upstream_reply(conn, turn)
        conn.close()


def turn(port, key, n):
    body = json.dumps({"message": f"benchmark turn {n}"}).encode()
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(b"POST /api/orchestrator HTTP/1.1\r\nhost: 127.0.0.1\r\n"
              + f"authorization: Bearer {key}\r\ncontent-type: application/json\r\n".encode()
              + f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode() + body)
    buf = b""
    got = None
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
        if got is None and b'"type":"text_delta"' in buf:
            got = time.perf_counter_ns()
        if b'"type":"done"' in buf:
            break
    s.close()
    if got is None:
        raise SystemExit(f"turn {n}: no text_delta in {buf[-500:]!r}")
    with LOCK:
        return (got - FIRST[n]) / 1e6


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/dispatch")
    ap.add_argument("--turns", type=int, default=300)
    ap.add_argument("--sessions", type=int, default=1000)
    a = ap.parse_args()
    up = socket.socket()
    up.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    up.bind(("127.0.0.1", 0))
    up.listen(64)
    threading.Thread(target=serve_upstream, args=(up,), daemon=True).start()
    work = tempfile.mkdtemp(prefix="dispatch-orch-bench-")
    key = "bench-api-key-0123456789"
    env = {"PATH": os.environ.get("PATH", ""), "HOME": work, "PORT": "0", "HOST": "127.0.0.1",
           "DISPATCH_API_KEY": key, "DISPATCH_PASSWORD": "bench-password", "RUST_LOG": "warn",
           "ANTHROPIC_API_KEY": "sk-ant-bench", "DISPATCH_WORKERS": "false",
           "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{up.getsockname()[1]}"}
    proc = subprocess.Popen([os.path.abspath(a.bin), "serve"], cwd=work, env=env,
                            stdout=subprocess.PIPE, text=True)
    port = None
    for line in proc.stdout:
        if line.startswith("Dispatch is listening on "):
            port = int(line.split()[4].rsplit(":", 1)[1].strip("/"))
            break
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    try:
        for n in range(20):  # warm-up
            turn(port, key, 10_000_000 + n)
        lat = [turn(port, key, n) for n in range(a.turns)]
        lat.sort()
        q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
        print(f"relay latency, upstream first text_delta -> client first text_delta, {a.turns} turns:")
        print(f"  median {statistics.median(lat):.3f} ms  p90 {q(0.90):.3f} ms  p99 {q(0.99):.3f} ms  max {lat[-1]:.3f} ms")
        before = rss_kib(proc.pid)
        for n in range(a.sessions):
            turn(port, key, 20_000_000 + n)
        after = rss_kib(proc.pid)
        print(f"server RSS {before} KiB -> {after} KiB after {a.sessions} more sessions: "
              f"{(after - before) * 1024 / a.sessions:.0f} bytes per idle session")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
