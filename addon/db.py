"""The database engine and sessions: SQLite (WAL, one writer at a time) by default, PostgreSQL for scale-out."""

from __future__ import annotations

import contextlib
import fcntl
import os
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


def _file_path(database: str | None) -> str | None:
    """The absolute path of a SQLite database file; None for an in-memory database."""
    return str(Path(database).resolve()) if database and database != ":memory:" else None


def sqlite_file(engine: Engine) -> str | None:
    """The absolute path of a SQLite engine's database file; None for another database or an in-memory one."""
    return _file_path(engine.url.database) if is_sqlite(engine) else None


#: How long a SQLite transaction waits for this process's other writers, as the busy timeout does for SQLite's own.
SQLITE_LOCK_TIMEOUT_S = 30.0


class SQLiteWriteLock:
    """The turn to write to one SQLite database file: a threading lock among this process's threads, then an
    exclusive `flock` on `<database>-lock` among processes (`addon serve` and its worker child write to one file).

    Both hand the turn over at once; SQLite's own busy handler sleeps and polls (1, 2, 5, 10 … 100 ms). The file
    lock has no timeout: its holder is another process's transaction, which does no network I/O, and the kernel
    frees it when that process dies. Its descriptor is opened by each process for itself (one inherited through
    a fork would be the parent's lock, shared).
    """

    def __init__(self, lock_file: str | None) -> None:
        self._threads = threading.Lock()
        self._lock_file = lock_file  # None: an in-memory database, which no other process can open
        self._fd: int | None = None
        self._fd_pid = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """As `threading.Lock.acquire`; `timeout` bounds the wait for this process's threads only."""
        if not self._threads.acquire(blocking, timeout):
            return False
        try:
            if self._lock_file is not None:
                fcntl.flock(self._descriptor(), fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._threads.release()
            return False
        except BaseException:
            self._threads.release()
            raise
        return True

    def release(self) -> None:
        try:
            if self._lock_file is not None and self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *_exc: object) -> None:
        self.release()

    def _descriptor(self) -> int:
        if self._fd is None or self._fd_pid != os.getpid():
            self._fd = os.open(self._lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)  # type: ignore[arg-type]
            self._fd_pid = os.getpid()
        return self._fd


_sqlite_write_locks: dict[str, SQLiteWriteLock] = {}
_sqlite_write_locks_guard = threading.Lock()


def sqlite_write_lock(database: str) -> SQLiteWriteLock:
    """The lock every transaction on a SQLite database file takes turns on (one object per file in a process)."""
    path = _file_path(database)
    with _sqlite_write_locks_guard:
        lock = _sqlite_write_locks.get(path or "")
        if lock is None:
            lock = _sqlite_write_locks[path or ""] = SQLiteWriteLock(f"{path}-lock" if path else None)
        return lock


def take_sqlite_write_lock(lock: SQLiteWriteLock) -> None:
    """Wait for the write lock as SQLite's busy timeout would, then fail as SQLite does."""
    if not lock.acquire(timeout=SQLITE_LOCK_TIMEOUT_S):
        raise sqlite3.OperationalError("database is locked (waited for this process's other writers)")


class _SerializedSQLiteConnection(sqlite3.Connection):
    """A SQLite connection whose transactions hold the write lock of its database file (`SQLiteWriteLock`) from
    BEGIN to COMMIT or ROLLBACK.

    SQLite lets one writer in at a time; without this, threads and processes that want to write at once wait in
    SQLite's busy handler, which sleeps and polls (1, 2, 5, 10 … 100 ms), so a few writers together lose most of
    their time sleeping while the lock is free.
    """

    write_lock: SQLiteWriteLock
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
    failing on a lock upgrade), threads and processes take turns on `SQLiteWriteLock` rather than in SQLite's
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
