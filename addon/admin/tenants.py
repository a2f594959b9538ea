"""Operator commands on tenants: list them, and carry webhooks over after a site import (new clientKey)."""

from __future__ import annotations

from sqlalchemy import ColumnElement, func, or_, select

from addon.process.runtime import Runtime
from addon.storage.engine import transaction
from addon.storage.models import MAX_WEBHOOKS_PER_TENANT, Tenant, Webhook, WebhookKind

#: The administrators' webhooks: the operational webhook (CONTRACT §10.5) is a setting, neither counted nor copied.
_ADMINISTRATORS = Webhook.kind == WebhookKind.WEBHOOK


def list_tenants(runtime: Runtime) -> list[dict]:
    with transaction(runtime.sessions) as session:
        counts = dict(session.execute(
            select(Webhook.tenant_id, func.count()).where(Webhook.deleted_at.is_(None), _ADMINISTRATORS)
            .group_by(Webhook.tenant_id)
        ).all())
        return [
            {"client_key": t.client_key or t.installation_id, "door": t.door, "base_url": t.base_url, "state": t.state,
             "installed_at": t.installed_at.isoformat(), "webhooks": counts.get(t.id, 0)}
            for t in session.scalars(select(Tenant).order_by(Tenant.id))
        ]


def _keyed(key: str) -> ColumnElement[bool]:
    """A tenant by its key in its door: Connect's clientKey or Forge's installationId."""
    return or_(Tenant.client_key == key, Tenant.installation_id == key)


def copy_webhooks(runtime: Runtime, from_client_key: str, to_client_key: str) -> int:
    """Copy every webhook (name, URL, enabled state and signing secret, so receivers keep verifying) from one
    tenant to another; webhooks the target already has for the same URL are skipped. Returns how many were copied."""
    with transaction(runtime.sessions) as session:
        source = session.scalar(select(Tenant).where(_keyed(from_client_key)))
        target = session.scalar(select(Tenant).where(_keyed(to_client_key)))
        if source is None or target is None:
            missing = from_client_key if source is None else to_client_key
            raise LookupError(f"no tenant with clientKey or Forge installationId {missing!r}")
        session.execute(select(Tenant.id).where(Tenant.id == target.id).with_for_update(key_share=True))
        existing = set(session.scalars(select(Webhook.url).where(Webhook.tenant_id == target.id,
                                                                 Webhook.deleted_at.is_(None), _ADMINISTRATORS)))
        to_copy = [webhook for webhook in session.scalars(
            select(Webhook).where(Webhook.tenant_id == source.id, Webhook.deleted_at.is_(None), _ADMINISTRATORS)
            .order_by(Webhook.id))
            if webhook.url not in existing]
        if len(existing) + len(to_copy) > MAX_WEBHOOKS_PER_TENANT:
            raise ValueError(f"the target tenant would have {len(existing) + len(to_copy)} webhooks, more than "
                             f"{MAX_WEBHOOKS_PER_TENANT}; nothing was copied")
        for webhook in to_copy:
            session.add(Webhook(tenant_id=target.id, name=webhook.name, url=webhook.url, enabled=webhook.enabled,
                                disabled_reason=webhook.disabled_reason, secret=webhook.secret))
        return len(to_copy)
