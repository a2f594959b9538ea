"""Webhook filters applied when an event is accepted (CONTRACT §10.1): which filtered webhooks an event reaches, and
with which body.

A webhook without a filter (`filter_projects` and `filter_fields` both NULL) is left to the store's one INSERT …
SELECT, as before filters existed; only filtered webhooks are decided here, one by one. A filtered webhook whose
fields filter keeps every field of the event shares the event's body; only one left with a subset gets a body of its
own (`deliveries.body`).

The intake remembers each tenant's filters per process, under the tenant's `filters_version` (every change of a
filter grows it, in the same transaction): the statement that stores an event checks the version it used, so a
filter remembered from before a change is never applied (the request is authenticated again, with the new version).
A tenant whose version is 0 never had a filter: nothing is read for it.
"""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from cachetools import LRUCache
from sqlalchemy import ColumnElement, and_, bindparam, or_, select
from sqlalchemy.engine import Connection, Engine

from addon.storage.models import Tenant, Webhook, table_of

_webhooks = table_of(Webhook)
_tenants = table_of(Tenant)


@dataclass(frozen=True)
class WebhookFilter:
    webhook_id: int
    projects: frozenset[str] | None
    """Project ids (strings, as `events.project_id`); None: every project."""
    fields: frozenset[int] | None
    """Field ids; None: every field."""


def unfiltered(webhooks: Any) -> ColumnElement[bool]:
    """SQL: the webhook has no filter (the store's INSERT … SELECT covers it)."""
    return and_(webhooks.c.filter_projects.is_(None), webhooks.c.filter_fields.is_(None))


def stored_project_ids(stored: str | None) -> frozenset[str] | None:
    return None if stored is None else frozenset(str(project["id"]) for project in json.loads(stored))


def stored_field_ids(stored: str | None) -> frozenset[int] | None:
    return None if stored is None else frozenset(int(field_id) for field_id in json.loads(stored))


def _filters_of(rows: Iterable[Any]) -> tuple[WebhookFilter, ...]:
    return tuple(WebhookFilter(row.id, stored_project_ids(row.filter_projects), stored_field_ids(row.filter_fields))
                 for row in rows if row.id is not None)


_FILTERED = (select(_webhooks.c.id, _webhooks.c.filter_projects, _webhooks.c.filter_fields)
             .where(_webhooks.c.tenant_id == bindparam("tenant_id"), _webhooks.c.deleted_at.is_(None),
                    or_(_webhooks.c.filter_projects.is_not(None), _webhooks.c.filter_fields.is_not(None)))
             .order_by(_webhooks.c.id))

# The tenant's version and its filtered webhooks in one statement: one snapshot, so they belong together.
_VERSION_AND_FILTERED = (
    select(_tenants.c.filters_version, _webhooks.c.id, _webhooks.c.filter_projects, _webhooks.c.filter_fields)
    .select_from(_tenants.outerjoin(
        _webhooks, and_(_webhooks.c.tenant_id == _tenants.c.id, _webhooks.c.deleted_at.is_(None),
                        or_(_webhooks.c.filter_projects.is_not(None), _webhooks.c.filter_fields.is_not(None)))))
    .where(_tenants.c.id == bindparam("tenant_id"))
    .order_by(_webhooks.c.id))


def load_filters(connection: Connection, tenant_id: int) -> tuple[WebhookFilter, ...]:
    """The tenant's filtered webhooks (enabled or not: the store checks that), read in the caller's transaction."""
    return _filters_of(connection.execute(_FILTERED, {"tenant_id": tenant_id}))


class FilterCache:
    """Each tenant's filters as of one `filters_version`, per engine, bounded (least recently used goes first)."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._entries: LRUCache[int, tuple[int, tuple[WebhookFilter, ...]]] = LRUCache(max_entries)
        self._lock = threading.Lock()  # cachetools' caches are not thread-safe

    def filters(self, engine: Engine, tenant_id: int, version: int) -> tuple[WebhookFilter, ...]:
        """The filters of `version`. When the database already holds a newer one, they are that version's: the
        store, checking `version`, then refuses the event and the request is authenticated again."""
        if version == 0:
            return ()
        with self._lock:
            entry = self._entries.get(tenant_id)
        if entry is not None and entry[0] == version:
            return entry[1]
        with engine.connect() as connection:
            rows = connection.execute(_VERSION_AND_FILTERED, {"tenant_id": tenant_id}).all()
        if not rows:
            return ()
        loaded = (rows[0].filters_version, _filters_of(rows))
        with self._lock:
            self._entries[tenant_id] = loaded
        return loaded[1]


_caches: weakref.WeakKeyDictionary[Engine, FilterCache] = weakref.WeakKeyDictionary()
_caches_lock = threading.Lock()


def filter_cache(engine: Engine) -> FilterCache:
    """The process's filter memory for one database (an engine), made on first use."""
    with _caches_lock:
        cache = _caches.get(engine)
        if cache is None:
            cache = _caches[engine] = FilterCache()
        return cache


def targets_of(filters: Sequence[WebhookFilter], project_id: str | None, body: dict[str, Any]
            ) -> list[tuple[int, dict[str, Any] | None]]:
    """The filtered webhooks this event reaches, each with its own body, or None where it is the event's: a
    webhook is reached when its projects list the event's project, and keeps only its listed fields, in the
    event's order; left with no field, it is not reached."""
    data = body.get("data", {})
    fields = data.get("fields") or []
    reached: list[tuple[int, dict[str, Any] | None]] = []
    for webhook in filters:
        if webhook.projects is not None and project_id not in webhook.projects:
            continue
        if webhook.fields is None:
            reached.append((webhook.webhook_id, None))
            continue
        kept = [field for field in fields if field.get("id") in webhook.fields]
        if not kept:
            continue
        reached.append((webhook.webhook_id, None if len(kept) == len(fields) else {"data": {**data, "fields": kept}}))
    return reached
