"""Migrations on a big PostgreSQL table: its indexes built concurrently (writes go on), with the definitions the
models declare, and an upgrade stopped half-way runs again."""

from __future__ import annotations

import threading

from alembic import command
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from addon.storage.engine import make_engine
from addon.storage.migrate import upgrade
from addon.storage.online_schema import CONCURRENTLY_FROM_BYTES
from tests.support.migrations import migrate_to
from tests.support.rows import site_with_webhooks


def _indexes(connection: Connection, table: str) -> dict[str, str]:
    """name -> definition, and every index valid."""
    rows = connection.execute(text(
        "SELECT c.relname, pg_get_indexdef(i.indexrelid), i.indisvalid FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid "
        "WHERE t.relname = :t AND t.relnamespace = to_regnamespace(current_schema())::oid"), {"t": table}).all()
    assert all(valid for _, _, valid in rows), rows
    return {name: definition.split(" USING ", 1)[1] for name, definition, _ in rows}


def _seed_big_deliveries(engine: Engine) -> None:
    """One tenant, webhook and event, and enough deliveries (long message ids) to pass the concurrent threshold."""
    with engine.begin() as connection:
        site_with_webhooks(connection)
        connection.execute(text(
            "INSERT INTO events (id, tenant_id, source, project_id, body, created_at) "
            "VALUES (1, 1, 'projectrak', '13647', '{}', now())"))
        connection.execute(text(
            "INSERT INTO deliveries (tenant_id, event_id, webhook_id, message_id, status, attempt_count, "
            "next_attempt_at, created_at, schedule_started_at, finished_at) "
            "SELECT 1, 1, 1, 'msg_' || lpad(g::text, 58, '0'), CASE WHEN g % 100 = 0 THEN 'pending' "
            "ELSE 'succeeded' END, 1, now(), now(), now(), CASE WHEN g % 100 = 0 THEN NULL ELSE now() END "
            "FROM generate_series(1, 450000) AS g"))
        size = connection.scalar(text("SELECT pg_relation_size('deliveries')"))
    assert size >= CONCURRENTLY_FROM_BYTES, f"deliveries is {size} bytes, under the threshold"


def test_a_big_tables_indexes_are_built_concurrently_while_writes_go_on_and_an_interrupted_upgrade_runs_again(
        pg_url: str) -> None:
    engine = make_engine(pg_url)
    try:
        migrate_to(engine, command.upgrade, "0007")
        _seed_big_deliveries(engine)

        stop, written, errors = threading.Event(), [0], []

        def write() -> None:  # a writer of the old code's rows, all through the upgrade
            while not stop.is_set():
                try:
                    with engine.begin() as connection:
                        connection.execute(text(
                            "INSERT INTO deliveries (tenant_id, event_id, webhook_id, message_id, status, "
                            "attempt_count, next_attempt_at, created_at, schedule_started_at) "
                            "VALUES (1, 1, 1, :m, 'pending', 0, now(), now(), now())"), {"m": f"w_{written[0]}"})
                    written[0] += 1
                except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                    errors.append(exc)
                    return

        builds: set[str] = set()

        def watch_builds() -> None:  # how PostgreSQL says each build on deliveries runs
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                while not stop.wait(0.005):
                    builds.update(connection.scalars(text(
                        "SELECT command FROM pg_stat_progress_create_index WHERE relid = to_regclass('deliveries')")))

        threads = [threading.Thread(target=write, daemon=True), threading.Thread(target=watch_builds, daemon=True)]
        for thread in threads:
            thread.start()
        try:
            upgrade(engine)
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
        assert not errors and written[0] > 0
        assert builds == {"CREATE INDEX CONCURRENTLY"}

        with engine.connect() as connection:
            indexes = _indexes(connection, "deliveries")
            assert indexes["ix_deliveries_webhook_due"] == "btree (webhook_id, status, next_attempt_at, id)"
            assert indexes["ix_deliveries_line"] == (
                "btree (webhook_id, project_id, sequence, id) WHERE ((status)::text = 'pending'::text)")
            assert indexes["ix_deliveries_webhook_id"] == "btree (webhook_id, id)"
            assert not [name for name in indexes if name.endswith("_new")]

        # An upgrade interrupted after 0008's columns were committed (during a concurrent build) runs again.
        migrate_to(engine, command.downgrade, "0007")
        migrate_to(engine, command.upgrade, "0008")
        with engine.begin() as connection:
            connection.execute(text("DROP INDEX ix_deliveries_line"))
            connection.execute(text("UPDATE alembic_version SET version_num = '0007'"))
        upgrade(engine)
        with engine.connect() as connection:
            indexes = _indexes(connection, "deliveries")
            assert "ix_deliveries_line" in indexes
            assert indexes["ix_deliveries_webhook_due"] == "btree (webhook_id, status, next_attempt_at, id)"

        migrate_to(engine, command.downgrade, "0007")
        with engine.connect() as connection:
            indexes = _indexes(connection, "deliveries")
            assert indexes["ix_deliveries_webhook_due"] == "btree (webhook_id, status, next_attempt_at)"
            assert "ix_deliveries_line" not in indexes
    finally:
        engine.dispose()
