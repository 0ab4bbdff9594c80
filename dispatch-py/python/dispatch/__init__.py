"""The Dispatch engine embedded in Python.

``Dispatch(database_url=None, **config)`` keeps everything in memory; a file path or ``sqlite:``
URL opens a SQLite database, a ``postgres://`` URL PostgreSQL. ``config`` takes the engine's
environment settings by name (``daily_spawn_budget_error=5``, ``auto_spawn_origins="loki"``).
Every method is one engine use-case; the GIL is released while the engine works, so one instance
may be shared by threads. ``AsyncDispatch`` has the same methods as awaitables on the shared
runtime.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import weakref
from datetime import datetime
from typing import (
    Any,
    AsyncIterator,
    Callable,
    Dict,
    Generic,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    TypeVar,
    Union,
)

from dispatch._adapters import AlertSource, Runner, RunJob, RunReporter, _RunnerBridge, _SourceBridge
from dispatch._adapters import _runner_name
from dispatch._dispatch import (
    Conflict,
    DispatchError,
    Engine,
    Forbidden,
    GateDenied,
    Internal,
    InvalidInput,
    NotFound,
    RateLimited,
    Unauthorized,
    Unavailable,
    Upstream,
)
from dispatch._types import (
    AgentStatus,
    CancelResult,
    CancelState,
    Comment,
    Customer,
    Decision,
    DispatchReceipt,
    ErrorEvent,
    ErrorLink,
    FixAttempt,
    FixAttemptReport,
    FixStatus,
    FleetStatus,
    IngestReport,
    Issue,
    KillSwitch,
    MergedPr,
    Outcome,
    PayloadReport,
    PlanFields,
    PlanReview,
    PlanStatus,
    Priority,
    Run,
    RunResult,
    RunStatus,
    SearchHit,
    SpawnDecision,
    SpawnStatus,
    SweepReport,
    VerificationStatus,
    WorkflowKind,
    _dump,
    _load,
)

__all__ = [
    "AgentStatus",
    "AlertSource",
    "AsyncDispatch",
    "Background",
    "CancelResult",
    "CancelState",
    "Comment",
    "Conflict",
    "Customer",
    "Decision",
    "Dispatch",
    "DispatchError",
    "DispatchReceipt",
    "ErrorEvent",
    "ErrorLink",
    "FixAttempt",
    "FixAttemptReport",
    "FixStatus",
    "FleetStatus",
    "Forbidden",
    "GateDenied",
    "IngestReport",
    "Internal",
    "InvalidInput",
    "Issue",
    "KillSwitch",
    "MergedPr",
    "NotFound",
    "Outcome",
    "PayloadReport",
    "PlanFields",
    "PlanReview",
    "PlanStatus",
    "Priority",
    "RateLimited",
    "Run",
    "RunJob",
    "RunReporter",
    "RunResult",
    "RunStatus",
    "Runner",
    "SearchHit",
    "SpawnDecision",
    "SpawnStatus",
    "SweepReport",
    "Unauthorized",
    "Unavailable",
    "Upstream",
    "VerificationStatus",
    "WorkflowKind",
]

T = TypeVar("T")

_UNSET: Any = object()


_dumps = json.JSONEncoder(separators=(",", ":")).encode


class _Req(Generic[T]):
    """One engine operation: its name, its JSON arguments and how to read its answer."""

    __slots__ = ("op", "args", "read")

    def __init__(self, op: str, args: Dict[str, Any], read: Callable[[Any], T]) -> None:
        self.op = op
        self.args = args
        self.read = read


def _issue_list(v: Any) -> List[Issue]:
    return [_load(Issue, x) for x in v]


def _setting(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple, set)):
        return ",".join(str(x) for x in v)
    return str(v)


def _changes(**kw: Any) -> Dict[str, Any]:
    """Only the arguments given (``None`` included: it clears)."""
    return {k: _dump(v, k) for k, v in kw.items() if v is not _UNSET}


def _opt_str(v: Optional[Union[str, Priority, WorkflowKind, AgentStatus]]) -> Optional[str]:
    return None if v is None else str(v.value if hasattr(v, "value") else v)


_OPEN: "weakref.WeakSet[_Base]" = weakref.WeakSet()


@atexit.register
def _stop_loops_at_exit() -> None:
    """Loops left running must not call into Python while the interpreter shuts down."""
    for f in list(_OPEN):
        try:
            f._engine.stop()
        except Exception:  # noqa: BLE001 - exiting anyway
            pass


class _Base:
    """What both facades share: construction and the request builders."""

    _engine: Engine

    def __init__(
        self,
        database_url: Optional[str] = None,
        *,
        runner: Optional[Runner] = None,
        alert_sources: Optional[Mapping[str, AlertSource]] = None,
        actor: str = "python",
        app_url: Optional[str] = None,
        **config: Any,
    ) -> None:
        settings = {k.upper(): _setting(v) for k, v in config.items() if v is not None}
        bridge: Optional[_RunnerBridge] = None
        runner_arg = None
        if runner is not None:
            bridge = _RunnerBridge(runner)
            runner_arg = (_runner_name(runner), bridge)
        sources = {name: _SourceBridge(src) for name, src in (alert_sources or {}).items()}
        self._engine = Engine(database_url, settings, runner_arg, sources)
        self._actor = actor
        self._app_url = (app_url or settings.get("APP_URL") or "http://localhost:3000").rstrip("/")
        if bridge is not None:
            bridge.attach(self)
        _OPEN.add(self)

    # --- request builders ----------------------------------------------------------------------

    def _r(self, op: str, read: Callable[[Any], T], **args: Any) -> _Req[T]:
        args.setdefault("actor", self._actor)
        return _Req(op, args, read)

    def _ingest_req(self, events: Sequence[ErrorEvent]) -> _Req[List[IngestReport]]:
        evs = [e._json() for e in events]
        return self._r("ingest", lambda v: [IngestReport._from(x) for x in v], events=evs)

    def _payload_req(
        self, source: str, body: Union[bytes, str], headers: Optional[Mapping[str, str]]
    ) -> _Req[PayloadReport]:
        text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
        return self._r(
            "ingest_payload",
            lambda v: PayloadReport(
                reports=[IngestReport._from(x) for x in v["reports"]], skipped=list(v["skipped"])
            ),
            source=source,
            body=text,
            headers=[[k, v] for k, v in (headers or {}).items()],
        )

    def _list_req(
        self,
        before: Optional[int],
        limit: int,
        column: Optional[str],
        customer_id: Optional[str],
        spawn_active: Optional[bool],
        assignee: Optional[str] = None,
        watched_by: Optional[str] = None,
    ) -> _Req[List[Issue]]:
        return self._r(
            "list_issues",
            _issue_list,
            before_number=before,
            limit=limit,
            column=column,
            customer_id=customer_id,
            spawn_active=spawn_active,
            assignee=assignee,
            watched_by=watched_by,
        )

    def portal_url(self, customer: Customer) -> str:
        """The customer's portal link (``{app_url}/portal/{slug}?token=...``): a secret."""
        return f"{self._app_url}/portal/{customer.slug}?token={customer.portal_token}"


def _fix_status(v: Any) -> FixStatus:
    return _load(FixStatus, v)


class Dispatch(_Base):
    """The engine, synchronous. Safe to share between threads."""

    def _do(self, req: _Req[T]) -> T:
        return req.read(json.loads(self._engine.call(req.op, _dumps(req.args))))

    # --- ingest --------------------------------------------------------------------------------

    def ingest(self, event: ErrorEvent) -> IngestReport:
        """Ingests one error event: dedup by fingerprint, recurrence check, gates."""
        # The hot path, written out (no request object): see docs/performance.md.
        args = _dumps({"events": [event._json()]})
        return IngestReport._from(json.loads(self._engine.call("ingest", args))[0])

    def ingest_many(self, events: Sequence[ErrorEvent]) -> List[IngestReport]:
        """Ingests the events in order, in one call; the first error stops the batch (the events
        before it are in)."""
        return self._do(self._ingest_req(events))

    def ingest_payload(
        self,
        source: str,
        body: Union[bytes, str],
        headers: Optional[Mapping[str, str]] = None,
    ) -> PayloadReport:
        """Parses a webhook body with an alert source (``grafana``, ``sentry`` or one passed as
        ``alert_sources=``) and ingests its events."""
        return self._do(self._payload_req(source, body, headers))

    # --- issues --------------------------------------------------------------------------------

    def create_issue(
        self,
        title: str,
        *,
        description: Optional[str] = None,
        priority: Union[Priority, str] = Priority.P3,
        assignee: Optional[str] = None,
        customer_id: Optional[str] = None,
        column: Optional[str] = None,
    ) -> Issue:
        return self._do(
            self._r(
                "create_issue",
                lambda v: _load(Issue, v),
                title=title,
                description=description,
                priority=_opt_str(priority),
                assignee=assignee,
                customer_id=customer_id,
                column=column,
            )
        )

    def get_issue(self, issue: str) -> Issue:
        """One issue by id or identifier (``DISPATCH-7``)."""
        return self._do(self._r("get_issue", lambda v: _load(Issue, v), issue=issue))

    def list_issues(
        self,
        *,
        column: Optional[str] = None,
        customer_id: Optional[str] = None,
        spawn_active: Optional[bool] = None,
        assignee: Optional[str] = None,
        watched_by: Optional[str] = None,
        page_size: int = 100,
    ) -> Iterator[Issue]:
        """Issues, newest first, fetched a page at a time as the iterator advances. ``assignee``
        matches the whole name in any case; ``watched_by`` is a customer id."""
        before: Optional[int] = None
        while True:
            page = self._do(
                self._list_req(
                    before, page_size, column, customer_id, spawn_active, assignee, watched_by
                )
            )
            yield from page
            if len(page) < page_size:
                return
            before = page[-1].number

    def update_issue(
        self,
        issue: str,
        *,
        title: Optional[str] = _UNSET,
        description: Optional[str] = _UNSET,
        column: Optional[str] = _UNSET,
        priority: Optional[Union[Priority, str]] = _UNSET,
        assignee: Optional[str] = _UNSET,
        customer_id: Optional[str] = _UNSET,
        agent_status: Optional[Union[AgentStatus, str]] = _UNSET,
        blocked_reason: Optional[str] = _UNSET,
    ) -> Issue:
        """Changes the fields given; ``None`` clears an optional field. A move into a closed
        column goes through the close gate (``Forbidden`` when the fix is not verified)."""
        ch = _changes(
            title=title,
            description=description,
            column=column,
            priority=priority,
            assignee=assignee,
            customer_id=customer_id,
            agent_status=agent_status,
            blocked_reason=blocked_reason,
        )
        return self._do(self._r("update_issue", lambda v: _load(Issue, v), issue=issue, **ch))

    def delete_issue(self, issue: str) -> Issue:
        return self._do(self._r("delete_issue", lambda v: _load(Issue, v), issue=issue))

    def search_issues(self, query: str, limit: int = 20) -> List[SearchHit]:
        return self._do(
            self._r("search", lambda v: [_load(SearchHit, x) for x in v], query=query, limit=limit)
        )

    def add_comment(self, issue: str, body: str, *, author: Optional[str] = None) -> Comment:
        return self._do(
            self._r("add_comment", lambda v: _load(Comment, v), issue=issue, body=body, author=author)
        )

    def comments(self, issue: str) -> List[Comment]:
        return self._do(self._r("comments", lambda v: [_load(Comment, x) for x in v], issue=issue))

    # --- agents --------------------------------------------------------------------------------

    def request_spawn(
        self,
        issue: str,
        kind: Union[WorkflowKind, str] = WorkflowKind.ERROR_FIX,
        *,
        force: bool = False,
        additional_context: Optional[str] = None,
    ) -> SpawnDecision:
        """Asks for an agent. The gates apply; their decision comes back as a value."""
        return self._do(
            self._r(
                "spawn",
                SpawnDecision._from,
                issue=issue,
                kind=_opt_str(kind),
                force=force,
                additional_context=additional_context,
            )
        )

    def cancel(self, issue: str) -> CancelResult:
        """Cancels the issue's active run (``Conflict`` when there is none)."""
        return self._do(self._r("cancel", lambda v: _load(CancelResult, v), issue=issue))

    def runs(self, issue: str) -> List[Run]:
        """The issue's runs, newest first."""
        return self._do(self._r("runs", lambda v: [_load(Run, x) for x in v], issue=issue))

    def finish_run(self, run_id: str, result: RunResult) -> Run:
        """Records a run's result, as the agent's callback does."""
        return self._do(
            self._r("finish_run", lambda v: _load(Run, v), run_id=run_id, result=_dump(result), actor=None)
        )

    def append_terminal(self, run_id: str, text: str) -> None:
        self._do(self._r("append_terminal", lambda v: None, run_id=run_id, text=text))

    def transcript(self, run_id: str) -> str:
        return self._do(self._r("transcript", str, run_id=run_id))

    # --- plans ---------------------------------------------------------------------------------

    def submit_plan(self, issue: str, content: str) -> Issue:
        return self._do(
            self._r("submit_plan", lambda v: _load(Issue, v), issue=issue, content=content)
        )

    def approve_plan(
        self, issue: str, *, approved_by: Optional[str] = None, start_implementation: bool = False
    ) -> PlanReview:
        return self._do(
            self._r(
                "approve_plan",
                PlanReview._from,
                issue=issue,
                approved_by=approved_by,
                start_implementation=start_implementation,
            )
        )

    def reject_plan(self, issue: str, feedback: str) -> Issue:
        return self._do(
            self._r("reject_plan", lambda v: _load(Issue, v), issue=issue, feedback=feedback)
        )

    # --- fixes ---------------------------------------------------------------------------------

    def report_pr_merged(self, pr: MergedPr) -> List[FixAttemptReport]:
        """A merged PR: the issues it names (or matches) get a fix attempt."""
        return self._do(
            self._r(
                "pr_merged",
                lambda v: [_load(FixAttemptReport, x) for x in v],
                pr=_dump(pr, "pr"),
                actor=None,
            )
        )

    def report_deploy(self, sha: Optional[str] = None, deployed_at: Optional[datetime] = None) -> int:
        """A deploy: fix attempts awaiting it start monitoring. Returns how many started."""
        return self._do(
            self._r("deploy", int, sha=sha, deployed_at=_dump(deployed_at, "deployed_at"))
        )

    def record_fix(self, pr: MergedPr, issues: Sequence[str]) -> List[FixAttemptReport]:
        """Records a merged PR as a fix attempt for the given issues (a matcher of your own
        decided them); unknown issues are skipped."""
        return self._do(
            self._r(
                "record_fix",
                lambda v: [_load(FixAttemptReport, x) for x in v],
                pr=_dump(pr, "pr"),
                issues=list(issues),
            )
        )

    def fix_status(self, issue: str) -> FixStatus:
        return self._do(self._r("fix_status", _fix_status, issue=issue))

    # --- customers -----------------------------------------------------------------------------

    def create_customer(
        self,
        name: str,
        *,
        slug: Optional[str] = None,
        slack_channel_id: Optional[str] = None,
        brand_color: Optional[str] = None,
        logo_url: Optional[str] = None,
    ) -> Customer:
        return self._do(
            self._r(
                "create_customer",
                lambda v: _load(Customer, v),
                name=name,
                slug=slug,
                slack_channel_id=slack_channel_id,
                brand_color=brand_color,
                logo_url=logo_url,
            )
        )

    def customers(self) -> List[Customer]:
        return self._do(self._r("customers", lambda v: [_load(Customer, x) for x in v]))

    def get_customer(self, customer_id: str) -> Customer:
        return self._do(self._r("customer", lambda v: _load(Customer, v), id=customer_id))

    def update_customer(
        self,
        customer_id: str,
        *,
        name: Optional[str] = _UNSET,
        slug: Optional[str] = _UNSET,
        slack_channel_id: Optional[str] = _UNSET,
        brand_color: Optional[str] = _UNSET,
        logo_url: Optional[str] = _UNSET,
    ) -> Customer:
        ch = _changes(
            name=name,
            slug=slug,
            slack_channel_id=slack_channel_id,
            brand_color=brand_color,
            logo_url=logo_url,
        )
        return self._do(self._r("update_customer", lambda v: _load(Customer, v), id=customer_id, **ch))

    def delete_customer(self, customer_id: str) -> None:
        self._do(self._r("delete_customer", lambda v: None, id=customer_id))

    def regenerate_portal_token(self, customer_id: str) -> Customer:
        """A new portal token: the old link stops working."""
        return self._do(
            self._r("regenerate_portal_token", lambda v: _load(Customer, v), id=customer_id)
        )

    def watch(self, issue: str, customer_id: str) -> bool:
        """The customer sees the issue in their portal; false when it already did."""
        return self._do(self._r("add_watcher", bool, issue=issue, customer_id=customer_id))

    def portal_customer(self, slug: str, token: str) -> Customer:
        """The customer a portal link is for (``Unauthorized`` unless the token is theirs)."""
        return self._do(
            self._r("portal_customer", lambda v: _load(Customer, v), slug=slug, token=token)
        )

    # --- fleet ---------------------------------------------------------------------------------

    def fleet_status(self) -> FleetStatus:
        return self._do(self._r("fleet_status", lambda v: _load(FleetStatus, v)))

    def kill_switch(self) -> KillSwitch:
        return self._do(self._r("kill_switch", lambda v: _load(KillSwitch, v)))

    def set_kill_switch(self, enabled: bool) -> KillSwitch:
        return self._do(self._r("set_kill_switch", lambda v: _load(KillSwitch, v), enabled=enabled))

    def dispatcher_step(self) -> int:
        """One dispatcher pass (what ``run()`` repeats): hands due runs to the runner."""
        return self._do(self._r("dispatcher_step", int))

    def sweeper_step(self) -> SweepReport:
        """One sweeper pass: deferred spawns, stale runs, verification deadlines."""
        return self._do(self._r("sweeper_step", lambda v: _load(SweepReport, v)))

    # --- lifetime ------------------------------------------------------------------------------

    def run_in_background(self) -> "Background":
        """Starts the dispatcher and sweeper loops on the engine's runtime threads."""
        self._engine.start()
        return Background(self._engine)

    def run(self) -> None:
        """Runs the dispatcher and sweeper until ``close()`` (from another thread) or Ctrl-C."""
        self._engine.start()
        try:
            while not self._engine.wait(0.25):
                pass
        finally:
            self._engine.stop()

    def close(self) -> None:
        """Stops the loops; later calls raise ``Unavailable``."""
        self._engine.close()

    def __enter__(self) -> "Dispatch":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Background:
    """The running dispatcher and sweeper loops of one engine."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @property
    def running(self) -> bool:
        return self._engine.running()

    def stop(self) -> None:
        """Stops the loops and waits until they have ended."""
        self._engine.stop()

    def __enter__(self) -> "Background":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _settle(fut: "asyncio.Future[str]", ok: bool, value: Any) -> None:
    if fut.cancelled():
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


class AsyncDispatch(_Base):
    """The engine with awaitable methods, run on the engine's shared tokio runtime (no thread
    per call): many calls may be in flight at once, e.g. under ``asyncio.gather``."""

    async def _do(self, req: _Req[T]) -> T:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[str] = loop.create_future()

        def done(ok: bool, value: Any) -> None:
            try:
                loop.call_soon_threadsafe(_settle, fut, ok, value)
            except RuntimeError:
                pass  # the loop was closed while the call ran: nobody is waiting

        self._engine.call_async(req.op, _dumps(req.args), done)
        return req.read(json.loads(await fut))

    async def ingest(self, event: ErrorEvent) -> IngestReport:
        return (await self._do(self._ingest_req([event])))[0]

    async def ingest_many(self, events: Sequence[ErrorEvent]) -> List[IngestReport]:
        return await self._do(self._ingest_req(events))

    async def ingest_payload(
        self,
        source: str,
        body: Union[bytes, str],
        headers: Optional[Mapping[str, str]] = None,
    ) -> PayloadReport:
        return await self._do(self._payload_req(source, body, headers))

    async def create_issue(
        self,
        title: str,
        *,
        description: Optional[str] = None,
        priority: Union[Priority, str] = Priority.P3,
        assignee: Optional[str] = None,
        customer_id: Optional[str] = None,
        column: Optional[str] = None,
    ) -> Issue:
        return await self._do(
            self._r(
                "create_issue",
                lambda v: _load(Issue, v),
                title=title,
                description=description,
                priority=_opt_str(priority),
                assignee=assignee,
                customer_id=customer_id,
                column=column,
            )
        )

    async def get_issue(self, issue: str) -> Issue:
        return await self._do(self._r("get_issue", lambda v: _load(Issue, v), issue=issue))

    async def list_issues(
        self,
        *,
        column: Optional[str] = None,
        customer_id: Optional[str] = None,
        spawn_active: Optional[bool] = None,
        assignee: Optional[str] = None,
        watched_by: Optional[str] = None,
        page_size: int = 100,
    ) -> AsyncIterator[Issue]:
        before: Optional[int] = None
        while True:
            page = await self._do(
                self._list_req(
                    before, page_size, column, customer_id, spawn_active, assignee, watched_by
                )
            )
            for i in page:
                yield i
            if len(page) < page_size:
                return
            before = page[-1].number

    async def update_issue(
        self,
        issue: str,
        *,
        title: Optional[str] = _UNSET,
        description: Optional[str] = _UNSET,
        column: Optional[str] = _UNSET,
        priority: Optional[Union[Priority, str]] = _UNSET,
        assignee: Optional[str] = _UNSET,
        customer_id: Optional[str] = _UNSET,
        agent_status: Optional[Union[AgentStatus, str]] = _UNSET,
        blocked_reason: Optional[str] = _UNSET,
    ) -> Issue:
        ch = _changes(
            title=title,
            description=description,
            column=column,
            priority=priority,
            assignee=assignee,
            customer_id=customer_id,
            agent_status=agent_status,
            blocked_reason=blocked_reason,
        )
        return await self._do(self._r("update_issue", lambda v: _load(Issue, v), issue=issue, **ch))

    async def delete_issue(self, issue: str) -> Issue:
        return await self._do(self._r("delete_issue", lambda v: _load(Issue, v), issue=issue))

    async def search_issues(self, query: str, limit: int = 20) -> List[SearchHit]:
        return await self._do(
            self._r("search", lambda v: [_load(SearchHit, x) for x in v], query=query, limit=limit)
        )

    async def add_comment(self, issue: str, body: str, *, author: Optional[str] = None) -> Comment:
        return await self._do(
            self._r("add_comment", lambda v: _load(Comment, v), issue=issue, body=body, author=author)
        )

    async def comments(self, issue: str) -> List[Comment]:
        return await self._do(
            self._r("comments", lambda v: [_load(Comment, x) for x in v], issue=issue)
        )

    async def request_spawn(
        self,
        issue: str,
        kind: Union[WorkflowKind, str] = WorkflowKind.ERROR_FIX,
        *,
        force: bool = False,
        additional_context: Optional[str] = None,
    ) -> SpawnDecision:
        return await self._do(
            self._r(
                "spawn",
                SpawnDecision._from,
                issue=issue,
                kind=_opt_str(kind),
                force=force,
                additional_context=additional_context,
            )
        )

    async def cancel(self, issue: str) -> CancelResult:
        return await self._do(self._r("cancel", lambda v: _load(CancelResult, v), issue=issue))

    async def runs(self, issue: str) -> List[Run]:
        return await self._do(self._r("runs", lambda v: [_load(Run, x) for x in v], issue=issue))

    async def finish_run(self, run_id: str, result: RunResult) -> Run:
        return await self._do(
            self._r("finish_run", lambda v: _load(Run, v), run_id=run_id, result=_dump(result), actor=None)
        )

    async def append_terminal(self, run_id: str, text: str) -> None:
        await self._do(self._r("append_terminal", lambda v: None, run_id=run_id, text=text))

    async def transcript(self, run_id: str) -> str:
        return await self._do(self._r("transcript", str, run_id=run_id))

    async def submit_plan(self, issue: str, content: str) -> Issue:
        return await self._do(
            self._r("submit_plan", lambda v: _load(Issue, v), issue=issue, content=content)
        )

    async def approve_plan(
        self, issue: str, *, approved_by: Optional[str] = None, start_implementation: bool = False
    ) -> PlanReview:
        return await self._do(
            self._r(
                "approve_plan",
                PlanReview._from,
                issue=issue,
                approved_by=approved_by,
                start_implementation=start_implementation,
            )
        )

    async def reject_plan(self, issue: str, feedback: str) -> Issue:
        return await self._do(
            self._r("reject_plan", lambda v: _load(Issue, v), issue=issue, feedback=feedback)
        )

    async def report_pr_merged(self, pr: MergedPr) -> List[FixAttemptReport]:
        return await self._do(
            self._r(
                "pr_merged",
                lambda v: [_load(FixAttemptReport, x) for x in v],
                pr=_dump(pr, "pr"),
                actor=None,
            )
        )

    async def report_deploy(
        self, sha: Optional[str] = None, deployed_at: Optional[datetime] = None
    ) -> int:
        return await self._do(
            self._r("deploy", int, sha=sha, deployed_at=_dump(deployed_at, "deployed_at"))
        )

    async def record_fix(self, pr: MergedPr, issues: Sequence[str]) -> List[FixAttemptReport]:
        return await self._do(
            self._r(
                "record_fix",
                lambda v: [_load(FixAttemptReport, x) for x in v],
                pr=_dump(pr, "pr"),
                issues=list(issues),
            )
        )

    async def fix_status(self, issue: str) -> FixStatus:
        return await self._do(self._r("fix_status", _fix_status, issue=issue))

    async def create_customer(
        self,
        name: str,
        *,
        slug: Optional[str] = None,
        slack_channel_id: Optional[str] = None,
        brand_color: Optional[str] = None,
        logo_url: Optional[str] = None,
    ) -> Customer:
        return await self._do(
            self._r(
                "create_customer",
                lambda v: _load(Customer, v),
                name=name,
                slug=slug,
                slack_channel_id=slack_channel_id,
                brand_color=brand_color,
                logo_url=logo_url,
            )
        )

    async def customers(self) -> List[Customer]:
        return await self._do(self._r("customers", lambda v: [_load(Customer, x) for x in v]))

    async def get_customer(self, customer_id: str) -> Customer:
        return await self._do(self._r("customer", lambda v: _load(Customer, v), id=customer_id))

    async def update_customer(
        self,
        customer_id: str,
        *,
        name: Optional[str] = _UNSET,
        slug: Optional[str] = _UNSET,
        slack_channel_id: Optional[str] = _UNSET,
        brand_color: Optional[str] = _UNSET,
        logo_url: Optional[str] = _UNSET,
    ) -> Customer:
        ch = _changes(
            name=name,
            slug=slug,
            slack_channel_id=slack_channel_id,
            brand_color=brand_color,
            logo_url=logo_url,
        )
        return await self._do(
            self._r("update_customer", lambda v: _load(Customer, v), id=customer_id, **ch)
        )

    async def delete_customer(self, customer_id: str) -> None:
        await self._do(self._r("delete_customer", lambda v: None, id=customer_id))

    async def regenerate_portal_token(self, customer_id: str) -> Customer:
        return await self._do(
            self._r("regenerate_portal_token", lambda v: _load(Customer, v), id=customer_id)
        )

    async def watch(self, issue: str, customer_id: str) -> bool:
        return await self._do(self._r("add_watcher", bool, issue=issue, customer_id=customer_id))

    async def portal_customer(self, slug: str, token: str) -> Customer:
        return await self._do(
            self._r("portal_customer", lambda v: _load(Customer, v), slug=slug, token=token)
        )

    async def fleet_status(self) -> FleetStatus:
        return await self._do(self._r("fleet_status", lambda v: _load(FleetStatus, v)))

    async def kill_switch(self) -> KillSwitch:
        return await self._do(self._r("kill_switch", lambda v: _load(KillSwitch, v)))

    async def set_kill_switch(self, enabled: bool) -> KillSwitch:
        return await self._do(
            self._r("set_kill_switch", lambda v: _load(KillSwitch, v), enabled=enabled)
        )

    async def dispatcher_step(self) -> int:
        return await self._do(self._r("dispatcher_step", int))

    async def sweeper_step(self) -> SweepReport:
        return await self._do(self._r("sweeper_step", lambda v: _load(SweepReport, v)))

    def run_in_background(self) -> Background:
        self._engine.start()
        return Background(self._engine)

    async def run(self) -> None:
        """Runs the dispatcher and sweeper until this task is cancelled or ``aclose()``."""
        self._engine.start()
        loop = asyncio.get_running_loop()
        try:
            while not await loop.run_in_executor(None, self._engine.wait, 0.25):
                pass
        finally:
            self._engine.stop()

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._engine.close)

    def close(self) -> None:
        self._engine.close()

    async def __aenter__(self) -> "AsyncDispatch":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
