"""Per-call overhead of the Python binding: one known event ingested from Python versus from Rust,
on the same engine and store, in the same process.

    (cd dispatch-py && maturin develop --release)   # an optimised build: debug is ~10x slower
    python benches/python_ingest.py [--n 20000] [--store memory|sqlite|both]

The Rust baseline is ``Engine.bench_ingest``: ``Dispatch::ingest`` called in a loop inside one
``block_on``. The Python figures are ``Dispatch.ingest`` (JSON in, dataclasses out, GIL released,
``block_on`` per call) and the raw compiled call without the dataclasses. Every round ingests the
same event (the known-fingerprint path: dedupe, count, no new issue); rounds alternate Rust and
Python and the median round is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from typing import Callable, Dict, List

from dispatch import Dispatch, ErrorEvent
from dispatch._types import _dump

EVENT = ErrorEvent(
    message="PaymentDeclined: card_declined for order 88213 (provider=stripe)",
    source="checkout-api",
    feature="payments",
)


def per_call_us(fn: Callable[[], None], n: int) -> float:
    t = time.perf_counter_ns()
    for _ in range(n):
        fn()
    return (time.perf_counter_ns() - t) / n / 1000


def measure(d: Dispatch, n: int, rounds: int) -> Dict[str, float]:
    ev_json = json.dumps(_dump(EVENT, "event"))
    raw_args = json.dumps({"events": [_dump(EVENT, "event")]})
    engine = d._engine
    d.set_kill_switch(True)  # no spawn is reserved, as in the Rust micro-benchmark
    d.ingest(EVENT)  # the fingerprint is known from here on
    rust: List[float] = []
    py: List[float] = []
    raw: List[float] = []
    for _ in range(rounds):
        rust.append(engine.bench_ingest(ev_json, n) / n / 1000)
        py.append(per_call_us(lambda: d.ingest(EVENT) and None, n))
        raw.append(per_call_us(lambda: engine.call("ingest", raw_args) and None, n))
    r, p, w = statistics.median(rust), statistics.median(py), statistics.median(raw)
    return {"rust_us": r, "python_us": p, "raw_call_us": w, "overhead_us": p - r, "raw_overhead_us": w - r}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000, help="calls per round")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--store", choices=["memory", "sqlite", "both"], default="both")
    a = ap.parse_args()
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.2f}")
    stores = ["memory", "sqlite"] if a.store == "both" else [a.store]
    for store in stores:
        with tempfile.TemporaryDirectory() as tmp:
            url = None if store == "memory" else os.path.join(tmp, "bench.db")
            with Dispatch(url) as d:
                m = measure(d, a.n if store == "memory" else max(a.n // 10, 100), a.rounds)
        print(
            f"{store:7} rust {m['rust_us']:8.2f} us/call | python Dispatch.ingest {m['python_us']:8.2f} us/call"
            f" (overhead {m['overhead_us']:6.2f}) | raw Engine.call {m['raw_call_us']:8.2f} us/call"
            f" (overhead {m['raw_overhead_us']:6.2f})"
        )


if __name__ == "__main__":
    main()
