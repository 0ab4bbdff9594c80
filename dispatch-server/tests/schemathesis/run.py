"""schemathesis against a live `dispatch serve`: the OpenAPI document is the contract.

Starts the binary (DISPATCH_BIN, as the other Python suites) on a loopback port with its own
SQLite file, the webhook secrets set (so the webhooks answer 401 to unsigned deliveries, as
documented, and not 503), then runs schemathesis over `/api/openapi.json` twice:

1. authenticated (`Authorization: Bearer <DISPATCH_API_KEY>`): every phase, every check;
2. unauthenticated: the same document; authenticated operations must answer their documented 401.

Excluded: the two server-sent-event streams (they never end, so a generated request would only
time out) and the MCP transport `POST /api/mcp` (JSON-RPC; the MCP suites test it with real
clients). Exit status: schemathesis's (non-zero on any failure).

Usage: DISPATCH_BIN=target/debug/dispatch python dispatch-server/tests/schemathesis/run.py
Environment: SCHEMATHESIS_MAX_EXAMPLES (default 25), SCHEMATHESIS_SEED (default 1).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "pysupport"))

from dispatch_server import DispatchServer  # noqa: E402

KEY = "schemathesis-api-key-0123456789abcdef"
EXCLUDE_PATH_REGEX = r"(/stream$|^/api/mcp$)"
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "positive_data_acceptance",
        "negative_data_rejection",
        "unsupported_method",
    ]
)


def schemathesis(server: DispatchServer, label: str, extra: list[str]) -> int:
    exe = Path(sys.executable).with_name("schemathesis")
    report = Path(server.dir) / f"report-{label}"
    cmd = [
        str(exe),
        "--no-color",
        "--config-file",
        str(HERE / "schemathesis.toml"),
        "run",
        f"{server.url}/api/openapi.json",
        "--checks",
        CHECKS,
        "--phases",
        os.environ.get("SCHEMATHESIS_PHASES", "examples,coverage,fuzzing,stateful"),
        "--max-examples",
        os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "25"),
        "--seed",
        os.environ.get("SCHEMATHESIS_SEED", "1"),
        "--exclude-path-regex",
        EXCLUDE_PATH_REGEX,
        "--request-timeout",
        "10",
        # One worker: hypothesis' lambda-source cache is not thread-safe (a worker can die with
        # "AST constructor recursion depth mismatch").
        "--workers",
        "1",
        "--suppress-health-check",
        "all",
        "--report",
        "ndjson",
        "--report-dir",
        str(report),
        *extra,
    ]
    print(f"== schemathesis ({label}): {' '.join(cmd)}", flush=True)
    started = time.monotonic()
    # schemathesis keeps a cache (`.schemathesis/`) in its working directory: the server's.
    rc = subprocess.call(cmd, cwd=server.dir)
    print(f"== schemathesis ({label}): exit {rc} in {time.monotonic() - started:.0f} s", flush=True)
    return rc


def main() -> int:
    server = DispatchServer(
        KEY,
        "schemathesis-password",
        prefix="dispatch-schemathesis-",
        GITHUB_WEBHOOK_SECRET="schemathesis-github-secret",
        SENTRY_CLIENT_SECRET="schemathesis-sentry-secret",
        LOKI_WEBHOOK_SECRET="schemathesis-loki-secret",
    )
    try:
        rc = schemathesis(server, "authenticated", ["-H", f"Authorization: Bearer {KEY}"])
        rc2 = schemathesis(server, "unauthenticated", [])
    finally:
        log = Path(server.dir) / "server.log"
        panics = [line for line in log.read_text(errors="replace").splitlines() if "panicked" in line]
        server.stop()
    if panics:
        print("server panics:", *panics, sep="\n")
        return 1
    return rc or rc2


if __name__ == "__main__":
    sys.exit(main())
