"""Alembic moved to one revision of the add-on's migrations, for tests and benchmarks that need a schema as an
older release left it (the add-on itself only ever upgrades to the head: `addon.storage.migrate.upgrade`)."""

from __future__ import annotations

from collections.abc import Callable

from alembic.config import Config
from sqlalchemy.engine import Engine

from addon.storage.migrate import alembic_config


def migrate_to(engine: Engine, action: Callable[[Config, str], None], revision: str) -> None:
    """`action` (alembic's `command.upgrade` or `command.downgrade`) to `revision` on `engine`, committed."""
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.connect() as connection:
        config.attributes["connection"] = connection
        action(config, revision)
        connection.commit()
