#!/usr/bin/env python3
"""Soak: mixed traffic against a release `dispatch serve` for a while, sampled once a minute.

    python3 benches/soak/soak.py --store sqlite|postgres --minutes 30 [--bin PATH] [--out FILE]

Traffic (standard library only, keep-alive connections, a steady moderate rate rather than a
saturating one, so that what is measured is drift, not the ceiling):
  - webhooks: Grafana alerts from a pool of 300 fingerprints (new issues at first, then
    de-duplication), 2 senders;
  - callbacks: an agent's life on an issue: a run recorded with its GitHub run id, terminal
    chunks, activities, the run finished, 2 senders;
  - board reads: the issue list, one issue, statuses, spawn stats, 1 reader;
  - SSE viewers: 8 board streams and 4 issue activity streams, read continuously and
    reconnected every 90 s (viewers come and go).
Every minute: the server's RSS (VmRSS) and open file descriptors from /proc, requests and errors
of that minute, p50/p99 latency per kind, the machine's load average. One JSON line per minute
on stdout (and --out); a summary (first, middle, last minute) at the end.

PostgreSQL: a fresh database next to DATABASE_URL (default postgres://postgres@127.0.0.1:5432/),
dropped at the end.
"""
import argparse
import http.client
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid

API_KEY = "soak-test-key-0123456789abcdef"


def percentile(values, p):
    if not values:
        return None
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(round(p / 100.0 * (len(s) - 1)))))
    return s[k]


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        self.lat = {}
        self.errors = {}
        self.expected = {}
        self.count = 0

    def record(self, kind, seconds, ok, status=None, expected=False):
        with self.lock:
            self.lat.setdefault(kind, []).append(seconds * 1000.0)
            self.count += 1
            if not ok:
                key = kind if status is None else "%s:%s" % (kind, status)
                counts = self.expected if expected else self.errors
                counts[key] = counts.get(key, 0) + 1

    def take(self):
        with self.lock:
            lat, errors, expected, count = self.lat, self.errors, self.expected, self.count
            self.reset()
        return lat, errors, expected, count


class Client:
    """One keep-alive connection; reconnects on failure."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.conn = None

    def request(self, method, path, body=None):
        headers = {"Authorization": "Bearer " + API_KEY}
        data = None
        if body is not None:
            data = json.dumps(body).encode() if not isinstance(body, (bytes, str)) else body
            if isinstance(data, str):
                data = data.encode()
            headers["Content-Type"] = "application/json"
        for attempt in range(2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                self.conn.request(method, path, body=data, headers=headers)
                r = self.conn.getresponse()
                payload = r.read()
                return r.status, payload
            except (OSError, http.client.HTTPException):
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                if attempt == 1:
                    return 0, b""
        return 0, b""


def timed(stats, kind, client, method, path, body=None, expected=()):
    """One request; a status in `expected` is a refusal the traffic provokes on purpose: counted
    apart from errors."""
    t0 = time.perf_counter()
    status, payload = client.request(method, path, body)
    stats.record(kind, time.perf_counter() - t0, 200 <= status < 300, status,
                 expected=status in expected)
    return status, payload


def grafana_payload(n):
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
             "india", "juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec"]
    # Words, not numbers: normalisation folds numbers into one fingerprint.
    msg = "Soak%s%s failure in %s handler" % (words[n % 17].title(), words[(n // 17) % 17].title(),
                                                words[(n // 7) % 17])
    return json.dumps({
        "receiver": "dispatch", "status": "firing",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "LokiErrors", "source": "soak-svc", "feature": "feature-%d" % (n % 5),
                       "level": "error"},
            "annotations": {"msg": msg, "summary": "errors in soak-svc"},
            "startsAt": "2026-12-04T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "values": {"A": 3},
        }],
        "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "version": "1",
    })


def webhook_sender(host, port, stats, stop, rate, seed):
    c = Client(host, port)
    rnd = random.Random(seed)
    while not stop.is_set():
        t0 = time.perf_counter()
        timed(stats, "webhook", c, "POST", "/api/loki/webhook", grafana_payload(rnd.randrange(300)))
        stop.wait(max(0.0, 1.0 / rate - (time.perf_counter() - t0)))


def callback_sender(host, port, stats, stop, rate, seed, issues):
    c = Client(host, port)
    rnd = random.Random(seed)
    run_no = seed * 1_000_000
    while not stop.is_set():
        if not issues:
            stop.wait(0.5)
            continue
        ident = rnd.choice(issues)
        run_no += 1
        steps = [("POST", "/api/issues/%s/runs" % ident,
                  {"workflow_type": "triage", "github_run_id": str(run_no)})]
        for seq in range(1, 6):
            steps.append(("POST", "/api/issues/%s/terminal" % ident,
                          {"content": "step %d: reading the code " % seq + "x" * 200, "seq": seq}))
        steps.append(("POST", "/api/issues/%s/activity" % ident,
                      {"type": "observation", "content": "soak observation %d" % run_no}))
        steps.append(("PATCH", "/api/issues/%s/runs/current?github_run_id=%d" % (ident, run_no),
                      {"status": "completed", "outcome_summary": "soak run done", "cost_usd": 0.01}))
        for method, path, body in steps:
            if stop.is_set():
                return
            t0 = time.perf_counter()
            # Both senders may pick the same issue: the second `POST …/runs` is refused with 409
            # while the first run is active (one active run per issue). Expected, not an error.
            starts_run = path.endswith("/runs")
            status, _ = timed(stats, "callback", c, method, path, body,
                              expected=(409,) if starts_run else ())
            if status == 409 and starts_run:
                break
            stop.wait(max(0.0, 1.0 / rate - (time.perf_counter() - t0)))


def board_reader(host, port, stats, stop, rate, issues):
    c = Client(host, port)
    rnd = random.Random(7)
    paths = ["/api/issues?limit=50", "/api/statuses", "/api/spawns/stats", None]
    while not stop.is_set():
        t0 = time.perf_counter()
        p = rnd.choice(paths)
        if p is None:
            p = "/api/issues/%s" % rnd.choice(issues) if issues else "/api/issues?limit=5"
        status, payload = timed(stats, "board", c, "GET", p)
        if p.startswith("/api/issues?limit=50") and status == 200:
            try:
                found = [i["identifier"] for i in json.loads(payload)]
                for ident in found:
                    if ident not in issues:
                        issues.append(ident)
            except (ValueError, KeyError, TypeError):
                pass
        stop.wait(max(0.0, 1.0 / rate - (time.perf_counter() - t0)))


def sse_viewer(host, port, stats, stop, path_fn, lifetime):
    """Holds a stream open and reads it; reconnects every `lifetime` seconds."""
    import socket
    while not stop.is_set():
        path = path_fn()
        if path is None:
            stop.wait(1)
            continue
        try:
            s = socket.create_connection((host, port), timeout=5)
            s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
                       "Accept: text/event-stream\r\n\r\n" % (path, host, API_KEY)).encode())
            s.settimeout(1.0)
            t0 = time.perf_counter()
            first = True
            until = time.monotonic() + lifetime
            while not stop.is_set() and time.monotonic() < until:
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    continue
                if not chunk:
                    break
                if first:
                    stats.record("sse_connect", time.perf_counter() - t0, chunk.startswith(b"HTTP/1.1 200"))
                    first = False
            s.close()
        except OSError:
            stats.record("sse_connect", 0, False)
            stop.wait(1)


def proc_sample(pid):
    rss = None
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    fds = len(os.listdir("/proc/%d/fd" % pid))
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    return rss, fds, [float(x) for x in load]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", choices=["sqlite", "postgres"], required=True)
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--bin", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/dispatch-target")),
        "release", "dispatch"))
    ap.add_argument("--out")
    ap.add_argument("--sample-seconds", type=float, default=60)
    args = ap.parse_args()

    workdir = tempfile.mkdtemp(prefix="dispatch-soak-")
    env = {
        "PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"),
        "PORT": "0", "HOST": "127.0.0.1", "DISPATCH_API_KEY": API_KEY,
        "DISPATCH_PASSWORD": "soak-password", "RUST_LOG": "error",
        # No agents are started: callbacks record runs a workflow started by itself.
        "DISPATCH_WORKERS": "false", "SPAWN_KILL_SWITCH": "true",
    }
    pg_db = None
    if args.store == "postgres":
        root = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/x").rsplit("/", 1)[0]
        pg_db = "dispatch_soak_%s" % uuid.uuid4().hex[:12]
        subprocess.run(["psql", root + "/postgres", "-qc", "CREATE DATABASE %s" % pg_db], check=True)
        env["PG_DATABASE_URL"] = "%s/%s" % (root, pg_db)
    proc = subprocess.Popen([args.bin, "serve"], cwd=workdir, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    base = None
    for line in proc.stdout:
        m = re.match(r"^Dispatch is listening on (\S+)", line)
        if m:
            base = m.group(1)
            break
    if base is None:
        raise SystemExit("the server did not start")
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    host, port = base.replace("http://", "").rsplit(":", 1)
    port = int(port)

    stats = Stats()
    stop = threading.Event()
    issues = []
    threads = []
    for i in range(2):
        threads.append(threading.Thread(target=webhook_sender, args=(host, port, stats, stop, 8, i)))
        threads.append(threading.Thread(target=callback_sender,
                                        args=(host, port, stats, stop, 10, i + 1, issues)))
    threads.append(threading.Thread(target=board_reader, args=(host, port, stats, stop, 8, issues)))
    rnd = random.Random(3)
    for i in range(8):
        threads.append(threading.Thread(target=sse_viewer, args=(
            host, port, stats, stop, lambda: "/api/board/stream", 90 + i)))
    for i in range(4):
        threads.append(threading.Thread(target=sse_viewer, args=(
            host, port, stats, stop,
            lambda: ("/api/issues/%s/activity/stream" % rnd.choice(issues)) if issues else None,
            90 + i)))
    for t in threads:
        t.daemon = True
        t.start()

    out = open(args.out, "w") if args.out else None
    samples = []
    started = time.monotonic()
    end = started + args.minutes * 60
    minute = 0
    try:
        while time.monotonic() < end:
            time.sleep(min(args.sample_seconds, max(0.0, end - time.monotonic())))
            minute += 1
            lat, errors, expected, count = stats.take()
            rss, fds, load = proc_sample(proc.pid)
            every = [v for k, vs in lat.items() if k != "sse_connect" for v in vs]
            row = {
                "minute": minute, "store": args.store, "rss_kib": rss, "fds": fds,
                "requests": count, "errors": sum(errors.values()), "errors_by_kind": errors,
                "expected_refusals": expected,
                "p50_ms": round(percentile(every, 50) or 0, 2),
                "p99_ms": round(percentile(every, 99) or 0, 2),
                "p99_by_kind_ms": {k: round(percentile(v, 99), 2) for k, v in lat.items()},
                "issues_known": len(issues), "loadavg": load,
            }
            samples.append(row)
            line = json.dumps(row)
            print(line, flush=True)
            if out:
                out.write(line + "\n")
                out.flush()
    finally:
        stop.set()
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        if pg_db:
            subprocess.run(["psql", env["PG_DATABASE_URL"].rsplit("/", 1)[0] + "/postgres", "-qc",
                            "DROP DATABASE IF EXISTS %s WITH (FORCE)" % pg_db], check=False)
        shutil.rmtree(workdir, ignore_errors=True)
    if samples:
        pick = [samples[0], samples[len(samples) // 2], samples[-1]]
        summary = {
            "store": args.store, "minutes": minute,
            "rss_kib": [s["rss_kib"] for s in pick], "fds": [s["fds"] for s in pick],
            "p99_ms": [s["p99_ms"] for s in pick],
            "p99_ms_max": max(s["p99_ms"] for s in samples),
            "requests": sum(s["requests"] for s in samples),
            "errors": sum(s["errors"] for s in samples),
            "loadavg_1m": [s["loadavg"][0] for s in pick],
        }
        print("SUMMARY " + json.dumps(summary), flush=True)
        if out:
            out.write("SUMMARY " + json.dumps(summary) + "\n")


if __name__ == "__main__":
    main()
