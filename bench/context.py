"""The state one benchmark run shares between scenarios: options, the work directory, the receiver process, the
PostgreSQL database, and the results collected so far."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import (
    DEFAULT_PG_URL,
    Database,
    ReceiverProcess,
    ensure_pg_database,
    migrate,
    pg_database,
    sqlite_database,
)


@dataclass
class Context:
    workdir: Path
    receiver: ReceiverProcess
    pg_url: str | None  # the `bench` database, or None when PostgreSQL is not measured
    databases: tuple[str, ...]
    quick: bool
    scale: float  # multiplies durations and sizes (1.0 = the documented figures)
    docs_dir: Path
    results: dict[str, Any] = field(default_factory=dict)
    rate: float = 100.0  # events/s of the latency runs

    def new_database(self, kind: str) -> Database:
        if kind == "sqlite":
            database = sqlite_database(self.workdir)
        else:
            assert self.pg_url is not None
            database = pg_database(self.pg_url)
        migrate(database)
        return database

    def seconds(self, full: float, quick: float) -> float:
        return (quick if self.quick else full) * self.scale

    def count(self, full: int, quick: int) -> int:
        return max(1, int((quick if self.quick else full) * self.scale))


@contextlib.contextmanager
def tool_context(database: str, prefix: str) -> Iterator[Context]:
    """The Context of a by-hand tool (`bench.profile_*`, `bench.cpu_*`): one database kind, a fresh work
    directory and a receiver process, both gone afterwards."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    receiver = ReceiverProcess()
    try:
        pg = ensure_pg_database(DEFAULT_PG_URL) if database == "postgresql" else None
        yield Context(workdir, receiver, pg, (database,), False, 1.0, workdir)
    finally:
        receiver.stop()
        shutil.rmtree(workdir, ignore_errors=True)
