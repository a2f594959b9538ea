"""indexes for scale: one webhook's deliveries and attempts by id (the delivery log's and the attempts list's keyset pages), and finished deliveries and events by
time (housekeeping's batched pruning); (webhook_id, id) replaces (webhook_id, at) on attempts, whose `at` no
query used.

On PostgreSQL the indexes of a table of 64 MB or more are built with CREATE INDEX CONCURRENTLY in an autocommit
block: writes go on while they build (docs/benchmarks.md, Scale, says how long it took on the largest database
measured). A concurrent build that failed half-way leaves an invalid index, dropped and built again by the next
upgrade. Smaller tables get theirs in the migration's transaction (under a second of blocked writes).

Revision ID: 0010
Revises: 0009
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: Union[str, Sequence[str], None] = "0009"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

#: (name, table, columns, partial index predicate)
INDEXES: tuple[tuple[str, str, list[str], str | None], ...] = (
    ("ix_deliveries_webhook_id", "deliveries", ["webhook_id", "id"], None),
    ("ix_deliveries_finished", "deliveries", ["finished_at"], "finished_at IS NOT NULL"),
    ("ix_events_created_at", "events", ["created_at"], None),
    ("ix_attempts_webhook_id", "attempts", ["webhook_id", "id"], None),
)
REPLACED = ("ix_attempts_webhook_at", "attempts", ["webhook_id", "at"])


#: A table this big (on disk) gets its index built concurrently; a smaller one in the migration's transaction,
#: which blocks its writes for the moment the build takes (under a second) and, unlike a concurrent build, waits
#: for no other transaction of the database (a fresh install, a test schema beside others in one database).
CONCURRENTLY_FROM_BYTES = 64 * 1024 * 1024


def _big(table: str) -> bool:
    size = op.get_bind().scalar(sa.text("SELECT pg_relation_size(to_regclass(:t))"), {"t": table})
    return (size or 0) >= CONCURRENTLY_FROM_BYTES


def _create(name: str, table: str, columns: list[str], where: str | None, *, concurrently: bool) -> None:
    if op.get_context().dialect.name != "postgresql":
        op.create_index(name, table, columns, sqlite_where=sa.text(where) if where else None)
        return
    if concurrently:
        invalid = op.get_bind().execute(sa.text(
            "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = :name AND c.relnamespace = to_regnamespace(current_schema())::oid "
            "AND NOT i.indisvalid"), {"name": name}).first()
        if invalid:  # a concurrent build that failed half-way
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
    op.create_index(name, table, columns, postgresql_concurrently=concurrently, if_not_exists=True,
                    postgresql_where=sa.text(where) if where else None)


def _drop(name: str, table: str, *, concurrently: bool) -> None:
    if op.get_context().dialect.name != "postgresql":
        op.drop_index(name, table_name=table)
    else:
        op.drop_index(name, table_name=table, postgresql_concurrently=concurrently, if_exists=True)


def _split(tables: set[str]) -> tuple[set[str], set[str]]:
    """(small, big) tables; on SQLite all are small (a file's one writer: there is no concurrent build)."""
    if op.get_context().dialect.name != "postgresql":
        return tables, set()
    big = {table for table in tables if _big(table)}
    return tables - big, big


def upgrade() -> None:
    small, big = _split({table for _, table, _, _ in INDEXES})
    for name, table, columns, where in INDEXES:
        if table in small:
            _create(name, table, columns, where, concurrently=False)
    if REPLACED[1] in small:
        _drop(REPLACED[0], REPLACED[1], concurrently=False)
    if big:
        with op.get_context().autocommit_block():
            for name, table, columns, where in INDEXES:
                if table in big:
                    _create(name, table, columns, where, concurrently=True)
            if REPLACED[1] in big:
                _drop(REPLACED[0], REPLACED[1], concurrently=True)


def downgrade() -> None:
    small, big = _split({table for _, table, _, _ in INDEXES})
    for name, table, columns, where in ((*REPLACED, None), *INDEXES):
        if table in small:
            (_create(name, table, columns, where, concurrently=False) if name == REPLACED[0]
             else _drop(name, table, concurrently=False))
    if big:
        with op.get_context().autocommit_block():
            for name, table, columns, where in ((*REPLACED, None), *INDEXES):
                if table in big:
                    (_create(name, table, columns, where, concurrently=True) if name == REPLACED[0]
                     else _drop(name, table, concurrently=True))
