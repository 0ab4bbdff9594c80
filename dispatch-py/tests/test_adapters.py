"""Python adapters: an alert source and a runner written in Python drive the engine end to end."""

from __future__ import annotations

import json
import threading
from typing import Callable, Dict, List, Mapping

import pytest

from dispatch import (
    Decision,
    Dispatch,
    DispatchReceipt,
    ErrorEvent,
    Outcome,
    RunJob,
    RunResult,
    RunStatus,
)
from dispatch._types import Run


class JsonLinesSource:
    """A team's own alert format: one JSON object per line."""

    def __init__(self) -> None:
        self.headers: List[Dict[str, str]] = []

    def parse(self, headers: Mapping[str, str], body: bytes) -> List[ErrorEvent]:
        self.headers.append(dict(headers))
        out = []
        for line in body.decode().splitlines():
            d = json.loads(line)
            out.append(
                ErrorEvent(
                    origin="jsonl",
                    message=d["msg"],
                    source=d["service"],
                    feature=d.get("area", "unknown"),
                    stack_trace=d.get("stack"),
                    event_count=d.get("count", 1),
                )
            )
        return out


class ThreadedRunner:
    """Starts each job on a worker thread, which reports back like a CI job would."""

    name = "threads"

    def __init__(self) -> None:
        self.jobs: List[RunJob] = []
        self.finished = threading.Event()
        self.threads: List[threading.Thread] = []

    def dispatch(self, job: RunJob) -> DispatchReceipt:
        self.jobs.append(job)
        t = threading.Thread(target=self.work, args=(job,))
        self.threads.append(t)
        t.start()
        return DispatchReceipt(external_id=f"thread-{len(self.jobs)}")

    def work(self, job: RunJob) -> None:
        assert job.reporter is not None
        job.reporter.terminal(f"fixing {job.issue.identifier}\n")
        job.reporter.finish(
            RunResult(outcome=Outcome.COMPLETED, summary="added a retry", cost_usd=0.25, pr_number=12)
        )
        self.finished.set()

    def cancel(self, run: Run) -> bool:
        return False


def test_alert_to_issue_to_run_to_result(make_engine: Callable[..., Dispatch]) -> None:
    source = JsonLinesSource()
    runner = ThreadedRunner()
    d = make_engine(
        runner=runner,
        alert_sources={"jsonl": source},
        auto_spawn_origins="jsonl",
        min_event_count_to_spawn=1,
        spawn_delay_minutes=0,
    )
    body = b'{"msg": "KeyError: customer_id", "service": "crm", "area": "sync", "stack": "at sync()"}\n'
    out = d.ingest_payload("jsonl", body, {"X-Team": "crm"})
    assert source.headers == [{"X-Team": "crm"}]
    (report,) = out.reports
    assert report.created
    assert report.spawn is not None and report.spawn.decision is Decision.ALLOW
    issue = report.issue
    assert issue.title == "[crm/sync] KeyError: customer_id"

    with d.run_in_background():
        assert runner.finished.wait(30), "the dispatcher handed the run to the Python runner"
    for t in runner.threads:
        t.join(30)

    (job,) = runner.jobs
    assert job.issue.id == issue.id and job.run.id == report.spawn.run_id
    (run,) = d.runs(issue.id)
    assert run.status is RunStatus.COMPLETED
    assert run.runner == "threads"
    assert run.outcome is Outcome.COMPLETED and run.pr_number == 12
    assert "fixing" in d.transcript(run.id)
    after = d.get_issue(issue.id)
    assert after.run_outcome is Outcome.COMPLETED
    assert after.outcome_summary == "added a retry"


def test_runner_exception_fails_the_run_with_its_traceback(make_engine: Callable[..., Dispatch]) -> None:
    class Broken:
        def dispatch(self, job: RunJob) -> DispatchReceipt:
            return self.start_ci(job)

        def start_ci(self, job: RunJob) -> DispatchReceipt:
            raise ConnectionError("CI is down")

        def cancel(self, run: Run) -> bool:
            return False

    d = make_engine(runner=Broken(), dispatch_max_attempts=1)
    i = d.create_issue("x")
    d.request_spawn(i.id)
    assert d.dispatcher_step() == 0
    (run,) = d.runs(i.id)
    assert run.status is RunStatus.FAILED
    assert run.outcome is Outcome.FAILED
    err = run.last_error or ""
    assert "Traceback (most recent call last)" in err
    assert "start_ci" in err and "ConnectionError: CI is down" in err
    assert "Broken" in err, "the runner is named"


def test_runner_exception_is_retried_first(make_engine: Callable[..., Dispatch]) -> None:
    calls: List[str] = []

    class Flaky:
        def dispatch(self, job: RunJob) -> DispatchReceipt:
            calls.append(job.run.id)
            raise RuntimeError("try again")

        def cancel(self, run: Run) -> bool:
            return False

    d = make_engine(runner=Flaky(), dispatch_max_attempts=3)
    i = d.create_issue("x")
    d.request_spawn(i.id)
    d.dispatcher_step()
    (run,) = d.runs(i.id)
    assert run.status is RunStatus.QUEUED, "queued again with backoff"
    assert run.dispatch_attempts == 1 and "RuntimeError: try again" in (run.last_error or "")


def test_async_alert_source(make_engine: Callable[..., Dispatch]) -> None:
    class AsyncSource:
        async def parse(self, headers: Mapping[str, str], body: bytes) -> List[ErrorEvent]:
            return [ErrorEvent(message=body.decode(), source="edge", feature="tls")]

    d = make_engine(alert_sources={"edge": AsyncSource()})
    out = d.ingest_payload("edge", "certificate expired")
    assert out.reports[0].issue.title == "[edge/tls] certificate expired"


def test_alert_source_must_return_events(make_engine: Callable[..., Dispatch]) -> None:
    class Wrong:
        def parse(self, headers: Mapping[str, str], body: bytes) -> List[str]:
            return ["not an event"]

    d = make_engine(alert_sources={"wrong": Wrong()})
    with pytest.raises(Exception) as info:
        d.ingest_payload("wrong", b"")
    assert "must return a list of ErrorEvent" in str(info.value)


def test_runner_may_call_back_into_the_engine(make_engine: Callable[..., Dispatch]) -> None:
    """A runner (on the engine's blocking pool) may use the same engine synchronously."""
    holder: Dict[str, Dispatch] = {}

    class Commenting:
        def dispatch(self, job: RunJob) -> DispatchReceipt:
            holder["d"].add_comment(job.issue.id, f"run {job.run.id} starting", author="runner")
            return DispatchReceipt()

        def cancel(self, run: Run) -> bool:
            return False

    d = make_engine(runner=Commenting())
    holder["d"] = d
    i = d.create_issue("x")
    s = d.request_spawn(i.id)
    assert d.dispatcher_step() == 1
    assert [c.body for c in d.comments(i.id)] == [f"run {s.run_id} starting"]


def test_the_gil_is_released_while_the_engine_works(make_engine: Callable[..., Dispatch]) -> None:
    """A thread inside an engine call leaves Python free: the runner (which needs the GIL)
    starts, and this thread uses the same engine meanwhile."""
    entered = threading.Event()
    release = threading.Event()
    steps: List[int] = []

    class Slow:
        def dispatch(self, job: RunJob) -> DispatchReceipt:
            entered.set()
            assert release.wait(30)
            return DispatchReceipt()

        def cancel(self, run: Run) -> bool:
            return False

    d = make_engine(runner=Slow())
    d.request_spawn(d.create_issue("x").id)
    t = threading.Thread(target=lambda: steps.append(d.dispatcher_step()))
    t.start()
    assert entered.wait(30), "the runner got the GIL while dispatcher_step was in the engine"
    assert d.create_issue("meanwhile").number == 2
    release.set()
    t.join(30)
    assert steps == [1]


def test_runner_cancel_exception_still_cancels(make_engine: Callable[..., Dispatch]) -> None:
    class CannotStop:
        def dispatch(self, job: RunJob) -> DispatchReceipt:
            return DispatchReceipt(external_id="x")

        def cancel(self, run: Run) -> bool:
            raise OSError("agent host unreachable")

    d = make_engine(runner=CannotStop())
    i = d.create_issue("x")
    d.request_spawn(i.id)
    assert d.dispatcher_step() == 1
    c = d.cancel(i.id)
    assert c.state.value == "cancelled" and not c.runner_confirmed
    assert d.runs(i.id)[0].status is RunStatus.CANCELLED
