"""Ingest and issues: every method of the sync facade that reads or changes issues."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import List

import pytest

import dispatch
from dispatch import Dispatch, ErrorEvent, Priority

FIXTURES = Path(__file__).resolve().parents[2] / "dispatch-adapters" / "tests" / "fixtures"


def event(message: str = "payment failed for order 42") -> ErrorEvent:
    return ErrorEvent(message=message, source="billing", feature="checkout")


def test_memory_store_by_default() -> None:
    with Dispatch() as d:
        r = d.ingest(event())
        assert r.created and r.issue.identifier == "DISPATCH-1"


def test_ingest_creates_then_dedupes(engine: Dispatch) -> None:
    first = engine.ingest(event())
    assert first.created
    assert first.event_count == 1
    assert first.issue.title == "[billing/checkout] payment failed for order 42"
    again = engine.ingest(event())
    assert not again.created, "same fingerprint"
    assert again.issue.id == first.issue.id
    assert again.fingerprint == first.fingerprint
    assert again.event_count == 2
    got = engine.get_issue(first.issue.identifier)
    assert got.id == first.issue.id
    assert got.created_at.tzinfo is not None
    assert got == engine.get_issue(first.issue.id), "by id or identifier"


def test_ingest_many_and_event_fields(engine: Dispatch) -> None:
    seen = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=timezone.utc)
    reports = engine.ingest_many(
        [
            ErrorEvent(
                message="disk full",
                source="storage",
                feature="uploads",
                event_count=3,
                first_seen=seen,
                last_seen=seen,
                stack_trace="at upload()",
            ),
            event(),
        ]
    )
    assert [r.created for r in reports] == [True, True]
    assert reports[0].event_count == 3
    assert "at upload()" in (reports[0].issue.description or "")


def test_sixteen_threads_one_fingerprint(engine: Dispatch) -> None:
    per_thread = 10
    errors: List[BaseException] = []
    start = threading.Barrier(16)

    def work() -> None:
        try:
            start.wait()
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
    issues = list(engine.list_issues())
    assert len(issues) == 1, "one fingerprint, one issue"
    last = engine.ingest(event())
    assert last.event_count == 16 * per_thread + 1
    assert not last.created


def test_ingest_grafana_payload(engine: Dispatch) -> None:
    body = (FIXTURES / "grafana" / "alert-firing.json").read_bytes()
    out = engine.ingest_payload("grafana", body)
    assert len(out.reports) == 2
    assert len(out.skipped) == 1 and "resolved" in out.skipped[0]
    assert out.reports[0].issue.title.startswith("[checkout-api/payments]")
    assert all(r.created for r in out.reports)


def test_ingest_sentry_payload(engine: Dispatch) -> None:
    body = (FIXTURES / "sentry" / "issue-created.json").read_bytes()
    hs = json.loads((FIXTURES / "sentry" / "headers.json").read_text())["files"]["issue-created.json"]
    out = engine.ingest_payload("sentry", body, hs)
    assert len(out.reports) == 1
    assert out.reports[0].issue.title == "[front-end] ReferenceError: blooopy is not defined"


def test_unknown_alert_source_is_invalid_input(engine: Dispatch) -> None:
    with pytest.raises(dispatch.InvalidInput) as info:
        engine.ingest_payload("nagios", b"{}")
    assert info.value.field == "source"
    assert "grafana" in str(info.value)


def test_create_get_update_delete(engine: Dispatch) -> None:
    i = engine.create_issue("Export is slow", description="CSV export takes minutes", priority="P2")
    assert i.identifier == "DISPATCH-1"
    assert i.priority is Priority.P2
    assert i.description == "CSV export takes minutes"
    u = engine.update_issue(
        i.identifier, title="Export is very slow", priority=Priority.P1, assignee="ada"
    )
    assert (u.title, u.priority, u.assignee) == ("Export is very slow", Priority.P1, "ada")
    assert u.description == "CSV export takes minutes", "fields not given stay"
    assert u.version > i.version
    cleared = engine.update_issue(i.id, description=None, assignee=None)
    assert cleared.description is None and cleared.assignee is None
    moved = engine.update_issue(i.id, column="In Progress")
    assert moved.column_id != i.column_id
    gone = engine.delete_issue(i.identifier)
    assert gone.id == i.id
    with pytest.raises(dispatch.NotFound):
        engine.get_issue(i.id)


def test_create_in_column_and_list_by_column(engine: Dispatch) -> None:
    a = engine.create_issue("investigating", column="Investigating")
    engine.create_issue("in backlog")
    todo = list(engine.list_issues(column="Investigating"))
    assert [x.id for x in todo] == [a.id]


def test_list_by_assignee_and_watcher(engine: Dispatch) -> None:
    mine = [engine.create_issue(f"mine {n}", assignee="Claude") for n in range(3)]
    engine.create_issue("someone else's", assignee="Codex")
    engine.create_issue("nobody's")
    got = list(engine.list_issues(assignee="CLAUDE", page_size=2))
    assert [i.id for i in got] == [i.id for i in reversed(mine)], "the whole name, any case; pages"
    acme = engine.create_customer("Acme")
    watched = mine[1]
    engine.watch(watched.identifier, acme.id)
    assert [i.id for i in engine.list_issues(watched_by=acme.id)] == [watched.id]


def test_list_iterates_pages_lazily(engine: Dispatch, monkeypatch: pytest.MonkeyPatch) -> None:
    for n in range(7):
        engine.create_issue(f"issue {n}")
    calls: List[str] = []
    real = engine._engine

    class Spy:
        def call(self, op: str, args: str) -> str:
            calls.append(op)
            return real.call(op, args)

    monkeypatch.setattr(engine, "_engine", Spy())
    it = engine.list_issues(page_size=3)
    assert calls == [], "nothing fetched before iteration"
    first = next(it)
    assert first.number == 7, "newest first"
    assert calls == ["list_issues"]
    rest = list(it)
    assert [x.number for x in rest] == [6, 5, 4, 3, 2, 1]
    assert calls == ["list_issues"] * 3


def test_search(engine: Dispatch) -> None:
    hit = engine.create_issue("Checkout button unresponsive on Safari")
    engine.create_issue("Nightly report email missing")
    hits = engine.search_issues("checkout safari")
    assert hits and hits[0].issue.id == hit.id
    assert hits[0].score > 0
    assert all(h.issue.id != hit.id for h in engine.search_issues("nightly email")[:1])


def test_comments(engine: Dispatch) -> None:
    i = engine.create_issue("needs discussion")
    c = engine.add_comment(i.identifier, "looking into it", author="ada")
    assert (c.body, c.author, c.issue_id) == ("looking into it", "ada", i.id)
    engine.add_comment(i.id, "found it")
    assert [x.body for x in engine.comments(i.identifier)] == ["looking into it", "found it"]


def test_naive_datetime_is_invalid_input(engine: Dispatch) -> None:
    e = event()
    e.first_seen = datetime(2026, 1, 1)
    with pytest.raises(dispatch.InvalidInput) as info:
        engine.ingest(e)
    assert info.value.field == "first_seen"


def test_config_by_keyword(database_url: str) -> None:
    with Dispatch(database_url, default_issue_prefix="OPS") as d:
        assert d.create_issue("x").identifier == "OPS-1"
    with pytest.raises(dispatch.InvalidInput) as info:
        Dispatch(database_url, daily_spawn_budget_error="lots")
    assert info.value.field == "DAILY_SPAWN_BUDGET_ERROR"


def test_close_and_context_manager(database_url: str) -> None:
    with Dispatch(database_url) as d:
        d.create_issue("x")
    with pytest.raises(dispatch.Unavailable):
        d.get_issue("DISPATCH-1")
    d.close()  # idempotent
    with Dispatch(database_url) as again:
        assert again.get_issue("DISPATCH-1").title == "x", "the store outlives the engine"




def test_event_fast_json_equals_the_generic_form() -> None:
    from dispatch._types import _dump

    seen = datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc)
    e = ErrorEvent(
        message="m",
        source="s",
        feature="f",
        error_message="E",
        stack_trace="st",
        sample_lines=["a"],
        event_count=2,
        first_seen=seen,
        last_seen=seen,
        labels={"k": "v"},
        values={"x": "1"},
        external_id="id",
        link="https://x",
        title="t",
        description="d",
        priority=Priority.P2,
    )
    assert e._json() == _dump(e), "everything set: everything sent"
    bare = ErrorEvent(message="m")
    slim, full = bare._json(), _dump(bare)
    assert all(full[k] == v for k, v in slim.items())
    assert all(full[k] in (None, [], {}) for k in full.keys() - slim.keys()), "only empties left out"
