"""A real `dispatch serve` for the Python test suites (web UI, MCP clients): its own directory and
SQLite file, a free loopback port, a known API key and password, JSON calls to its API.

DISPATCH_BIN names the binary (scripts/test sets it).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DispatchServer:
    def __init__(self, key: str, password: str, prefix: str = "dispatch-test-", **extra_env: str) -> None:
        self.key = key
        self.dir = tempfile.mkdtemp(prefix=prefix)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        env.update(
            DATABASE_URL=f"{self.dir}/dispatch.db",
            PORT=str(self.port),
            HOST="127.0.0.1",
            DISPATCH_APP_URL=self.url,
            DISPATCH_API_KEY=key,
            DISPATCH_PASSWORD=password,
            LOG_FORMAT="text",
        )
        # What the caller's environment may hold but a test server must not inherit; a test
        # that wants one passes it in extra_env.
        for k in ("PG_DATABASE_URL", "ANTHROPIC_API_KEY", "GITHUB_TOKEN"):
            env.pop(k, None)
        env.update(extra_env)
        self.log = open(f"{self.dir}/server.log", "w")
        self.proc = subprocess.Popen(
            [os.environ["DISPATCH_BIN"], "serve"], env=env, cwd=self.dir, stdout=self.log, stderr=self.log
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/api/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(open(f"{self.dir}/server.log").read())
            time.sleep(0.05)

    def api(self, method: str, path: str, body: object | None = None, auth: bool = True) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        if data is not None:
            req.add_header("content-type", "application/json")
        if auth:
            req.add_header("authorization", f"Bearer {self.key}")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                raw = r.read()
                return r.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, raw.decode(errors="replace")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
