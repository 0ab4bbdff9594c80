"""Fixtures: every engine test runs on a SQLite file, or — with ``DISPATCH_TEST_STORE=postgres``
— on a fresh PostgreSQL database per test next to ``DATABASE_URL``'s (created and dropped with
``psql``, as the server's black-box tests do)."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, List

import pytest

from dispatch import Dispatch

STORE = os.environ.get("DISPATCH_TEST_STORE", "sqlite")
PG_BASE = os.environ.get("DATABASE_URL", "")
if not PG_BASE.startswith("postgres"):
    PG_BASE = "postgres://postgres@127.0.0.1:5432/test"
PG_ROOT = PG_BASE.rsplit("/", 1)[0]


def _psql(sql: str) -> None:
    subprocess.run(
        ["psql", f"{PG_ROOT}/postgres", "-qc", sql], check=True, capture_output=True, text=True
    )


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """A store of the configured kind, empty, for this test only."""
    if STORE == "postgres":
        name = f"dispatch_py_{uuid.uuid4().hex}"
        _psql(f"CREATE DATABASE {name}")
        try:
            yield f"{PG_ROOT}/{name}"
        finally:
            _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    elif STORE == "sqlite":
        yield str(tmp_path / "dispatch.db")
    else:
        raise RuntimeError(f"DISPATCH_TEST_STORE={STORE!r}: use sqlite or postgres")


@pytest.fixture
def make_engine(database_url: str) -> Iterator[Callable[..., Dispatch]]:
    """Builds engines on this test's store (closed at the end)."""
    made: List[Dispatch] = []

    def make(**kw: Any) -> Dispatch:
        d = Dispatch(database_url, **kw)
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()


@pytest.fixture
def engine(make_engine: Callable[..., Dispatch]) -> Dispatch:
    return make_engine()
