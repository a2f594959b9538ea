"""The database engine and sessions: SQLite (WAL, one writer at a time) by default, PostgreSQL for scale-out."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import CursorResult, Engine, Result, make_url
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)


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

_sqlite_write_locks: dict[str, threading.Lock] = {}
_sqlite_write_locks_guard = threading.Lock()


def sqlite_write_lock(database: str) -> threading.Lock:
    """The turn to write to one SQLite database file among this process's threads (one lock per file in a
    process), taken by every transaction from BEGIN to COMMIT or ROLLBACK.

    SQLite lets one writer in at a time, and a writer that finds the file locked waits in SQLite's busy handler,
    which sleeps and polls (1, 2, 5, 10 … 100 ms): threads of one process that all wanted to write would lose
    most of their time sleeping while the file is free, so they hand the turn over on this lock instead.
    Processes (`addon serve` and its worker child, or `addon worker`s on one file) are left to the busy handler
    (`busy_timeout`, 30 s): two processes meet at the lock far less often than a process's threads do, and the
    intake and latency bounds held without a lock across processes (docs/decisions.md)."""
    path = _file_path(database)
    with _sqlite_write_locks_guard:
        lock = _sqlite_write_locks.get(path or "")
        if lock is None:
            lock = _sqlite_write_locks[path or ""] = threading.Lock()
        return lock


def take_sqlite_write_lock(lock: threading.Lock) -> None:
    """Wait for the write lock as SQLite's busy timeout would, then fail as SQLite does."""
    if not lock.acquire(timeout=SQLITE_LOCK_TIMEOUT_S):
        raise sqlite3.OperationalError("database is locked (waited for this process's other writers)")


#: Commits of one engine, in one process, between two checkpoints of the WAL. (SQLite's own default is every 1,000
#: pages written, which the intake's stores of an event and five deliveries, about 12 pages each, reach every 80
#: commits or so.)
CHECKPOINT_EVERY_COMMITS = 100


class WalCheckpointer:
    """Checkpoints a SQLite database's WAL in a thread of its own, every `CHECKPOINT_EVERY_COMMITS` commits of
    this process, instead of inside whichever commit crosses SQLite's threshold (`wal_autocheckpoint`, turned
    off on every connection of the engine).

    That commit would copy the WAL back into the database file and sync both, under the write lock, in the
    middle of a request: on average about 50 µs of the 125 µs that each stored event's commit took (cProfile,
    one thread), and a pause of milliseconds for that one request. (SQLite leaves checkpoints to the application
    when automatic ones are off: wal.html, "Application-Initiated Checkpoints".) A PASSIVE checkpoint, like an
    automatic one, neither waits for nor blocks readers and writers; frames it cannot copy yet (a reader still
    needs them) wait for the next one. The thread starts when the first checkpoint is due in a process (a fork
    starts its own) and stops when the engine is disposed (the next one due starts it again).
    """

    def __init__(self, database: str) -> None:
        self._database = database
        self._commits = 0
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._thread_pid = 0
        self._wake = threading.Event()
        self._stop = threading.Event()

    def committed(self) -> None:
        """Count a commit (called under the write lock, so this process's commits are counted one at a time)."""
        self._commits += 1
        if self._commits >= CHECKPOINT_EVERY_COMMITS:
            self._commits = 0
            self._ensure_running()
            self._wake.set()

    def stop(self) -> None:
        with self._start_lock:
            if self._thread_pid != os.getpid() or self._thread is None:
                return
            thread, wake, stop = self._thread, self._wake, self._stop
            self._thread, self._thread_pid = None, 0
        stop.set()
        wake.set()
        if thread is not threading.current_thread():
            thread.join(5.0)

    def _ensure_running(self) -> None:
        if self._thread_pid == os.getpid():
            return
        with self._start_lock:
            if self._thread_pid != os.getpid():  # never started here (a fork's copy names its parent's thread)
                self._wake, self._stop = threading.Event(), threading.Event()
                self._thread = threading.Thread(target=self._run, args=(self._wake, self._stop),
                                                name=f"sqlite-checkpoint {self._database}", daemon=True)
                self._thread.start()
                self._thread_pid = os.getpid()

    def _run(self, wake: threading.Event, stop: threading.Event) -> None:
        connection = sqlite3.connect(self._database, isolation_level=None, check_same_thread=False)
        try:
            while True:
                wake.wait()
                wake.clear()
                if stop.is_set():
                    return
                try:
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as err:  # e.g. a full disk: the WAL keeps every commit, and the next one retries
                    log.warning("WAL checkpoint failed: %s", err)
        finally:
            connection.close()


class _SerializedSQLiteConnection(sqlite3.Connection):
    """A SQLite connection whose transactions hold this process's write lock of its database file
    (`sqlite_write_lock`) from BEGIN to COMMIT or ROLLBACK."""

    write_lock: threading.Lock
    checkpointer: WalCheckpointer | None
    _holds_write_lock = False

    def acquire_write_lock(self) -> None:
        take_sqlite_write_lock(self.write_lock)
        self._holds_write_lock = True

    def release_write_lock(self) -> None:
        if self._holds_write_lock:
            self._holds_write_lock = False
            self.write_lock.release()

    def commit(self) -> None:
        try:
            super().commit()
            self.count_commit()
        finally:
            self.release_write_lock()

    def count_commit(self) -> None:
        """Count a commit for the checkpointer: `commit`'s, or that of a write statement run without BEGIN (which
        commits itself), under the write lock."""
        if self.checkpointer is not None:
            self.checkpointer.committed()

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
    failing on a lock upgrade), a process's threads take turns on `sqlite_write_lock` rather than in SQLite's
    sleeping busy handler, and the database runs in WAL mode, checkpointed by a thread of its own
    (`WalCheckpointer`).

    Statement parameters are never shown, neither in SQLAlchemy's errors nor in its statement log: they may hold
    a shared secret (sealed only when ADDON_SECRET_KEY is set)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        database = _file_path(url.database)
        if database is not None:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        checkpointer = WalCheckpointer(database) if database is not None else None
        factory = type("SerializedSQLiteConnection", (_SerializedSQLiteConnection,),
                       {"write_lock": sqlite_write_lock(url.database or ""), "checkpointer": checkpointer})
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30, "factory": factory},
                               pool_size=10, max_overflow=20, hide_parameters=True)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            dbapi_conn.isolation_level = None  # let SQLAlchemy's BEGIN below drive transactions
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer's thread does it
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            dbapi_conn = conn.connection.dbapi_connection
            dbapi_conn.acquire_write_lock()
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            except BaseException:
                dbapi_conn.release_write_lock()
                raise

        if checkpointer is not None:
            event.listen(engine, "engine_disposed", lambda _engine: checkpointer.stop())
        return engine
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True, hide_parameters=True)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextlib.contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on error. Never do network I/O inside one."""
    with factory() as session, session.begin():
        yield session


def rowcount(result: Result[Any]) -> int:
    """The rows an UPDATE or DELETE matched (its result is a `CursorResult`, which SQLAlchemy types as `Result`)."""
    assert isinstance(result, CursorResult)
    return result.rowcount
