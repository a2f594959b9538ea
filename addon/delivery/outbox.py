"""The outbox: an accepted event becomes one delivery row per enabled webhook, in the caller's transaction."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session

from addon.delivery.signing import new_message_id
from addon.models import Delivery, DeliveryStatus, Event, Webhook, utcnow

# PostgreSQL channel that wakes `addon worker` processes; the in-process Wakeup covers the same process.
NOTIFY_CHANNEL = "addon_deliveries"


def encode_body(body: dict[str, Any]) -> str:
    """The exact bytes a receiver gets: compact JSON, key order kept, UTF-8 as is."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def enqueue_event(session: Session, *, tenant_id: int, source: str, body: dict[str, Any],
                  project_id: str | None = None, webhook_ids: list[int] | None = None,
                  include_disabled: bool = False) -> tuple[int, int]:
    """Store the event and a pending delivery for each enabled webhook (or only `webhook_ids`, which may
    include disabled ones when `include_disabled`, as a test delivery does).

    Returns (event id, number of deliveries). The caller commits, then calls `runtime.deliveries_committed.notify()`.
    """
    # Core statements rather than ORM objects: the intake does this for every accepted change, and the unit of
    # work's bookkeeping cost more than the inserts themselves (see docs/benchmarks.md).
    now = utcnow()
    event_id = session.execute(
        insert(Event).values(tenant_id=tenant_id, source=source, project_id=project_id, body=encode_body(body),
                             created_at=now).returning(Event.id)).scalar_one()
    query = select(Webhook.id).where(Webhook.tenant_id == tenant_id, Webhook.deleted_at.is_(None))
    if not include_disabled:
        query = query.where(Webhook.enabled.is_(True))
    if webhook_ids is not None:
        query = query.where(Webhook.id.in_(webhook_ids))
    targets = list(session.scalars(query.order_by(Webhook.id)))
    if targets:
        session.execute(insert(Delivery.__table__), [
            {"tenant_id": tenant_id, "event_id": event_id, "webhook_id": webhook_id, "message_id": new_message_id(),
             "status": DeliveryStatus.PENDING, "attempt_count": 0, "next_attempt_at": now,
             "schedule_started_at": now, "created_at": now}
            for webhook_id in targets])
        notify_workers(session)
    return event_id, len(targets)


def notify_workers(session: Session) -> None:
    """On PostgreSQL, wake `addon worker` processes when this transaction commits (NOTIFY is transactional)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"NOTIFY {NOTIFY_CHANNEL}"))
