"""The compiled half of ``dispatch`` (PyO3). Use the ``dispatch`` package, not this module."""

from typing import Any, Callable, Dict, Optional, Tuple, final

__all__ = [
    "Conflict",
    "DispatchError",
    "Engine",
    "Forbidden",
    "GateDenied",
    "Internal",
    "InvalidInput",
    "NotFound",
    "RateLimited",
    "Unauthorized",
    "Unavailable",
    "Upstream",
]

class DispatchError(Exception):
    """Any error from the Dispatch engine."""

    code: str
    message: str

class NotFound(DispatchError): ...
class Conflict(DispatchError): ...

class InvalidInput(DispatchError):
    field: str

class Unauthorized(DispatchError): ...
class Forbidden(DispatchError): ...

class GateDenied(DispatchError):
    reason: str

class RateLimited(DispatchError): ...

class Upstream(DispatchError):
    service: str
    status: int

class Unavailable(DispatchError): ...
class Internal(DispatchError): ...

@final
class Engine:
    def __new__(
        cls,
        database_url: Optional[str] = None,
        config: Dict[str, str] = ...,
        runner: Optional[Tuple[str, Any]] = None,
        sources: Dict[str, Any] = ...,
    ) -> Engine: ...
    def call(self, op: str, args: str) -> str: ...
    def call_async(self, op: str, args: str, done: Callable[[bool, Any], None]) -> None: ...
    def bench_ingest(self, event: str, n: int) -> int: ...
    def start(self) -> bool: ...
    def running(self) -> bool: ...
    def wait(self, timeout: Optional[float] = None) -> bool: ...
    def stop(self) -> None: ...
    def close(self) -> None: ...
