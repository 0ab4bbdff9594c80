"""Agents, plans, fixes, customers and the fleet: the rest of the sync facade."""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from typing import Callable, List, Optional

import pytest

import dispatch
from dispatch import (
    CancelState,
    Decision,
    Dispatch,
    DispatchReceipt,
    ErrorEvent,
    MergedPr,
    Outcome,
    PlanStatus,
    RunJob,
    RunResult,
    RunStatus,
    VerificationStatus,
    WorkflowKind,
)
from dispatch._types import Run


class RecordingRunner:
    """Accepts every dispatch, remembers the jobs and signals each one."""

    name = "recording"

    def __init__(self) -> None:
        self.jobs: List[RunJob] = []
        self.cancelled: List[str] = []
        self.dispatched = threading.Event()

    def dispatch(self, job: RunJob) -> DispatchReceipt:
        self.jobs.append(job)
        self.dispatched.set()
        return DispatchReceipt(external_id=f"ext-{len(self.jobs)}", external_url="https://ci/1")

    def cancel(self, run: Run) -> bool:
        self.cancelled.append(run.id)
        return True


def test_request_spawn_allows_and_queues_a_run(engine: Dispatch) -> None:
    i = engine.create_issue("crash on login")
    s = engine.request_spawn(i.identifier, additional_context="see the logs of 3 May")
    assert s.decision is Decision.ALLOW and s.spawned
    assert s.identifier == i.identifier and s.reason is None
    runs = engine.runs(i.identifier)
    assert [r.id for r in runs] == [s.run_id]
    assert runs[0].status is RunStatus.QUEUED
    assert runs[0].kind is WorkflowKind.ERROR_FIX
    assert runs[0].additional_context == "see the logs of 3 May"
    again = engine.request_spawn(i.identifier)
    assert again.decision is Decision.DENY and again.reason == "already_running"
    assert not again.spawned


def test_gate_decisions_are_values(make_engine: Callable[..., Dispatch]) -> None:
    d = make_engine(daily_spawn_budget_error=1)
    a = d.create_issue("first")
    b = d.create_issue("second")
    assert d.request_spawn(a.id).decision is Decision.ALLOW
    denied = d.request_spawn(b.id)
    assert denied.decision is Decision.DENY
    assert denied.reason == "daily_budget"
    assert denied.details["limit"] == 1
    forced = d.request_spawn(b.id, force=True)
    assert forced.spawned, "force skips budgets"


def test_kill_switch_get_set_and_gate(engine: Dispatch) -> None:
    k = engine.kill_switch()
    assert not k.enabled and not k.forced_by_environment and k.stored is None
    assert engine.set_kill_switch(True).enabled
    i = engine.create_issue("x")
    s = engine.request_spawn(i.id, force=True)
    assert (s.decision, s.reason) == (Decision.DENY, "kill_switch"), "nothing bypasses it"
    off = engine.set_kill_switch(False)
    assert not off.enabled and off.stored is False
    assert engine.request_spawn(i.id).spawned


def test_alert_spawn_is_deferred_with_until(make_engine: Callable[..., Dispatch]) -> None:
    d = make_engine(auto_spawn_origins="python", min_event_count_to_spawn=1, spawn_delay_minutes=5)
    r = d.ingest(ErrorEvent(message="queue stuck", source="jobs", feature="mailer"))
    assert r.spawn is not None
    assert r.spawn.decision is Decision.DEFER
    assert r.spawn.reason == "spawn_delay"
    assert r.spawn.until is not None and r.spawn.until > datetime.now(timezone.utc)
    assert d.fleet_status().deferred == 1


def test_cancel(engine: Dispatch) -> None:
    i = engine.create_issue("x")
    with pytest.raises(dispatch.Conflict):
        engine.cancel(i.id)
    engine.request_spawn(i.id)
    c = engine.cancel(i.identifier)
    assert c.state is CancelState.CANCELLED
    assert engine.runs(i.id)[0].status is RunStatus.CANCELLED


def test_dispatcher_step_runner_and_result(make_engine: Callable[..., Dispatch]) -> None:
    runner = RecordingRunner()
    d = make_engine(runner=runner)
    i = d.create_issue("NullPointerException in InvoiceService")
    s = d.request_spawn(i.id)
    assert d.dispatcher_step() == 1
    (job,) = runner.jobs
    assert job.run.id == s.run_id and job.issue.id == i.id
    assert job.inputs, "the workflow inputs"
    run = d.runs(i.id)[0]
    assert run.status is RunStatus.RUNNING
    assert (run.runner, run.external_id) == ("recording", "ext-1")
    assert job.reporter is not None
    job.reporter.terminal("running tests...\n")
    assert "running tests" in d.transcript(run.id)
    done = job.reporter.finish(
        RunResult(outcome=Outcome.COMPLETED, summary="fixed the null check", cost_usd=0.5, pr_number=7)
    )
    assert done.status is RunStatus.COMPLETED
    after = d.get_issue(i.id)
    assert after.run_outcome is Outcome.COMPLETED
    assert after.outcome_summary == "fixed the null check"
    assert after.cost_usd == pytest.approx(0.5)


def test_cancel_running_run_asks_the_runner(make_engine: Callable[..., Dispatch]) -> None:
    runner = RecordingRunner()
    d = make_engine(runner=runner)
    i = d.create_issue("x")
    s = d.request_spawn(i.id)
    d.dispatcher_step()
    c = d.cancel(i.id)
    assert c.state is CancelState.CANCELLED and c.runner_confirmed
    assert runner.cancelled == [s.run_id]


def test_no_runner_fails_dispatch_with_a_clear_message(make_engine: Callable[..., Dispatch]) -> None:
    d = make_engine(dispatch_max_attempts=1)
    i = d.create_issue("x")
    d.request_spawn(i.id)
    assert d.dispatcher_step() == 0
    run = d.runs(i.id)[0]
    assert run.status is RunStatus.FAILED
    assert "no runner configured" in (run.last_error or "")


def test_plans_submit_reject_approve(engine: Dispatch) -> None:
    i = engine.create_issue("Add CSV export", column="Investigating")
    with pytest.raises(dispatch.Conflict):
        engine.request_spawn(i.id, WorkflowKind.PRD_IMPLEMENT)
    s = engine.submit_plan(i.id, "1. add endpoint\n2. add button")
    assert s.plan.status is PlanStatus.AWAITING_REVIEW
    assert s.column_id != i.column_id, "Investigating moves to Needs Review"
    r = engine.reject_plan(i.identifier, "also export filters")
    assert r.plan.status is PlanStatus.NEEDS_REVISION
    assert r.plan.feedback == "also export filters"
    engine.submit_plan(i.id, "1. endpoint with filters\n2. button")
    review = engine.approve_plan(i.id, approved_by="ada", start_implementation=True)
    assert review.issue.plan.status is PlanStatus.APPROVED
    assert review.issue.plan.approved_by == "ada"
    assert review.issue.plan.approved_at is not None
    assert review.spawn is not None and review.spawn.spawned
    assert engine.runs(i.id)[0].kind is WorkflowKind.PRD_IMPLEMENT


def test_pr_merged_deploy_and_fix_status(make_engine: Callable[..., Dispatch]) -> None:
    d = make_engine(verify_wait_for_deploy=True)
    r = d.ingest(ErrorEvent(message="timeout talking to ledger", source="billing", feature="sync"))
    ident = r.issue.identifier
    st = d.fix_status(ident)
    assert st.has_error_link and not st.can_close and st.attempts == []
    merged = datetime.now(timezone.utc)
    reports = d.report_pr_merged(
        MergedPr(number=42, merged_at=merged, title=f"Fix {ident}: retry ledger calls", body=f"Fixes {ident}", merge_sha="abc123")
    )
    assert [x.identifier for x in reports] == [ident]
    assert reports[0].created and reports[0].attempt.pr_number == 42
    assert reports[0].attempt.status is VerificationStatus.AWAITING_DEPLOY
    assert d.report_deploy(sha="abc123") == 1
    st = d.fix_status(ident)
    assert st.latest is not None and st.latest.status is VerificationStatus.MONITORING
    assert st.latest.deadline is not None and st.latest.deadline.tzinfo is not None
    assert not st.can_close and st.close_block_reason
    with pytest.raises(dispatch.Forbidden):
        d.update_issue(ident, column="Done")


def test_record_fix_for_chosen_issues(engine: Dispatch) -> None:
    a = engine.ingest(ErrorEvent(message="a failed", source="s", feature="a")).issue
    b = engine.ingest(ErrorEvent(message="b failed", source="s", feature="b")).issue
    pr = MergedPr(number=9, merged_at=datetime.now(timezone.utc), title="retry both")
    reports = engine.record_fix(pr, [a.identifier, "DISPATCH-404", b.id])
    assert [r.issue_id for r in reports] == [a.id, b.id], "unknown issues are skipped"
    again = engine.record_fix(pr, [a.identifier])
    assert not again[0].created, "one attempt per issue and PR"
    assert engine.fix_status(a.id).latest is not None


def test_customers_and_portal_urls(make_engine: Callable[..., Dispatch]) -> None:
    d = make_engine(app_url="https://dispatch.example.com/")
    c = d.create_customer("Acme Corp", brand_color="#112233")
    assert c.slug == "acme-corp" and len(c.portal_token) == 64
    assert c.portal_token not in repr(c), "the token is a secret"
    assert d.portal_url(c) == f"https://dispatch.example.com/portal/acme-corp?token={c.portal_token}"
    assert [x.id for x in d.customers()] == [c.id]
    assert d.get_customer(c.id).name == "Acme Corp"
    u = d.update_customer(c.id, name="Acme", brand_color=None)
    assert (u.name, u.brand_color, u.slug) == ("Acme", None, "acme-corp")
    fresh = d.regenerate_portal_token(c.id)
    assert fresh.portal_token != c.portal_token
    i = d.create_issue("portal bug", customer_id=c.id)
    assert i.customer_id == c.id
    assert d.watch(i.id, c.id) is True
    assert d.watch(i.id, c.id) is False
    d.delete_customer(c.id)
    with pytest.raises(dispatch.NotFound):
        d.get_customer(c.id)


def test_fleet_status(make_engine: Callable[..., Dispatch]) -> None:
    d = make_engine(max_concurrent_spawns_error=3, daily_spawn_budget_error=9)
    f = d.fleet_status()
    assert (f.queued, f.running, f.kill_switch) == (0, 0, False)
    assert (f.max_concurrent_error_fix, f.daily_budget_error_fix) == (3, 9)
    i = d.create_issue("x")
    d.request_spawn(i.id)
    f = d.fleet_status()
    assert (f.queued, f.active_error_fix, f.spawned_today_error_fix) == (1, 1, 1)


def test_sweeper_step(engine: Dispatch) -> None:
    rep = engine.sweeper_step()
    assert rep.deferred_checked == 0 and rep.timed_out == 0


def test_run_in_background_dispatches(make_engine: Callable[..., Dispatch]) -> None:
    runner = RecordingRunner()
    d = make_engine(runner=runner)
    with d.run_in_background() as bg:
        assert bg.running
        i = d.create_issue("x")
        d.request_spawn(i.id)
        assert runner.dispatched.wait(30), "the dispatcher loop is woken by the spawn"
    assert not bg.running
    assert runner.jobs[0].issue.id == i.id


def test_run_blocks_until_close(make_engine: Callable[..., Dispatch]) -> None:
    runner = RecordingRunner()
    d = make_engine(runner=runner)
    finished = threading.Event()
    failure: List[Optional[BaseException]] = []

    def serve() -> None:
        try:
            d.run()
        except BaseException as e:  # noqa: BLE001 - reported below
            failure.append(e)
        finished.set()

    t = threading.Thread(target=serve)
    t.start()
    i = d.create_issue("x")
    d.request_spawn(i.id)
    assert runner.dispatched.wait(30)
    assert not finished.is_set()
    d.close()
    t.join(30)
    assert finished.is_set() and failure == []


def test_exit_with_loops_running_is_clean() -> None:
    """A script that never closes its engine exits normally (the loops stop at exit)."""
    import subprocess
    import sys

    code = (
        "from dispatch import Dispatch, DispatchReceipt\n"
        "class R:\n"
        "    def dispatch(self, job): return DispatchReceipt()\n"
        "    def cancel(self, run): return False\n"
        "d = Dispatch(runner=R())\n"
        "d.run_in_background()\n"
        "i = d.create_issue('x'); d.request_spawn(i.id)\n"
        "print('done')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (out.returncode, out.stdout.strip()) == (0, "done"), out.stderr


def test_finish_run_and_terminal_as_callbacks(make_engine: Callable[..., Dispatch]) -> None:
    """A script playing the agent's callbacks (no reporter object at hand)."""
    d = make_engine(runner=RecordingRunner())
    i = d.create_issue("x")
    s = d.request_spawn(i.id)
    assert s.run_id is not None and d.dispatcher_step() == 1
    d.append_terminal(s.run_id, "step 1\n")
    d.append_terminal(s.run_id, "step 2\n")
    assert d.transcript(s.run_id).splitlines() == ["step 1", "step 2"]
    result = RunResult(outcome=Outcome.BLOCKED, summary="needs a secret")
    first = d.finish_run(s.run_id, result)
    again = d.finish_run(s.run_id, result)
    assert first.status is again.status is RunStatus.COMPLETED
    assert again.outcome is Outcome.BLOCKED, "a retried callback sets, never adds"
