"""Python objects plugged into the engine as an alert source or a runner.

The compiled engine calls a bridge with JSON text from a worker thread (holding the GIL); the
bridge builds the dataclasses, calls the user's object — running the coroutine to completion
when the method is ``async`` — and answers JSON. An exception raised here reaches the engine as
an error carrying its traceback text: a failed dispatch is retried and then fails the run, a
failed parse fails that ingest; neither crashes anything.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Dict, List, Mapping, Optional, Protocol, Union

from dispatch._types import (
    DispatchReceipt,
    ErrorEvent,
    Issue,
    Run,
    RunResult,
    _dump,
    _load,
)

if TYPE_CHECKING:
    from dispatch._dispatch import Engine


class _Facade(Protocol):
    _engine: "Engine"


class AlertSource(Protocol):
    """Turns one webhook delivery into error events."""

    def parse(
        self, headers: Mapping[str, str], body: bytes
    ) -> Union[List[ErrorEvent], Awaitable[List[ErrorEvent]]]: ...


class Runner(Protocol):
    """Starts and stops agents for runs."""

    def dispatch(
        self, job: "RunJob"
    ) -> Union[Optional[DispatchReceipt], Awaitable[Optional[DispatchReceipt]]]: ...

    def cancel(self, run: Run) -> Union[Optional[bool], Awaitable[Optional[bool]]]: ...


class RunReporter:
    """How a runner reports on a run it started: terminal output and its result.

    The calls block (they are made from a runner's worker thread or callback, with either
    facade). Report from outside ``dispatch`` (a worker thread, a later callback): the run is
    ``running`` only once ``dispatch`` has returned."""

    def __init__(self, engine: "_Facade", run_id: str) -> None:
        self._facade = weakref.ref(engine)
        self.run_id = run_id

    def _call(self, op: str, **args: Any) -> Any:
        f = self._facade()
        if f is None:
            from dispatch._dispatch import Unavailable

            raise Unavailable("the Dispatch this run belongs to is gone")
        return json.loads(f._engine.call(op, json.dumps(args)))

    def terminal(self, text: str) -> None:
        """Appends agent terminal output to the run."""
        self._call("append_terminal", run_id=self.run_id, text=text)

    def finish(self, result: RunResult) -> Run:
        """Records the run's result (idempotent: a retried finish sets the same values)."""
        return _load(Run, self._call("finish_run", run_id=self.run_id, result=_dump(result)))


@dataclass
class RunJob:
    """What a runner gets: the run, its issue, the workflow inputs, and a reporter."""

    run: Run
    issue: Issue
    inputs: Dict[str, str] = field(default_factory=dict)
    reporter: Optional[RunReporter] = None


def _resolve(value: Any) -> Any:
    """The value, or what the awaitable comes to (on a fresh event loop in this thread)."""
    if inspect.isawaitable(value):

        async def wait() -> Any:
            return await value

        return asyncio.run(wait())
    return value


class _SourceBridge:
    def __init__(self, source: AlertSource) -> None:
        self._source = source

    def parse(self, arg: str) -> str:
        d = json.loads(arg)
        headers = {k: v for k, v in d["headers"]}
        events = _resolve(self._source.parse(headers, d["body"].encode("utf-8")))
        if not isinstance(events, list) or not all(isinstance(e, ErrorEvent) for e in events):
            raise TypeError("an alert source's parse() must return a list of ErrorEvent")
        return json.dumps([_dump(e, "event") for e in events])


class _RunnerBridge:
    def __init__(self, runner: Runner) -> None:
        self._runner = runner
        self._dispatch: Optional["weakref.ReferenceType[_Facade]"] = None

    def attach(self, facade: _Facade) -> None:
        self._dispatch = weakref.ref(facade)

    def dispatch(self, arg: str) -> str:
        d = json.loads(arg)
        run = _load(Run, d["run"])
        facade = self._dispatch() if self._dispatch is not None else None
        job = RunJob(
            run=run,
            issue=_load(Issue, d["issue"]),
            inputs=dict(d.get("inputs") or {}),
            reporter=RunReporter(facade, run.id) if facade is not None else None,
        )
        out = _resolve(self._runner.dispatch(job))
        if out is None:
            out = DispatchReceipt()
        elif isinstance(out, str):
            out = DispatchReceipt(external_id=out)
        if not isinstance(out, DispatchReceipt):
            raise TypeError("a runner's dispatch() must return a DispatchReceipt, a str or None")
        return json.dumps(_dump(out))

    def cancel(self, arg: str) -> str:
        run = _load(Run, json.loads(arg)["run"])
        return json.dumps(bool(_resolve(self._runner.cancel(run))))


def _runner_name(runner: Any) -> str:
    name = getattr(runner, "name", None)
    return name if isinstance(name, str) and name else type(runner).__name__
