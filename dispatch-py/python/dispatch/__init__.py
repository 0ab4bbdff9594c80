"""The Dispatch engine embedded in Python.

``Dispatch(database_url=None)`` keeps everything in memory; a file path or ``sqlite:`` URL
opens a SQLite database, a ``postgres://`` URL PostgreSQL. Every method is one engine
use-case; the GIL is released while the engine works, so one instance may be shared by threads.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Dict, List, Optional

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

__all__ = [
    "Conflict",
    "Dispatch",
    "DispatchError",
    "ErrorEvent",
    "Forbidden",
    "GateDenied",
    "IngestReport",
    "Internal",
    "InvalidInput",
    "Issue",
    "NotFound",
    "RateLimited",
    "Unauthorized",
    "Unavailable",
    "Upstream",
]


def _ts(v: Optional[str]) -> Optional[datetime]:
    return None if v is None else datetime.fromisoformat(v.replace("Z", "+00:00"))


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

    def _json(self) -> str:
        d: Dict[str, Any] = asdict(self)
        for k in ("first_seen", "last_seen"):
            v = d[k]
            if v is not None:
                if v.tzinfo is None:
                    raise InvalidInput(f"{k} must be timezone-aware")
                d[k] = v.isoformat()
        d["priority"] = None
        return json.dumps(d)


@dataclass
class Issue:
    id: str
    identifier: str
    number: int
    title: str
    description: Optional[str]
    priority: str
    created_at: Optional[datetime]
    raw: Dict[str, Any]

    @classmethod
    def _from(cls, d: Dict[str, Any]) -> "Issue":
        return cls(
            id=str(d["id"]),
            identifier=d["identifier"],
            number=int(d["number"]),
            title=d["title"],
            description=d.get("description"),
            priority=str(d["priority"]),
            created_at=_ts(d.get("created_at")),
            raw=d,
        )


@dataclass
class IngestReport:
    issue: Issue
    created: bool
    fingerprint: str
    event_count: int
    reopened: bool


class Dispatch:
    """The engine, synchronous. Safe to share between threads."""

    def __init__(self, database_url: Optional[str] = None) -> None:
        self._engine = Engine(database_url)

    def ingest(self, event: ErrorEvent) -> IngestReport:
        d = json.loads(self._engine.ingest_json(event._json()))
        return IngestReport(
            issue=Issue._from(d["issue"]),
            created=bool(d["created"]),
            fingerprint=d["fingerprint"],
            event_count=int(d["event_count"]),
            reopened=bool(d["reopened"]),
        )

    def get_issue(self, issue: str) -> Issue:
        return Issue._from(json.loads(self._engine.get_issue_json(issue)))

    def close(self) -> None:
        pass

    def __enter__(self) -> "Dispatch":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
