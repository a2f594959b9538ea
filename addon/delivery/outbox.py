"""The outbox: an accepted event becomes one delivery row per enabled webhook, in the caller's transaction."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Select, bindparam, insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from addon.delivery.signing import new_message_id
from addon.models import Delivery, DeliveryStatus, Event, UTCDateTime, Webhook, utcnow

# PostgreSQL channel that wakes `addon worker` processes; the in-process Wakeup covers the same process.
NOTIFY_CHANNEL = "addon_deliveries"


def encode_body(body: dict[str, Any]) -> str:
    """The exact bytes a receiver gets: compact JSON, key order kept, UTF-8 as is."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


_events = Event.__table__
_webhooks = Webhook.__table__
_INSERT_EVENT = (insert(_events).values(tenant_id=bindparam("tenant_id"), source=bindparam("source"),
                                        project_id=bindparam("project_id"), body=bindparam("body"),
                                        created_at=bindparam("created_at", type_=UTCDateTime()))
                 .returning(_events.c.id))
_INSERT_DELIVERIES = insert(Delivery.__table__)


def _targets(*, only_ids: bool, include_disabled: bool) -> Select:
    query = (select(_webhooks.c.id).where(_webhooks.c.tenant_id == bindparam("tenant_id"),
                                          _webhooks.c.deleted_at.is_(None)).order_by(_webhooks.c.id))
    if not include_disabled:
        query = query.where(_webhooks.c.enabled.is_(True))
    if only_ids:
        query = query.where(_webhooks.c.id.in_(bindparam("webhook_ids", expanding=True)))
    return query


_TARGETS = {(only_ids, include_disabled): _targets(only_ids=only_ids, include_disabled=include_disabled)
            for only_ids in (False, True) for include_disabled in (False, True)}


def enqueue_event(db: Session | Connection, *, tenant_id: int, source: str, body: dict[str, Any],
                  project_id: str | None = None, webhook_ids: list[int] | None = None,
                  include_disabled: bool = False) -> tuple[int, int]:
    """Store the event and a pending delivery for each enabled webhook (or only `webhook_ids`, which may
    include disabled ones when `include_disabled`, as a test delivery does), in the caller's transaction.

    Returns (event id, number of deliveries). The caller commits, then calls `runtime.deliveries_committed.notify()`.
    """
    # Statements built once, executed on the Core connection: the intake does this for every accepted change,
    # and ORM objects, then per-call statement building, cost more than the inserts themselves
    # (see docs/benchmarks.md).
    connection = db.connection() if isinstance(db, Session) else db
    now = utcnow()
    event_id = connection.execute(_INSERT_EVENT, {"tenant_id": tenant_id, "source": source,
                                                  "project_id": project_id, "body": encode_body(body),
                                                  "created_at": now}).scalar_one()
    params: dict[str, Any] = {"tenant_id": tenant_id}
    if webhook_ids is not None:
        params["webhook_ids"] = webhook_ids
    targets = list(connection.execute(_TARGETS[webhook_ids is not None, include_disabled], params).scalars())
    if targets:
        connection.execute(_INSERT_DELIVERIES, [
            {"tenant_id": tenant_id, "event_id": event_id, "webhook_id": webhook_id, "message_id": new_message_id(),
             "status": DeliveryStatus.PENDING, "attempt_count": 0, "next_attempt_at": now,
             "schedule_started_at": now, "created_at": now}
            for webhook_id in targets])
        notify_workers(connection)
    return event_id, len(targets)


def notify_workers(db: Session | Connection) -> None:
    """On PostgreSQL, wake `addon worker` processes when this transaction commits (NOTIFY is transactional)."""
    connection = db.connection() if isinstance(db, Session) else db
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"NOTIFY {NOTIFY_CHANNEL}")
