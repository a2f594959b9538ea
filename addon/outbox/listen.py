"""How deliveries committed by other processes wake this process's delivery workers: one call for both databases.

PostgreSQL carries the wake-up itself (the commit's NOTIFY, `addon.outbox.postgres`); a SQLite file cannot, so the
writers ring a doorbell beside it (`addon.outbox.sqlite`). In-memory SQLite has one process and needs neither.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.engine import Engine

from addon.outbox.postgres import NotifyListener
from addon.outbox.sqlite import Doorbell
from addon.outbox.wakeup import Wakeup


def listen_for_deliveries(engine: Engine, database_url: str, doorbell: Doorbell | None,
                          wakeup: Wakeup) -> Callable[[], None] | None:
    """Start listening; returns the function that stops it (None when nothing needs to listen)."""
    if engine.dialect.name == "postgresql":
        return NotifyListener(database_url, wakeup).start().stop
    if doorbell is not None:
        listener = doorbell.listen(wakeup)
        if listener is not None:
            return listener.stop
    return None
