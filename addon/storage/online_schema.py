"""Schema changes inside a migration that keep a busy PostgreSQL database writable.

Each migration runs in a transaction of its own (migrations/env.py).

Indexes (`change_indexes`): a table of 64 MB or more gets its index changes concurrently (CREATE INDEX
CONCURRENTLY), in an autocommit block after that transaction's work: writes go on while an index builds. A smaller
table gets them in the transaction, which blocks its writes for the moment a build takes (under a second) and,
unlike a concurrent build, waits for no other transaction of the whole database (a fresh install, a test schema
beside others in one database). A concurrent build that failed half-way leaves an invalid index, which the next
upgrade drops and builds again.

Locks (`lock_tables`): a migration that alters several tables takes their locks one ALTER at a time, while the
running add-on's writers take the same tables in other orders (the intake an event, then its deliveries; the worker
a webhook's row, then a delivery), so the two can deadlock, and PostgreSQL then aborts one of them: a refused intake
or a failed deployment. Taking every lock up front, in one try that gives way after a short wait, avoids both.

SQLite has neither (a file has one writer): everything happens in the transaction. Only migrations use this module
(through `alembic.op`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from alembic import op
from sqlalchemy.exc import OperationalError

#: A table this big (on disk) gets its index changes concurrently.
CONCURRENTLY_FROM_BYTES = 64 * 1024 * 1024

#: One try at the locks waits at most this long: under PostgreSQL's deadlock_timeout (1 s by default), so the
#: migration gives way before a deadlock check could abort a writer it waits behind, or itself.
LOCK_TRY_MS = 500
#: How long `lock_tables` keeps trying before the migration fails (nothing changed: it can simply run again).
LOCK_TRYING_S = 120.0
_LOCK_NOT_AVAILABLE = "55P03"


def lock_tables(*tables: str, share: Sequence[str] = ()) -> None:
    """Lock `tables` (ACCESS EXCLUSIVE, what ALTER TABLE takes) and `share` (SHARE ROW EXCLUSIVE, what adding a
    foreign key to it takes) for the rest of the migration's transaction, all in one try: in a savepoint with a
    short lock_timeout, rolled back on timeout (which hands back what it got, so the writers queued behind it go
    on), then tried again a moment later."""
    if op.get_context().dialect.name != "postgresql":
        return
    bind = op.get_bind()
    deadline = time.monotonic() + LOCK_TRYING_S
    while True:
        savepoint = bind.begin_nested()
        try:
            bind.execute(sa.text(f"SET LOCAL lock_timeout = '{LOCK_TRY_MS}ms'"))
            bind.execute(sa.text(f"LOCK TABLE {', '.join(tables)} IN ACCESS EXCLUSIVE MODE"))
            if share:
                bind.execute(sa.text(f"LOCK TABLE {', '.join(share)} IN SHARE ROW EXCLUSIVE MODE"))
        except OperationalError as exc:
            savepoint.rollback()
            if getattr(exc.orig, "sqlstate", None) != _LOCK_NOT_AVAILABLE or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.05, 0.25))  # noqa: S311 - a pause, not a secret
            continue
        savepoint.commit()
        bind.execute(sa.text("SET LOCAL lock_timeout = DEFAULT"))
        return


@dataclass(frozen=True)
class IndexSpec:
    name: str
    table: str
    columns: list[str]
    where: str | None = None  # a partial index's predicate


def change_indexes(*, create: Sequence[IndexSpec] = (), drop: Sequence[IndexSpec] = (),
                   replace: Sequence[IndexSpec] = ()) -> None:
    """Create `create`, drop `drop`, and build each of `replace` anew under the name it has (new columns): small
    tables' in the migration's transaction, big tables' concurrently after it. On a big table a replacement is built
    beside the old index under another name, then the old one is dropped and the new one renamed, so queries never
    go without one."""
    big = _big_tables({spec.table for spec in (*create, *drop, *replace)})
    for spec in replace:
        if spec.table not in big:
            _drop(spec, concurrently=False)
            _create(spec, concurrently=False)
    for spec in create:
        if spec.table not in big:
            _create(spec, concurrently=False)
    for spec in drop:
        if spec.table not in big:
            _drop(spec, concurrently=False)
    if not big:
        return
    with op.get_context().autocommit_block():
        for spec in replace:
            if spec.table in big:
                beside = IndexSpec(f"{spec.name}_new", spec.table, spec.columns, spec.where)
                _create(beside, concurrently=True)
                _drop(spec, concurrently=True)
                op.execute(f"ALTER INDEX {beside.name} RENAME TO {spec.name}")
        for spec in create:
            if spec.table in big:
                _create(spec, concurrently=True)
        for spec in drop:
            if spec.table in big:
                _drop(spec, concurrently=True)


def _big_tables(tables: set[str]) -> set[str]:
    if op.get_context().dialect.name != "postgresql":
        return set()
    bind = op.get_bind()
    return {table for table in tables
            if (bind.scalar(sa.text("SELECT pg_relation_size(to_regclass(:t))"), {"t": table}) or 0)
            >= CONCURRENTLY_FROM_BYTES}


def _create(spec: IndexSpec, *, concurrently: bool) -> None:
    where = sa.text(spec.where) if spec.where else None
    if op.get_context().dialect.name != "postgresql":
        op.create_index(spec.name, spec.table, spec.columns, sqlite_where=where)
        return
    if concurrently:
        invalid = op.get_bind().execute(sa.text(
            "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = :name AND c.relnamespace = to_regnamespace(current_schema())::oid "
            "AND NOT i.indisvalid"), {"name": spec.name}).first()
        if invalid:  # a concurrent build that failed half-way
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {spec.name}")
    op.create_index(spec.name, spec.table, spec.columns, postgresql_concurrently=concurrently, if_not_exists=True,
                    postgresql_where=where)


def _drop(spec: IndexSpec, *, concurrently: bool) -> None:
    if op.get_context().dialect.name != "postgresql":
        op.drop_index(spec.name, table_name=spec.table)
    else:
        op.drop_index(spec.name, table_name=spec.table, postgresql_concurrently=concurrently, if_exists=True)
