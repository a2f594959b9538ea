"""Applying Alembic migrations, safely when several processes start at once on PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Engine

#: Package data beside this module (an installed wheel carries it).
MIGRATIONS_DIR = Path(__file__).with_name("migrations")

# An arbitrary constant naming this add-on's migration lock in pg_advisory_lock.
_PG_MIGRATION_LOCK = 0x50524F4A
_LOCK_POLL_S = 0.1


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def upgrade(engine: Engine) -> None:
    """Apply pending migrations; on PostgreSQL under an advisory lock so concurrent starters are safe.

    On PostgreSQL each migration runs in a transaction Alembic begins, so that one may build an index with CREATE
    INDEX CONCURRENTLY in an autocommit block (which commits what came before it, and could run neither inside
    an open transaction of ours nor beside one: the build waits for every older transaction of the database to
    end). For the same reason the lock is a session's, taken by polling `pg_try_advisory_lock` outside any
    transaction: a starter waiting for it holds no snapshot the holder's build would wait for."""
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    if engine.dialect.name == "sqlite":
        _upgrade_sqlite(engine, cfg)
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as lock:
        while not lock.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": _PG_MIGRATION_LOCK}):
            time.sleep(_LOCK_POLL_S)
        try:
            with engine.connect() as connection:
                cfg.attributes["connection"] = connection
                command.upgrade(cfg, "head")
                connection.commit()
        finally:
            lock.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_MIGRATION_LOCK})


def _upgrade_sqlite(engine: Engine, cfg: Config) -> None:
    """SQLite alters a table by copying it into a new one and dropping the old (Alembic's batch mode); with
    foreign keys enforced, that DROP TABLE first deletes every row, and ON DELETE CASCADE takes each row that
    refers to them (altering `tenants` would empty `webhooks`, `events` and `deliveries`). So the migrations run
    with enforcement off, which SQLite allows to change only outside a transaction, and the references are checked
    before the transaction commits."""
    with engine.connect() as connection:
        raw = connection.connection.dbapi_connection
        assert raw is not None
        raw.execute("PRAGMA foreign_keys=OFF")
        try:
            with connection.begin():
                cfg.attributes["connection"] = connection
                command.upgrade(cfg, "head")
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"the migrations left rows referring to nothing: {broken[:5]}")
        finally:
            raw.execute("PRAGMA foreign_keys=ON")


def is_current(engine: Engine) -> bool:
    head = ScriptDirectory.from_config(alembic_config(str(engine.url))).get_current_head()
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision() == head


def wait_until_current(engine: Engine, timeout_s: float = 300.0, poll_s: float = 0.5) -> None:
    """Block until another process has applied the migrations (used by `addon worker`)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if is_current(engine):
                return
        except Exception:  # noqa: BLE001 - a database still starting is retried until the deadline
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("the database schema is not current; run `addon db upgrade`")
        time.sleep(poll_s)
