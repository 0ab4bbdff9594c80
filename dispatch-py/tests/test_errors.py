"""The exception hierarchy: one class per core error kind, with the kind's fields."""

from __future__ import annotations

from typing import Callable, List, Mapping, Type

import pytest

import dispatch
from dispatch import Dispatch, ErrorEvent

ALL = [
    dispatch.NotFound,
    dispatch.Conflict,
    dispatch.InvalidInput,
    dispatch.Unauthorized,
    dispatch.Forbidden,
    dispatch.GateDenied,
    dispatch.RateLimited,
    dispatch.Upstream,
    dispatch.Unavailable,
    dispatch.Internal,
]

CODES = {
    dispatch.NotFound: "NOT_FOUND",
    dispatch.Conflict: "CONFLICT",
    dispatch.InvalidInput: "INVALID_INPUT",
    dispatch.Unauthorized: "UNAUTHORIZED",
    dispatch.Forbidden: "FORBIDDEN",
    dispatch.GateDenied: "GATE_DENIED",
    dispatch.RateLimited: "RATE_LIMITED",
    dispatch.Upstream: "UPSTREAM",
    dispatch.Unavailable: "UNAVAILABLE",
    dispatch.Internal: "INTERNAL",
}


def test_every_class_is_a_dispatch_error() -> None:
    assert issubclass(dispatch.DispatchError, Exception)
    for cls in ALL:
        assert issubclass(cls, dispatch.DispatchError), cls


def test_not_found(engine: Dispatch) -> None:
    with pytest.raises(dispatch.NotFound) as info:
        engine.get_issue("DISPATCH-9999")
    assert info.value.code == "NOT_FOUND"
    assert "DISPATCH-9999" in info.value.message


def test_conflict(engine: Dispatch) -> None:
    i = engine.create_issue("x")
    with pytest.raises(dispatch.Conflict):
        engine.cancel(i.id)


def test_invalid_input_names_the_field(engine: Dispatch) -> None:
    with pytest.raises(dispatch.InvalidInput) as info:
        engine.create_issue("   ")
    assert info.value.field == "title"
    with pytest.raises(dispatch.InvalidInput) as info:
        engine.create_issue("x", priority="urgentest")
    assert info.value.field == "priority"


def test_unauthorized_portal_token(engine: Dispatch) -> None:
    c = engine.create_customer("Acme")
    assert engine.portal_customer("acme", c.portal_token).id == c.id
    with pytest.raises(dispatch.Unauthorized):
        engine.portal_customer("acme", "0" * 64)
    with pytest.raises(dispatch.Unauthorized):
        engine.portal_customer("other", c.portal_token)


def test_forbidden_by_the_close_gate(engine: Dispatch) -> None:
    r = engine.ingest(ErrorEvent(message="boom", source="a", feature="b"))
    with pytest.raises(dispatch.Forbidden) as info:
        engine.update_issue(r.issue.id, column="Done")
    assert "fix" in str(info.value).lower()


def test_unavailable_after_close(engine: Dispatch) -> None:
    engine.close()
    with pytest.raises(dispatch.Unavailable):
        engine.kill_switch()


class Raising:
    """An alert source that raises what it is given: every kind makes the round trip Python →
    engine error → Python exception with the same class and fields."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def parse(self, headers: Mapping[str, str], body: bytes) -> List[ErrorEvent]:
        raise self.exc


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_every_kind_round_trips(make_engine: Callable[..., Dispatch], cls: Type[dispatch.DispatchError]) -> None:
    exc = cls("said no")
    if cls is dispatch.InvalidInput:
        exc.field = "body"  # type: ignore[attr-defined]
    if cls is dispatch.GateDenied:
        exc.reason = "daily_budget"  # type: ignore[attr-defined]
    if cls is dispatch.Upstream:
        exc.service = "ledger"  # type: ignore[attr-defined]
        exc.status = 503  # type: ignore[attr-defined]
    d = make_engine(alert_sources={"raising": Raising(exc)})
    with pytest.raises(cls) as info:
        d.ingest_payload("raising", b"{}")
    e = info.value
    assert type(e) is cls
    assert e.code == CODES[cls]
    assert e.message == "said no"
    if cls is dispatch.InvalidInput:
        assert e.field == "body"  # type: ignore[attr-defined]
    if cls is dispatch.GateDenied:
        assert e.reason == "daily_budget"  # type: ignore[attr-defined]
    if cls is dispatch.Upstream:
        assert (e.service, e.status) == ("ledger", 503)  # type: ignore[attr-defined]


def test_any_other_exception_is_upstream_with_its_traceback(make_engine: Callable[..., Dispatch]) -> None:
    def broken_helper() -> None:
        raise KeyError("alerts")

    class Broken:
        def parse(self, headers: Mapping[str, str], body: bytes) -> List[ErrorEvent]:
            broken_helper()
            return []

    d = make_engine(alert_sources={"broken": Broken()})
    with pytest.raises(dispatch.Upstream) as info:
        d.ingest_payload("broken", b"{}")
    e = info.value
    assert e.service == "alert source broken"
    assert e.status == 0
    assert "Traceback (most recent call last)" in e.message
    assert "broken_helper" in e.message and "KeyError: 'alerts'" in e.message
    assert d.create_issue("still works").number == 1, "nothing crashed"
