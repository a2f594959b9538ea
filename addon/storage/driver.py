"""Core statements executed on the pool's DBAPI connection, for the intake's two hot paths: the tenant read of
every authenticated request and the store of every accepted event.

There SQLAlchemy's per-execution work (the Connection wrapper, the compiled-cache lookup, parameter processing,
the result wrapper, events, BEGIN/COMMIT through the Transaction objects) costs more than the database itself:
about 0.2 ms per stored event on SQLite and 0.3 ms on PostgreSQL, out of 0.34 and 0.7 ms (measured with
bench/profile_intake.py). The statements are still built with SQLAlchemy Core from the models and compiled by the
engine's own dialect (once per dialect); parameters still go through the column types' bind processors; the
connection still comes from, and goes back to, the engine's pool. Only the execution is the driver's.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql import Executable

from addon.storage.engine import sqlite_write_lock, take_sqlite_write_lock


@dataclass(frozen=True)
class _Compiled:
    sql: str
    processors: dict[str, Callable[[Any], Any] | None]
    """Per value the statement takes (by its name), its type's bind processor."""
    order: tuple[str, ...] | None
    """The values' order for a positional paramstyle (SQLite's `?`); None for a named one (psycopg's)."""
    keys: dict[str, str]
    """For a named paramstyle: each value's name in the SQL, where it differs."""
    defaults: dict[str, Any]
    """The values the statement carries itself (e.g. a function's literal arguments)."""


class DriverStatement:
    """A Core statement compiled once per dialect and executed on a DBAPI cursor."""

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._by_dialect: dict[str, _Compiled] = {}
        self._lock = threading.Lock()

    def _compiled(self, dialect: Dialect) -> _Compiled:
        compiled = self._by_dialect.get(dialect.name)
        if compiled is None:
            with self._lock:
                done = self.statement.compile(dialect=dialect)  # type: ignore[attr-defined]
                binds = {rendered: bind for bind, rendered in done.bind_names.items()}
                processors = {bind.key: bind.type.dialect_impl(dialect).bind_processor(dialect)
                              for bind in binds.values()}
                order = tuple(binds[rendered].key for rendered in done.positiontup) if dialect.positional else None
                in_sql = {bind.key: done.escaped_bind_names.get(rendered, rendered) for rendered, bind in binds.items()}
                keys = {name: key for name, key in in_sql.items() if key != name}
                defaults = {bind.key: bind.effective_value for bind in binds.values() if not bind.required}
                compiled = self._by_dialect.setdefault(
                    dialect.name, _Compiled(str(done), processors, order, keys, defaults))
        return compiled

    def parameters(self, dialect: Dialect, values: Mapping[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        """The values as the driver takes them: each processed by its type once, in order for a positional
        paramstyle."""
        compiled = self._compiled(dialect)
        if compiled.defaults:
            values = {**compiled.defaults, **values}
        processed = {name: values[name] if process is None else process(values[name])
                     for name, process in compiled.processors.items()}
        if compiled.order is not None:
            return tuple(processed[name] for name in compiled.order)
        if compiled.keys:
            return {compiled.keys.get(name, name): value for name, value in processed.items()}
        return processed

    def sql(self, dialect: Dialect) -> str:
        return self._compiled(dialect).sql


def _checkout(engine: Engine) -> PoolProxiedConnection:
    """A connection from the engine's pool; a database that cannot be reached raises as SQLAlchemy does."""
    dbapi = engine.dialect.loaded_dbapi
    try:
        return engine.raw_connection()
    except dbapi.Error as err:  # `Engine.connect()` wraps these; `raw_connection()` does not
        raise DBAPIError.instance(None, None, err, dbapi.Error, hide_parameters=True, dialect=engine.dialect) from err


@contextlib.contextmanager
def _as_sqlalchemy_errors(engine: Engine, connection: PoolProxiedConnection, sql: str | None, *,
                          discard_on_error: bool = False) -> Iterator[None]:
    """Raise the driver's errors as SQLAlchemy raises them (so that `addon.web.errors` answers 503 for a database that
    cannot be reached), without the parameters (they may hold a sealed secret), and drop a lost connection (or,
    with `discard_on_error`, any connection that failed) from the pool."""
    dbapi = engine.dialect.loaded_dbapi
    try:
        yield
    except dbapi.Error as err:
        lost = engine.dialect.is_disconnect(err, connection.dbapi_connection, None)
        if lost or discard_on_error:
            connection.invalidate(err)
        raise DBAPIError.instance(sql, None, err, dbapi.Error, hide_parameters=True, connection_invalidated=lost,
                                  dialect=engine.dialect) from err


#: SQLite, around one write statement: (SQL filling a TEMP table, its rows, SQL emptying it), run on the same
#: connection under the same lock, so the statement's triggers can read what the caller prepared.
Prepare = tuple[str, Sequence[tuple[Any, ...]], str]


def driver_sqlite_statement(engine: Engine, statement: DriverStatement, values: Mapping[str, Any], *,
                            setup: tuple[str, ...] = (), prepare: Prepare | None = None) -> tuple[list[tuple], int]:
    """SQLite: one write statement as its own transaction (autocommit: all or nothing by itself, with whatever its
    triggers write), on the engine's writer connection (`_SQLiteWriter`) under the process's write lock. `setup`
    runs once on each new writer connection first (TEMP tables and triggers, say); `prepare` fills a TEMP table
    before the statement and empties it after (TEMP tables are the connection's own: no lock on the database).
    Returns the statement's rows and the number of rows it and its triggers changed."""
    return _SQLiteWriter.of(engine).run(engine, statement, values, setup, prepare)


class _SQLiteWriter:
    """The one connection of a SQLite engine that the driver's write statements use, one at a time under the
    process's write lock (`addon.storage.engine`), which they take anyway.

    Why one: SQLite drops a connection's page cache whenever another connection has committed since it last
    looked, so pooled connections taking turns at writing read every page they touch again (28 `pread`s per
    stored event in the intake benchmark). The connection is checked out of the engine's pool for good and closed
    when the engine is disposed.
    """

    # Keyed weakly, and the writer keeps no reference to its engine: an engine nobody uses any more goes away.
    _by_engine: weakref.WeakKeyDictionary[Engine, _SQLiteWriter] = weakref.WeakKeyDictionary()
    _registry_lock = threading.Lock()

    def __init__(self, engine: Engine) -> None:
        self.write_lock = sqlite_write_lock(engine.url.database or "")
        self._connection: PoolProxiedConnection | None = None
        self._set_up: set[tuple[str, ...]] = set()  # the `setup`s run on `_connection` so far

    @classmethod
    def of(cls, engine: Engine) -> _SQLiteWriter:
        with cls._registry_lock:
            writer = cls._by_engine.get(engine)
            if writer is None:
                writer = cls._by_engine[engine] = cls(engine)
                event.listen(engine, "engine_disposed", lambda _engine: writer.close())
            return writer

    def run(self, engine: Engine, statement: DriverStatement, values: Mapping[str, Any],
            setup: tuple[str, ...], prepare: Prepare | None) -> tuple[list[tuple], int]:
        """`driver_sqlite_statement` on `engine` (the engine this writer is of)."""
        sql = statement.sql(engine.dialect)
        parameters = statement.parameters(engine.dialect, values)
        try:
            take_sqlite_write_lock(self.write_lock)
        except sqlite3.OperationalError as err:
            raise OperationalError(None, None, err) from err
        try:
            if self._connection is None:
                self._connection, self._set_up = _checkout(engine), set()
            connection = self._connection
            dbapi_connection = connection.dbapi_connection
            with _as_sqlalchemy_errors(engine, connection, sql, discard_on_error=True):
                if setup and setup not in self._set_up:
                    for step in setup:
                        dbapi_connection.execute(step)  # type: ignore[union-attr]
                    self._set_up.add(setup)
                if prepare is not None:
                    dbapi_connection.executemany(prepare[0], prepare[1])  # type: ignore[union-attr]
                try:
                    changes_before = dbapi_connection.total_changes  # type: ignore[union-attr]
                    rows = dbapi_connection.execute(sql, parameters).fetchall()  # type: ignore[union-attr]
                    changes = dbapi_connection.total_changes - changes_before  # type: ignore[union-attr]
                finally:
                    if prepare is not None:
                        dbapi_connection.execute(prepare[2])  # type: ignore[union-attr]
            dbapi_connection.count_commit()  # type: ignore[union-attr]
        except BaseException:
            if self._connection is not None and not self._connection.is_valid:
                self._connection = None  # it failed: the next statement checks out another
            raise
        finally:
            self.write_lock.release()
        return rows, changes

    def close(self) -> None:
        with self.write_lock:
            connection, self._connection = self._connection, None
        if connection is not None:
            connection.invalidate()  # closes it: it never goes back to a pool


def driver_one_statement(engine: Engine, statement: DriverStatement, values: Mapping[str, Any]) -> tuple | None:
    """The first row of one statement run as its own transaction (autocommit): a single statement reads one
    consistent snapshot, and writes all or nothing, by itself. No BEGIN and no COMMIT/ROLLBACK round trips on
    PostgreSQL; on SQLite, no explicit transaction (use it there for reads: a write would bypass the write lock)."""
    sql = statement.sql(engine.dialect)
    parameters = statement.parameters(engine.dialect, values)
    postgres = engine.dialect.name == "postgresql"
    connection = _checkout(engine)
    try:
        # A PostgreSQL connection that failed here may be left in autocommit: it is not handed out again.
        with _as_sqlalchemy_errors(engine, connection, sql, discard_on_error=postgres):
            dbapi_connection = connection.dbapi_connection
            if postgres:
                dbapi_connection.autocommit = True  # type: ignore[union-attr]
            cursor = connection.cursor()
            cursor.execute(sql, parameters)
            row = cursor.fetchone()
            if postgres:
                dbapi_connection.autocommit = False  # type: ignore[union-attr]
            return row
    finally:
        connection.close()
