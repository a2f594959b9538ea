"""The fields that came through a tenant's intake (CONTRACT §10.1's `GET /api/fields`), kept up to date without
slowing the intake: each process remembers what it recorded lately (per tenant, field, name and type, for
`REFRESH_S`), so an accepted change writes nothing unless one of its fields is new, renamed, retyped, or was last
recorded more than `REFRESH_S` ago; then one upsert records them. `last_seen_at` is therefore at most `REFRESH_S`
old, which a 30-day window does not notice."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import weakref
from collections.abc import Iterable
from typing import Any

from cachetools import TTLCache
from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from addon.storage.engine import rowcount, transaction
from addon.storage.models import SeenField, utcnow

log = logging.getLogger(__name__)

REFRESH_S = 6 * 3600.0
#: A field last sent longer ago than this is no longer offered (and housekeeping forgets it).
WINDOW = dt.timedelta(days=30)
MAX_ENTRIES = 100_000

_recorded: weakref.WeakKeyDictionary[Engine, TTLCache[tuple[int, int, str, str], bool]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()  # cachetools' caches are not thread-safe


def _memory(engine: Engine) -> TTLCache[tuple[int, int, str, str], bool]:
    memory = _recorded.get(engine)
    if memory is None:
        memory = _recorded[engine] = TTLCache(MAX_ENTRIES, REFRESH_S)
    return memory


def record(engine: Engine, sessions: sessionmaker[Session], tenant_id: int, fields: Iterable[dict[str, Any]]
           ) -> None:
    """Note the outgoing fields of an accepted event (Jira attributes, negative ids, are listed anyway). Called
    after the event is stored: a failure here is logged, never answered (the event is already accepted)."""
    with _lock:
        memory = _memory(engine)
        # One entry per field id (the last name given wins): one upsert may not touch a row twice.
        new = {field["id"]: (tenant_id, field["id"], field["name"], field["type"]) for field in fields
               if field["id"] > 0 and (tenant_id, field["id"], field["name"], field["type"]) not in memory}
    if not new:
        return
    try:
        with transaction(sessions) as session:
            _upsert(session, [new[field_id] for field_id in sorted(new)])
    except SQLAlchemyError as err:
        log.warning("fields seen by the intake not recorded tenant=%s: %s", tenant_id, type(err).__name__)
        return
    with _lock:
        for entry in new.values():
            memory[entry] = True


def _upsert(session: Session, entries: list[tuple[int, int, str, str]]) -> None:
    now = utcnow()
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(SeenField).values([
        {"tenant_id": tenant_id, "field_id": field_id, "name": name, "type": type_, "last_seen_at": now}
        for tenant_id, field_id, name, type_ in entries])
    statement = statement.on_conflict_do_update(
        index_elements=[SeenField.tenant_id, SeenField.field_id],
        set_={"name": statement.excluded.name, "type": statement.excluded.type,
              "last_seen_at": statement.excluded.last_seen_at})
    session.execute(statement)


def prune(sessions: sessionmaker[Session]) -> int:
    """Forget the fields no intake has sent within `WINDOW` (housekeeping); returns how many."""
    with transaction(sessions) as session:
        return rowcount(session.execute(delete(SeenField).where(SeenField.last_seen_at < utcnow() - WINDOW)))
