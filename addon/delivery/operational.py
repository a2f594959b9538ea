"""The tenant's operational webhook (CONTRACT §10.5): where it is, and the notice it receives about one of the
tenant's webhooks. Which transitions are told, and when, is decided by `addon.delivery.outcomes`; a notice is an
event of its own (source `operational`) with one delivery to the operational webhook, so it is signed, retried,
SSRF-checked and logged exactly as every delivery is, by the same worker and sender.

A notice is never about the operational webhook itself: a failing operational webhook cannot notify about its own
failures, so there is no loop."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from addon.outbox.store import enqueue_event
from addon.storage.models import Webhook, WebhookKind

#: The events an operational webhook receives.
DISABLED, FAILING, RECOVERED = "webhook.disabled", "webhook.failing", "webhook.recovered"
SOURCE = "operational"
#: Only failed attempts for this long make a webhook "failing" (told once per failing streak).
FAILING_ALERT_AFTER = dt.timedelta(hours=24)


def operational_webhook(session: Session, tenant_id: int, *, lock: bool = False) -> Webhook | None:
    """The tenant's operational webhook (not deleted), or None."""
    query = select(Webhook).where(Webhook.tenant_id == tenant_id, Webhook.kind == WebhookKind.OPERATIONAL,
                                  Webhook.deleted_at.is_(None)).order_by(Webhook.id).limit(1)
    if lock:
        query = query.with_for_update(key_share=True)
    return session.scalars(query).first()


def notice_body(event: str, webhook: Webhook, reason: str | None) -> dict[str, Any]:
    return {"data": {"event": event, "timestamp": int(time.time() * 1000),
                     "webhook": {"id": webhook.id, "name": webhook.name, "url": webhook.url}, "reason": reason}}


def tell(session: Session, webhook: Webhook, event: str, reason: str | None) -> bool:
    """Queue a notice about `webhook` for its tenant's operational webhook, in the caller's transaction. Returns
    whether one was queued (not when the tenant has no operational webhook, nor about the operational webhook
    itself); the caller then wakes the workers once it has committed."""
    if webhook.kind != WebhookKind.WEBHOOK:
        return False
    target = session.scalar(select(Webhook.id).where(
        Webhook.tenant_id == webhook.tenant_id, Webhook.kind == WebhookKind.OPERATIONAL,
        Webhook.deleted_at.is_(None), Webhook.enabled.is_(True)))
    if target is None:
        return False
    _, queued = enqueue_event(session, tenant_id=webhook.tenant_id, source=SOURCE,
                              body=notice_body(event, webhook, reason), webhook_ids=[target])
    return queued > 0
