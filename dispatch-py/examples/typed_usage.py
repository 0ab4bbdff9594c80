"""The rest of the API under ``mypy --strict``: async facade, adapters, the logging handler."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
from typing import List, Mapping

import dispatch
from dispatch import (
    AsyncDispatch,
    Dispatch,
    DispatchReceipt,
    ErrorEvent,
    MergedPr,
    Outcome,
    Run,
    RunJob,
    RunResult,
)
from dispatch.logging import DispatchHandler


class Lines:
    def parse(self, headers: Mapping[str, str], body: bytes) -> List[ErrorEvent]:
        return [ErrorEvent(message=line, source="app", feature="lines") for line in body.decode().splitlines()]


class Runner:
    name = "example"

    def dispatch(self, job: RunJob) -> DispatchReceipt:
        if job.reporter is not None:
            job.reporter.terminal("started\n")
        return DispatchReceipt(external_id=job.run.id)

    def cancel(self, run: Run) -> bool:
        return True


def sync_part() -> None:
    with Dispatch(runner=Runner(), alert_sources={"lines": Lines()}) as d:
        out = d.ingest_payload("lines", b"boom\nbang")
        issue = out.reports[0].issue
        try:
            d.update_issue(issue.identifier, column="Done")
        except dispatch.Forbidden as e:
            print(e.code, e.message)
        d.report_pr_merged(MergedPr(number=1, merged_at=datetime.now(timezone.utc), body=f"Fixes {issue.identifier}"))
        status = d.fix_status(issue.id)
        print(status.can_close, status.close_block_reason)
        spawn = d.request_spawn(issue.id)
        if spawn.run_id is not None:
            d.dispatcher_step()
            d.finish_run(spawn.run_id, RunResult(outcome=Outcome.COMPLETED))
        logging.getLogger("app").addHandler(DispatchHandler(d))


async def async_part() -> None:
    async with AsyncDispatch() as d:
        reports = await asyncio.gather(*(d.ingest(ErrorEvent(message="x", source="app", feature="async")) for _ in range(3)))
        print(reports[-1].event_count)
        async for issue in d.list_issues():
            print(issue.identifier)


if __name__ == "__main__":
    sync_part()
    asyncio.run(async_part())
