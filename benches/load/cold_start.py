#!/usr/bin/env python3
"""Cold start of `dispatch serve` on SQLite: process start to the first 200 from /api/health.

Polls in-process (no fork per poll, unlike a shell loop of curl), five times on a fresh
directory (the database file is created and migrated) and five times restarting on the same
file. Prints `fresh_ms=<median> restart_ms=<median>` and the single runs.
    python3 benches/load/cold_start.py [path/to/dispatch]
"""
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

BIN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/dispatch-target")),
    "release", "dispatch")
ENV = {
    "PATH": os.environ["PATH"], "PORT": "0", "HOST": "127.0.0.1",
    "DISPATCH_API_KEY": "load-test-key-0123456789abcdef", "DISPATCH_PASSWORD": "load-test-pw",
    "RUST_LOG": "warn", "SPAWN_KILL_SWITCH": "true", "DISPATCH_WORKERS": "false",
}


def start_to_first_200(workdir):
    t0 = time.perf_counter()
    p = subprocess.Popen([BIN, "serve"], cwd=workdir, env=ENV, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    try:
        base = None
        for line in p.stdout:
            m = re.match(r"^Dispatch is listening on (\S+)", line)
            if m:
                base = m.group(1)
                break
        if base is None:
            raise SystemExit("the server exited before listening")
        deadline = t0 + 10
        while True:
            try:
                urllib.request.urlopen(base + "/api/health", timeout=1).read()
                return (time.perf_counter() - t0) * 1000
            except OSError:
                if time.perf_counter() > deadline:
                    raise SystemExit("no 200 from /api/health within 10 s")
                time.sleep(0.0005)
    finally:
        p.terminate()
        p.wait()


def main():
    dirs = [tempfile.mkdtemp(prefix="dispatch-cold-") for _ in range(5)]
    try:
        fresh = [start_to_first_200(d) for d in dirs]
        restart = [start_to_first_200(dirs[0]) for _ in range(5)]
    finally:
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)
    print("fresh_ms=%.1f restart_ms=%.1f fresh_runs=%s restart_runs=%s" % (
        statistics.median(fresh), statistics.median(restart),
        ",".join("%.1f" % x for x in fresh), ",".join("%.1f" % x for x in restart)))


if __name__ == "__main__":
    main()
