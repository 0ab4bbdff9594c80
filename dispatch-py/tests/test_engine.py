from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterator, Optional

import pytest

import dispatch
from dispatch import Dispatch, ErrorEvent


@pytest.fixture(params=["memory", "sqlite"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Dispatch]:
    url: Optional[str] = None if request.param == "memory" else str(tmp_path / "dispatch.db")
    with Dispatch(url) as d:
        yield d


def event(message: str = "payment failed for order 42") -> ErrorEvent:
    return ErrorEvent(message=message, source="billing", feature="checkout")


def test_ingest_creates_then_dedupes(engine: Dispatch) -> None:
    first = engine.ingest(event())
    assert first.created
    again = engine.ingest(event())
    assert not again.created
    assert again.issue.id == first.issue.id
    assert again.event_count == 2
    got = engine.get_issue(first.issue.identifier)
    assert got.id == first.issue.id
    assert got.created_at is not None and got.created_at.tzinfo is not None


def test_sixteen_threads_one_fingerprint(engine: Dispatch) -> None:
    per_thread = 10
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(per_thread):
                engine.ingest(event())
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    last = engine.ingest(event())
    assert last.event_count == 16 * per_thread + 1


def test_not_found_is_a_dispatch_error(engine: Dispatch) -> None:
    with pytest.raises(dispatch.NotFound) as info:
        engine.get_issue("DSP-9999")
    assert isinstance(info.value, dispatch.DispatchError)
    assert info.value.code == "NOT_FOUND"  # type: ignore[attr-defined]


def test_naive_datetime_is_invalid_input(engine: Dispatch) -> None:
    from datetime import datetime

    e = event()
    e.first_seen = datetime(2026, 1, 1)
    with pytest.raises(dispatch.InvalidInput):
        engine.ingest(e)
