"""Plain Python values in and out of the engine: dataclasses, ``str`` enums, timezone-aware
datetimes. They mirror the core types' JSON form; ``_load`` builds them from it and ``_dump``
turns them back into it."""

from __future__ import annotations

import dataclasses
import enum
import re
import sys
import typing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Optional, Tuple, Type, TypeVar

T = TypeVar("T")


class _StrEnum(str, enum.Enum):
    def __str__(self) -> str:
        return str(self.value)


class Priority(_StrEnum):
    P1 = "P1"
    P2 = "P2"
    P3 = "P3"
    P4 = "P4"


class AgentStatus(_StrEnum):
    IDLE = "idle"
    INVESTIGATING = "investigating"
    IMPLEMENTING = "implementing"
    TESTING = "testing"
    RESEARCHING = "researching"
    TRIAGING = "triaging"
    BLOCKED = "blocked"
    AWAITING_REVIEW = "awaiting_review"


class SpawnStatus(_StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class WorkflowKind(_StrEnum):
    ERROR_FIX = "error_fix"
    PRD_INVESTIGATE = "prd_investigate"
    PRD_IMPLEMENT = "prd_implement"
    QA = "qa"
    DEEP_RESEARCH = "deep_research"
    AUTO_TRIAGE = "auto_triage"


class RunStatus(_StrEnum):
    QUEUED = "queued"
    DISPATCHING = "dispatching"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"


class Outcome(_StrEnum):
    COMPLETED = "completed"
    NO_CHANGES_NEEDED = "no_changes_needed"
    INVESTIGATION_COMPLETE = "investigation_complete"
    BLOCKED = "blocked"
    NEEDS_HUMAN_DECISION = "needs_human_decision"
    FAILED = "failed"


class PlanStatus(_StrEnum):
    INVESTIGATING = "investigating"
    POSTED = "posted"
    AWAITING_REVIEW = "awaiting_review"
    APPROVED = "approved"
    REJECTED = "rejected"
    NEEDS_REVISION = "needs_revision"


class VerificationStatus(_StrEnum):
    AWAITING_DEPLOY = "awaiting_deploy"
    MONITORING = "monitoring"
    VERIFIED = "verified"
    FAILED = "failed"


class Decision(_StrEnum):
    """What the spawn gates said."""

    ALLOW = "allow"
    DEFER = "defer"
    DENY = "deny"


class CancelState(_StrEnum):
    """``cancelled``: the run ended now; ``requested``: it ends when its dispatch returns."""

    CANCELLED = "cancelled"
    REQUESTED = "requested"


# --- conversion ----------------------------------------------------------------------------------

_FROMISO_RFC3339 = sys.version_info >= (3, 11)
_TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?$")


def _parse_ts(v: str) -> datetime:
    """RFC 3339 with any number of fraction digits (Python 3.9's ``fromisoformat`` takes 0, 3
    or 6; 3.11's takes them all and ``Z``), always timezone-aware."""
    if _FROMISO_RFC3339:
        t = datetime.fromisoformat(v)
        if t.tzinfo is not None:
            return t
    m = _TS.match(v)
    if m is None:
        raise ValueError(f"not an RFC 3339 timestamp: {v!r}")
    base, frac, tz = m.groups()
    text = base + ("." + (frac + "000000")[:6] if frac else "")
    if tz is None or tz == "Z":
        tz = "+00:00"
    return datetime.fromisoformat(text + tz)


def _ts_out(v: datetime, name: str) -> str:
    if v.tzinfo is None or v.utcoffset() is None:
        from dispatch._dispatch import InvalidInput

        err = InvalidInput(f"{name} must be a timezone-aware datetime")
        err.field = name
        err.code = "INVALID_INPUT"
        err.message = str(err)
        raise err
    return v.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


_Conv = Callable[[Any], Any]


def _converter(tp: Any) -> Optional[_Conv]:
    """A function from the JSON form to type ``tp`` (``None`` passes through); ``None`` when the
    JSON value is already right (str, int, bool, Any). Built once per field, not per value."""
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _converter(args[0]) if len(args) == 1 else None
    if origin in (list, List):
        (inner,) = typing.get_args(tp) or (Any,)
        item = _converter(inner)
        if item is None:
            return list
        each: _Conv = item
        return lambda v: [None if x is None else each(x) for x in v]
    if origin in (dict, Dict):
        kv = typing.get_args(tp)
        value = _converter(kv[1]) if len(kv) == 2 else None
        if value is None:
            return dict
        val: _Conv = value
        return lambda v: {k: None if x is None else val(x) for k, x in v.items()}
    if tp is datetime:
        return _parse_ts
    if isinstance(tp, type):
        if issubclass(tp, enum.Enum):
            members: Dict[Any, Any] = dict(tp._value2member_map_)
            e: Any = tp
            return lambda v: members.get(v) or e(v)
        if dataclasses.is_dataclass(tp):
            return lambda v: _load(tp, v)
        if tp is float:
            return float
    return None


_LOADERS: Dict[type, Callable[[Dict[str, Any]], Any]] = {}


def _compile_loader(cls: type) -> Callable[[Dict[str, Any]], Any]:
    """A function building ``cls`` from its JSON object, generated once per class (straight-line
    code, as ``dataclasses`` generates ``__init__``): a known key is converted, an absent one is
    left to the field's default, an unknown one is ignored (the core may grow fields)."""
    hints = typing.get_type_hints(cls, vars(sys.modules[cls.__module__]))
    ns: Dict[str, Any] = {"cls": cls}
    body = ["def load(d):", "    k = {}"]
    for n, f in enumerate(dataclasses.fields(cls)):
        if not f.init:
            continue
        conv = _converter(hints[f.name])
        key = repr(f.name)
        if conv is None:
            body.append(f"    if {key} in d: k[{key}] = d[{key}]")
        else:
            ns[f"c{n}"] = conv
            body.append(f"    v = d.get({key}, k)")
            body.append(f"    if v is not k: k[{key}] = None if v is None else c{n}(v)")
    body.append("    return cls(**k)")
    exec("\n".join(body), ns)  # noqa: S102 - generated from the dataclass's own fields
    loader: Callable[[Dict[str, Any]], Any] = ns["load"]
    return loader


def _load(cls: Type[T], data: Dict[str, Any]) -> T:
    """Builds dataclass ``cls`` from the engine's JSON object."""
    loader = _LOADERS.get(cls)
    if loader is None:
        loader = _compile_loader(cls)
        _LOADERS[cls] = loader
    result: T = loader(data)
    return result


_FIELDS: Dict[type, Tuple[str, ...]] = {}


def _dump(v: Any, name: str = "value") -> Any:
    """The JSON form of a value (dataclass, enum, datetime, list, dict)."""
    if v is None or isinstance(v, (str, int, float)) and not isinstance(v, enum.Enum):
        return v
    if isinstance(v, enum.Enum):
        return v.value
    if isinstance(v, datetime):
        return _ts_out(v, name)
    names = _FIELDS.get(type(v))
    if names is None and dataclasses.is_dataclass(v) and not isinstance(v, type):
        names = tuple(f.name for f in dataclasses.fields(v))
        _FIELDS[type(v)] = names
    if names is not None:
        return {n: _dump(getattr(v, n), n) for n in names}
    if isinstance(v, (list, tuple)):
        return [_dump(x, name) for x in v]
    if isinstance(v, dict):
        return {str(k): _dump(x, f"{name}.{k}") for k, x in v.items()}
    return v


# --- values --------------------------------------------------------------------------------------


@dataclass
class ErrorEvent:
    """One error occurrence, as an alert source or a logger reports it."""

    message: str
    source: str = ""
    feature: str = ""
    origin: str = "python"
    level: str = "error"
    error_message: Optional[str] = None
    stack_trace: Optional[str] = None
    sample_lines: List[str] = field(default_factory=list)
    event_count: int = 1
    first_seen: Optional[datetime] = None
    last_seen: Optional[datetime] = None
    labels: Dict[str, str] = field(default_factory=dict)
    values: Dict[str, str] = field(default_factory=dict)
    external_id: Optional[str] = None
    link: Optional[str] = None
    title: Optional[str] = None
    description: Optional[str] = None
    priority: Optional[Priority] = None

    def _json(self) -> Dict[str, Any]:
        """The JSON form the engine's ingest takes: what is set, field by field (empty and
        ``None`` fields are left out; the generic ``_dump`` costs several times more on this hot
        path)."""
        d: Dict[str, Any] = {
            "message": self.message,
            "source": self.source,
            "feature": self.feature,
            "origin": self.origin,
            "level": self.level,
            "event_count": self.event_count,
        }
        if self.error_message is not None:
            d["error_message"] = self.error_message
        if self.stack_trace is not None:
            d["stack_trace"] = self.stack_trace
        if self.sample_lines:
            d["sample_lines"] = list(self.sample_lines)
        if self.first_seen is not None:
            d["first_seen"] = _ts_out(self.first_seen, "first_seen")
        if self.last_seen is not None:
            d["last_seen"] = _ts_out(self.last_seen, "last_seen")
        if self.labels:
            d["labels"] = dict(self.labels)
        if self.values:
            d["values"] = dict(self.values)
        if self.external_id is not None:
            d["external_id"] = self.external_id
        if self.link is not None:
            d["link"] = self.link
        if self.title is not None:
            d["title"] = self.title
        if self.description is not None:
            d["description"] = self.description
        if self.priority is not None:
            d["priority"] = Priority(self.priority).value
        return d


@dataclass
class PlanFields:
    status: Optional[PlanStatus] = None
    content: Optional[str] = None
    feedback: Optional[str] = None
    approved_at: Optional[datetime] = None
    approved_by: Optional[str] = None


@dataclass
class Issue:
    id: str
    workspace_id: str
    identifier: str
    number: int
    title: str
    column_id: str
    priority: Priority
    created_at: datetime
    updated_at: datetime
    version: int
    description: Optional[str] = None
    assignee: Optional[str] = None
    labels: List[str] = field(default_factory=list)
    customer_id: Optional[str] = None
    agent_status: AgentStatus = AgentStatus.IDLE
    spawn_status: Optional[SpawnStatus] = None
    spawn_kind: Optional[WorkflowKind] = None
    current_run_id: Optional[str] = None
    spawn_attempt_count: int = 0
    spawn_started_at: Optional[datetime] = None
    spawn_completed_at: Optional[datetime] = None
    plan: PlanFields = field(default_factory=PlanFields)
    blocked_reason: Optional[str] = None
    cost_usd: float = 0.0
    num_turns: int = 0
    model: Optional[str] = None
    run_outcome: Optional[Outcome] = None
    outcome_summary: Optional[str] = None


@dataclass
class SpawnDecision:
    """What a spawn request came to: the gates' decision as a value, never an exception."""

    decision: Decision
    identifier: str
    run_id: Optional[str] = None
    reason: Optional[str] = None
    """The gate's reason code (``kill_switch``, ``daily_budget``, ...) unless allowed."""
    until: Optional[datetime] = None
    """When a deferred spawn is retried by the sweeper."""
    details: Dict[str, Any] = field(default_factory=dict)

    @property
    def spawned(self) -> bool:
        return self.run_id is not None

    @classmethod
    def _from(cls, d: Dict[str, Any]) -> "SpawnDecision":
        dec = d["decision"]
        reason = dict(dec.get("reason") or {})
        code = reason.pop("code", None)
        until = dec.get("until")
        return cls(
            decision=Decision(dec["decision"]),
            identifier=d["identifier"],
            run_id=d.get("run_id"),
            reason=code,
            until=_parse_ts(until) if until else None,
            details=reason,
        )


@dataclass
class IngestReport:
    issue: Issue
    created: bool
    fingerprint: str
    normalized: str
    event_count: int
    fix_failed: bool
    reopened: bool
    spawn: Optional[SpawnDecision] = None

    @classmethod
    def _from(cls, d: Dict[str, Any]) -> "IngestReport":
        spawn = d.get("spawn")
        return cls(
            issue=_load(Issue, d["issue"]),
            created=bool(d["created"]),
            fingerprint=d["fingerprint"],
            normalized=d["normalized"],
            event_count=int(d["event_count"]),
            fix_failed=bool(d["fix_failed"]),
            reopened=bool(d["reopened"]),
            spawn=SpawnDecision._from(spawn) if spawn else None,
        )


@dataclass
class PayloadReport:
    """What ingesting one alert payload did: one report per event, and what was skipped."""

    reports: List[IngestReport]
    skipped: List[str]


@dataclass
class Comment:
    id: str
    issue_id: str
    body: str
    created_at: datetime
    author: Optional[str] = None


@dataclass
class SearchHit:
    issue: Issue
    score: float


@dataclass
class CancelResult:
    state: CancelState
    runner_confirmed: bool


@dataclass
class Run:
    id: str
    issue_id: str
    kind: WorkflowKind
    status: RunStatus
    requested_by: str
    not_before: datetime
    created_at: datetime
    updated_at: datetime
    force: bool = False
    additional_context: Optional[str] = None
    dispatch_attempts: int = 0
    last_error: Optional[str] = None
    lease_until: Optional[datetime] = None
    runner: Optional[str] = None
    external_id: Optional[str] = None
    external_url: Optional[str] = None
    outcome: Optional[Outcome] = None
    outcome_summary: Optional[str] = None
    cost_usd: float = 0.0
    num_turns: int = 0
    model: Optional[str] = None
    tokens_used: Optional[int] = None
    pr_number: Optional[int] = None
    files_changed: List[str] = field(default_factory=list)
    follow_ups: List[str] = field(default_factory=list)
    prompt_text: Optional[str] = None
    report_content: Optional[str] = None
    started_at: Optional[datetime] = None
    last_callback_at: Optional[datetime] = None
    heartbeat_at: Optional[datetime] = None
    completed_at: Optional[datetime] = None


@dataclass
class RunResult:
    """What an agent reports at the end of a run (every field optional)."""

    status: Optional[RunStatus] = None
    outcome: Optional[Outcome] = None
    summary: Optional[str] = None
    cost_usd: Optional[float] = None
    num_turns: Optional[int] = None
    model: Optional[str] = None
    tokens_used: Optional[int] = None
    pr_number: Optional[int] = None
    files_changed: Optional[List[str]] = None
    follow_ups: Optional[List[str]] = None
    report: Optional[str] = None
    prompt_text: Optional[str] = None


@dataclass
class DispatchReceipt:
    """What a runner answers to ``dispatch``: its own handle on the run, if any."""

    external_id: Optional[str] = None
    external_url: Optional[str] = None


@dataclass
class PlanReview:
    issue: Issue
    spawn: Optional[SpawnDecision] = None

    @classmethod
    def _from(cls, d: Dict[str, Any]) -> "PlanReview":
        spawn = d.get("spawn")
        return cls(
            issue=_load(Issue, d["issue"]),
            spawn=SpawnDecision._from(spawn) if spawn else None,
        )


@dataclass
class MergedPr:
    """A merged pull request, as a GitHub webhook or a script reports it."""

    number: int
    merged_at: datetime
    url: Optional[str] = None
    title: Optional[str] = None
    body: Optional[str] = None
    head_branch: Optional[str] = None
    base_branch: Optional[str] = None
    merge_sha: Optional[str] = None


@dataclass
class FixAttempt:
    id: str
    issue_id: str
    pr_number: int
    merged_at: datetime
    status: VerificationStatus
    created_at: datetime
    updated_at: datetime
    pr_url: Optional[str] = None
    pr_title: Optional[str] = None
    merged_sha: Optional[str] = None
    deployed_sha: Optional[str] = None
    deployed_at: Optional[datetime] = None
    deadline: Optional[datetime] = None
    checked_at: Optional[datetime] = None
    failure_reason: Optional[str] = None
    events_after_deploy: Optional[int] = None


@dataclass
class FixAttemptReport:
    issue_id: str
    identifier: str
    attempt: FixAttempt
    created: bool


@dataclass
class ErrorLink:
    id: str
    issue_id: str
    source: str
    external_key: str
    fingerprint: str
    event_count: int
    first_seen_at: datetime
    last_seen_at: datetime
    url: Optional[str] = None
    metadata: Any = None
    cooldown_until: Optional[datetime] = None


@dataclass
class FixStatus:
    issue_id: str
    identifier: str
    has_error_link: bool
    can_close: bool
    links: List[ErrorLink] = field(default_factory=list)
    attempts: List[FixAttempt] = field(default_factory=list)
    latest: Optional[FixAttempt] = None
    latest_description: Optional[str] = None
    close_block_reason: Optional[str] = None


@dataclass
class Customer:
    id: str
    workspace_id: str
    name: str
    slug: str
    portal_token: str = field(repr=False)
    created_at: datetime
    updated_at: datetime
    slack_channel_id: Optional[str] = None
    brand_color: Optional[str] = None
    logo_url: Optional[str] = None


@dataclass
class KillSwitch:
    enabled: bool
    forced_by_environment: bool
    stored: Optional[bool] = None


@dataclass
class FleetStatus:
    kill_switch: bool
    queued: int
    running: int
    deferred: int
    stale_runs: int
    active_error_fix: int
    active_prd: int
    max_concurrent_error_fix: int
    max_concurrent_prd: int
    max_concurrent_global: int
    spawned_today_error_fix: int
    spawned_today_prd: int
    daily_budget_error_fix: int
    daily_budget_prd: int
    cost_today_usd: float
    daily_cost_limit_usd: float
    outcomes_today: Dict[str, int] = field(default_factory=dict)


@dataclass
class SweepReport:
    deferred_checked: int = 0
    deferred_spawned: int = 0
    orphaned: int = 0
    timed_out: int = 0
    verified: int = 0
    pruned: int = 0
