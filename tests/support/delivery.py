"""Helpers for delivery tests: webhooks created straight in the database, events enqueued as intake does."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from addon.outbox.store import enqueue_event
from addon.sending.signing import generate_secret
from addon.storage.engine import transaction
from addon.storage.models import Tenant, Webhook
from tests.support.addon_server import AddonServer


def tenant_id_of(addon: AddonServer, client_key: str) -> int:
    with addon.sessions() as session:
        return session.scalar(select(Tenant.id).where(Tenant.client_key == client_key))


def add_webhook(addon: AddonServer, tenant_id: int, url: str, name: str = "hook") -> tuple[int, str]:
    """A webhook row with a fresh secret; returns (id, secret)."""
    secret = generate_secret()
    with transaction(addon.sessions) as session:
        webhook = Webhook(tenant_id=tenant_id, name=name, url=url, enabled=True, secret=addon.runtime.box.seal(secret))
        session.add(webhook)
        session.flush()
        return webhook.id, secret


def emit(addon: AddonServer, tenant_id: int, body: dict[str, Any] | None = None) -> int:
    """Enqueue one event as the intake would; returns the event id."""
    body = body or {"data": {"event": "updated", "user": "u-1", "timestamp": 1675182117615,
                             "project": {"id": 10000, "key": "DEMO", "name": "Demo project"}, "fields": []}}
    with transaction(addon.sessions) as session:
        event_id, _ = enqueue_event(session, tenant_id=tenant_id, source="projectrak", body=body)
    addon.runtime.deliveries_committed.notify()
    return event_id
