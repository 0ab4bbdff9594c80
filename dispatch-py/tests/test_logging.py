"""dispatch.logging.DispatchHandler: error records become error events, batched, non-blocking."""

from __future__ import annotations

import logging
import threading
from typing import Iterator, List, Sequence

import pytest

from dispatch import Dispatch, ErrorEvent
from dispatch.logging import DispatchHandler


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    log = logging.getLogger(f"dispatch-test-{id(object())}")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    yield log
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()


def refund() -> None:
    raise ZeroDivisionError("division by zero")


def test_error_records_become_issues(engine: Dispatch, logger: logging.Logger) -> None:
    h = DispatchHandler(engine)
    logger.addHandler(h)
    logger.info("fine")
    logger.warning("not an error")
    for _ in range(3):
        try:
            refund()
        except ZeroDivisionError:
            logger.exception("refund failed", extra={"source": "payments", "feature": "refund"})
    h.flush()
    assert (h.ingested, h.failed, h.dropped) == (3, 0, 0)
    (issue,) = list(engine.list_issues())
    assert issue.title == "[payments/refund] refund failed"
    assert "ZeroDivisionError" in (issue.description or "")


def test_source_and_feature_fall_back_to_logger_and_function(engine: Dispatch, logger: logging.Logger) -> None:
    h = DispatchHandler(engine, source="worker")
    logger.addHandler(h)

    def nightly_report() -> None:
        logger.error("report %s missing", "sales", stack_info=True)

    nightly_report()
    h.flush()
    (issue,) = list(engine.list_issues())
    assert issue.title == "[worker/nightly_report] report sales missing"
    assert "nightly_report" in (issue.description or ""), "stack_info is the stack"


class Blocked:
    """An engine stand-in whose ingest waits until released: shows emit never waits for it."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.batches: List[List[str]] = []

    def ingest_many(self, events: Sequence[ErrorEvent]) -> None:
        self.entered.set()
        assert self.release.wait(30)
        self.batches.append([e.message for e in events])


def test_emit_does_not_block_and_batches(logger: logging.Logger) -> None:
    engine = Blocked()
    h = DispatchHandler(engine, max_queue=3, batch_size=2)
    logger.addHandler(h)
    logger.error("m0")
    assert engine.entered.wait(30), "the worker took m0 and is stuck in the engine"
    for n in range(1, 6):
        logger.error("m%d", n)  # returns at once although the engine is stuck
    assert h.dropped == 2, "m1..m3 queued, m4 and m5 did not fit"
    engine.release.set()
    h.flush()
    assert engine.batches == [["m0"], ["m1", "m2"], ["m3"]]
    assert (h.ingested, h.batches) == (4, 3)


def test_failed_ingest_is_counted_not_raised(logger: logging.Logger) -> None:
    class Down:
        def ingest_many(self, events: Sequence[ErrorEvent]) -> None:
            raise ConnectionError("store down")

    h = DispatchHandler(Down())
    logger.addHandler(h)
    logger.error("x")
    h.flush()
    assert h.failed == 1 and isinstance(h.last_error, ConnectionError)


def test_close_ingests_what_is_queued(engine: Dispatch, logger: logging.Logger) -> None:
    h = DispatchHandler(engine)
    logger.addHandler(h)
    logger.critical("disk full", extra={"source": "storage", "feature": "uploads"})
    logger.removeHandler(h)
    h.close()
    assert [i.title for i in engine.list_issues()] == ["[storage/uploads] disk full"]
    logger.error("after close")  # ignored, no error
