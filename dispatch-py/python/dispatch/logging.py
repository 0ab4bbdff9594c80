"""``DispatchHandler``: Python's ``logging`` as an error source, the counterpart of the structured-log
convention (``source``/``feature`` fields on errors) that the Grafana/Loki pipeline reads.

    import logging
    from dispatch import Dispatch
    from dispatch.logging import DispatchHandler

    d = Dispatch("dispatch.db")
    logging.getLogger().addHandler(DispatchHandler(d))
    log = logging.getLogger("billing")
    try:
        charge()
    except Exception:
        log.exception("charge failed", extra={"source": "billing", "feature": "checkout"})

``emit`` never blocks the logging thread: records go to a bounded queue (``dropped`` counts what
did not fit) and one worker thread ingests them in batches of whatever has queued up, at most
``batch_size`` per engine call. ``flush()`` waits until everything queued is ingested.
"""

from __future__ import annotations

import logging
import queue
import threading
import traceback
from datetime import datetime, timezone
from typing import List, Optional, Protocol, Sequence

from dispatch._types import ErrorEvent

__all__ = ["DispatchHandler"]


class _Ingests(Protocol):
    def ingest_many(self, events: Sequence[ErrorEvent]) -> object: ...


class DispatchHandler(logging.Handler):
    """Turns error records into Dispatch error events, batched, off the logging thread.

    A record's ``source`` and ``feature`` extras name where the error happened (else the logger's
    name and the function's); its exception (``exc_info``) gives the error message and the stack,
    ``stack_info`` the stack when there is no exception."""

    def __init__(
        self,
        dispatch: _Ingests,
        level: int = logging.ERROR,
        *,
        batch_size: int = 100,
        max_queue: int = 10_000,
        origin: str = "python",
        source: Optional[str] = None,
    ) -> None:
        super().__init__(level)
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._dispatch = dispatch
        self._batch_size = batch_size
        self._origin = origin
        self._source = source
        self._queue: "queue.Queue[Optional[ErrorEvent]]" = queue.Queue(maxsize=max_queue)
        self._closed = False
        self.dropped = 0
        """Records not queued because the queue was full."""
        self.failed = 0
        """Events whose ingest failed (``last_error`` says why)."""
        self.ingested = 0
        self.batches = 0
        self.last_error: Optional[BaseException] = None
        self._worker = threading.Thread(target=self._run, name="dispatch-log-handler", daemon=True)
        self._worker.start()

    def to_event(self, record: logging.LogRecord) -> ErrorEvent:
        """The error event for a record."""
        source = getattr(record, "source", None) or self._source or record.name
        feature = getattr(record, "feature", None) or record.funcName or "unknown"
        error_message: Optional[str] = None
        stack: Optional[str] = None
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            error_message = f"{type(exc).__name__}: {exc}"
            stack = "".join(traceback.format_exception(*record.exc_info))
        elif record.stack_info:
            stack = record.stack_info
        seen = datetime.fromtimestamp(record.created, tz=timezone.utc)
        return ErrorEvent(
            message=record.getMessage(),
            source=str(source),
            feature=str(feature),
            origin=self._origin,
            level=record.levelname.lower(),
            error_message=error_message,
            stack_trace=stack,
            first_seen=seen,
            last_seen=seen,
            labels={"logger": record.name},
            values={"module": record.module, "line": str(record.lineno)},
        )

    def emit(self, record: logging.LogRecord) -> None:
        if self._closed:
            return
        try:
            event = self.to_event(record)
        except Exception:  # noqa: BLE001 - logging must not raise
            self.handleError(record)
            return
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            batch: List[ErrorEvent] = []
            stop = first is None
            if first is not None:
                batch.append(first)
            taken = 1
            while not stop and len(batch) < self._batch_size:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                taken += 1
                if item is None:
                    stop = True
                else:
                    batch.append(item)
            if batch:
                try:
                    self._dispatch.ingest_many(batch)
                    self.ingested += len(batch)
                except Exception as e:  # noqa: BLE001 - counted; logging it could loop
                    self.failed += len(batch)
                    self.last_error = e
                self.batches += 1
            for _ in range(taken):
                self._queue.task_done()
            if stop:
                return

    def flush(self) -> None:
        """Waits until every queued record is ingested (or failed)."""
        if self._worker.is_alive():
            self._queue.join()

    def close(self) -> None:
        """Ingests what is queued, then stops the worker."""
        if not self._closed:
            self._closed = True
            if self._worker.is_alive():
                self._queue.put(None)
                self._worker.join()
        super().close()
