"""The database engine and sessions: SQLite (WAL, one writer at a time) by default, PostgreSQL for scale-out."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker


def is_sqlite(engine_or_url: Engine | str) -> bool:
    url = engine_or_url.url if isinstance(engine_or_url, Engine) else make_url(engine_or_url)
    return url.get_backend_name() == "sqlite"


#: How long a SQLite transaction waits for the process's write lock, as the busy timeout does for SQLite's own.
SQLITE_LOCK_TIMEOUT_S = 30.0
_sqlite_write_locks: dict[str, threading.Lock] = {}
_sqlite_write_locks_guard = threading.Lock()


def sqlite_write_lock(database: str) -> threading.Lock:
    """The lock this process's transactions on a SQLite database file take turns on."""
    with _sqlite_write_locks_guard:
        return _sqlite_write_locks.setdefault(str(Path(database).resolve()) if database else "", threading.Lock())


def take_sqlite_write_lock(lock: threading.Lock) -> None:
    """Wait for the process's write lock as SQLite's busy timeout would, then fail as SQLite does."""
    if not lock.acquire(timeout=SQLITE_LOCK_TIMEOUT_S):
        raise sqlite3.OperationalError("database is locked (waited for this process's other writers)")


class _SerializedSQLiteConnection(sqlite3.Connection):
    """A SQLite connection whose transactions hold the process's write lock of its database file from BEGIN to
    COMMIT or ROLLBACK.

    SQLite lets one writer in at a time; without this, threads of one process that want to write at once
    wait in SQLite's busy handler, which sleeps and polls (1, 2, 5, 10 … 100 ms), so a few threads writing
    together lose most of their time sleeping while the lock is free. A Python lock hands the turn over at
    once. Other processes on the same file still wait in the busy handler, as before.
    """

    write_lock: threading.Lock
    _holds_write_lock = False

    def acquire_write_lock(self) -> None:
        take_sqlite_write_lock(self.write_lock)
        self._holds_write_lock = True

    def adopt_write_lock(self) -> None:
        """The caller has taken the write lock itself (`sqlite_write_lock`): this connection's commit or rollback
        releases it."""
        self._holds_write_lock = True

    def release_write_lock(self) -> None:
        if self._holds_write_lock:
            self._holds_write_lock = False
            self.write_lock.release()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.release_write_lock()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.release_write_lock()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.release_write_lock()


def make_engine(database_url: str) -> Engine:
    """Create the engine. On SQLite every transaction starts with BEGIN IMMEDIATE (writers queue instead of
    failing on a lock upgrade), threads of this process take turns on a lock rather than in SQLite's
    sleeping busy handler, and the database runs in WAL mode.

    Statement parameters are never shown, neither in SQLAlchemy's errors nor in its statement log: they may hold
    a shared secret (sealed only when ADDON_SECRET_KEY is set)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        factory = type("SerializedSQLiteConnection", (_SerializedSQLiteConnection,),
                       {"write_lock": sqlite_write_lock(url.database or "")})
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30, "factory": factory},
                               pool_size=10, max_overflow=20, hide_parameters=True)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            dbapi_conn.isolation_level = None  # let SQLAlchemy's BEGIN below drive transactions
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):  # type: ignore[no-untyped-def]
            dbapi_conn = conn.connection.dbapi_connection
            dbapi_conn.acquire_write_lock()
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            except BaseException:
                dbapi_conn.release_write_lock()
                raise

        return engine
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True, hide_parameters=True)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextlib.contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on error. Never do network I/O inside one."""
    with factory() as session, session.begin():
        yield session
