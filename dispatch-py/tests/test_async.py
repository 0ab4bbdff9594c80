"""AsyncDispatch: awaitables on the shared runtime."""

from __future__ import annotations

import asyncio
import threading
from typing import Iterator, List

import pytest

import dispatch
from dispatch import AsyncDispatch, Decision, DispatchReceipt, ErrorEvent, RunJob, RunStatus
from dispatch._types import Run


def event() -> ErrorEvent:
    return ErrorEvent(message="redis connection reset", source="cache", feature="sessions")


@pytest.fixture
def adispatch(database_url: str) -> Iterator[AsyncDispatch]:
    d = AsyncDispatch(database_url)
    yield d
    d.close()


def test_gather_of_100_ingests(adispatch: AsyncDispatch) -> None:
    async def main() -> None:
        reports = await asyncio.gather(*(adispatch.ingest(event()) for _ in range(100)))
        assert sum(r.created for r in reports) == 1
        assert len({r.issue.id for r in reports}) == 1
        assert sorted(r.event_count for r in reports) == list(range(1, 101))
        issues = [i async for i in adispatch.list_issues()]
        assert len(issues) == 1

    asyncio.run(main())


def test_async_methods(adispatch: AsyncDispatch) -> None:
    async def main() -> None:
        i = await adispatch.create_issue("async issue", description="d")
        assert (await adispatch.get_issue(i.identifier)).id == i.id
        u = await adispatch.update_issue(i.id, description=None)
        assert u.description is None
        await adispatch.add_comment(i.id, "hello")
        assert [c.body for c in await adispatch.comments(i.id)] == ["hello"]
        assert (await adispatch.search_issues("async"))[0].issue.id == i.id
        s = await adispatch.request_spawn(i.id)
        assert s.decision is Decision.ALLOW
        assert (await adispatch.runs(i.id))[0].status is RunStatus.QUEUED
        assert (await adispatch.fleet_status()).queued == 1
        assert (await adispatch.cancel(i.id)).state is dispatch.CancelState.CANCELLED
        assert (await adispatch.set_kill_switch(True)).enabled
        assert (await adispatch.kill_switch()).enabled
        c = await adispatch.create_customer("Initech")
        assert [x.id for x in await adispatch.customers()] == [c.id]
        assert (await adispatch.sweeper_step()).timed_out == 0
        assert await adispatch.dispatcher_step() == 0
        with pytest.raises(dispatch.NotFound):
            await adispatch.get_issue("DISPATCH-404")
        await adispatch.delete_issue(i.id)

    asyncio.run(main())


def test_list_pages_async(adispatch: AsyncDispatch) -> None:
    async def main() -> List[int]:
        for n in range(5):
            await adispatch.create_issue(f"n{n}")
        return [i.number async for i in adispatch.list_issues(page_size=2)]

    assert asyncio.run(main()) == [5, 4, 3, 2, 1]


class AsyncRunner:
    name = "async-runner"

    def __init__(self) -> None:
        self.jobs: List[RunJob] = []
        self.dispatched = threading.Event()

    async def dispatch(self, job: RunJob) -> DispatchReceipt:
        await asyncio.sleep(0)
        self.jobs.append(job)
        self.dispatched.set()
        return DispatchReceipt(external_id="a-1")

    async def cancel(self, run: Run) -> bool:
        return True


def test_async_runner_and_context_manager(database_url: str) -> None:
    runner = AsyncRunner()

    async def main() -> None:
        async with AsyncDispatch(database_url, runner=runner) as d:
            i = await d.create_issue("x")
            await d.request_spawn(i.id)
            assert await d.dispatcher_step() == 1
            assert (await d.runs(i.id))[0].external_id == "a-1"
        with pytest.raises(dispatch.Unavailable):
            await d.kill_switch()

    asyncio.run(main())
    assert len(runner.jobs) == 1


def test_async_run_until_cancelled(database_url: str) -> None:
    runner = AsyncRunner()

    async def main() -> None:
        async with AsyncDispatch(database_url, runner=runner) as d:
            task = asyncio.create_task(d.run())
            i = await d.create_issue("x")
            await d.request_spawn(i.id)
            loop = asyncio.get_running_loop()
            assert await loop.run_in_executor(None, runner.dispatched.wait, 30)
            assert runner.jobs[0].issue.id == i.id
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(main())


def test_reporter_works_with_the_async_facade(database_url: str) -> None:
    jobs: List[RunJob] = []

    class Reporting:
        def dispatch(self, job: RunJob) -> DispatchReceipt:
            jobs.append(job)
            return DispatchReceipt()

        def cancel(self, run: Run) -> bool:
            return False

    def work(job: RunJob) -> None:
        """What a CI job does later, from another thread: blocking reporter calls."""
        assert job.reporter is not None
        job.reporter.terminal("ok\n")
        job.reporter.finish(dispatch.RunResult(outcome=dispatch.Outcome.COMPLETED))

    async def main() -> None:
        async with AsyncDispatch(database_url, runner=Reporting()) as d:
            i = await d.create_issue("x")
            await d.request_spawn(i.id)
            assert await d.dispatcher_step() == 1
            await asyncio.get_running_loop().run_in_executor(None, work, jobs[0])
            (run,) = await d.runs(i.id)
            assert run.status is RunStatus.COMPLETED
            assert "ok" in await d.transcript(run.id)

    asyncio.run(main())


def test_both_facades_offer_the_same_methods() -> None:
    def public(cls: type) -> set[str]:
        return {n for n in dir(cls) if not n.startswith("_")}

    sync_only = {"__enter__", "__exit__"}
    assert public(dispatch.Dispatch) - sync_only == public(AsyncDispatch) - {"aclose"}


def test_async_plans_fixes_customers_and_runs(database_url: str) -> None:
    from datetime import datetime, timezone

    jobs: List[RunJob] = []

    class Keep:
        def dispatch(self, job: RunJob) -> DispatchReceipt:
            jobs.append(job)
            return DispatchReceipt()

        def cancel(self, run: Run) -> bool:
            return False

    async def main() -> None:
        async with AsyncDispatch(database_url, runner=Keep()) as d:
            (r1, r2) = await d.ingest_many([event(), ErrorEvent(message="other", source="a", feature="b")])
            assert r1.created and r2.created
            out = await d.ingest_payload("grafana", '{"alerts": []}')
            assert out.reports == []
            # plans
            i = await d.create_issue("feature", column="Investigating")
            assert (await d.submit_plan(i.id, "plan")).plan.status is dispatch.PlanStatus.AWAITING_REVIEW
            assert (await d.reject_plan(i.id, "more")).plan.feedback == "more"
            await d.submit_plan(i.id, "plan 2")
            review = await d.approve_plan(i.id, approved_by="ada")
            assert review.issue.plan.status is dispatch.PlanStatus.APPROVED and review.spawn is None
            # fixes
            pr = dispatch.MergedPr(number=3, merged_at=datetime.now(timezone.utc), body=f"Fixes {r1.issue.identifier}")
            assert [x.identifier for x in await d.report_pr_merged(pr)] == [r1.issue.identifier]
            assert [x.issue_id for x in await d.record_fix(pr, [r2.issue.id])] == [r2.issue.id]
            assert await d.report_deploy("sha") == 0, "nothing awaits a deploy by default"
            assert (await d.fix_status(r1.issue.id)).latest is not None
            # customers
            c = await d.create_customer("Globex")
            assert (await d.get_customer(c.id)).slug == "globex"
            assert (await d.update_customer(c.id, name="Globex Corp")).name == "Globex Corp"
            fresh = await d.regenerate_portal_token(c.id)
            assert (await d.portal_customer("globex", fresh.portal_token)).id == c.id
            assert d.portal_url(fresh).endswith(f"/portal/globex?token={fresh.portal_token}")
            assert await d.watch(r1.issue.id, c.id)
            await d.delete_customer(c.id)
            # runs
            s = await d.request_spawn(r2.issue.id)
            assert s.run_id is not None and await d.dispatcher_step() == 1
            await d.append_terminal(s.run_id, "hello from async\n")
            done = await d.finish_run(s.run_id, dispatch.RunResult(outcome=dispatch.Outcome.NO_CHANGES_NEEDED))
            assert done.status is RunStatus.COMPLETED
            assert "hello from async" in await d.transcript(s.run_id)
            assert (await d.get_issue(r2.issue.id)).run_outcome is dispatch.Outcome.NO_CHANGES_NEEDED

    asyncio.run(main())
