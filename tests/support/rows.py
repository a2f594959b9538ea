"""Rows written straight into the add-on's tables, for tests of migrations and query plans that need a schema's
rows without going through the intake (both databases)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Connection


def site_with_webhooks(connection: Connection, webhooks: int = 1) -> None:
    """Site 1 (a Connect site, enabled) with `webhooks` enabled webhooks, ids 1…`webhooks`."""
    connection.execute(text(
        "INSERT INTO tenants (id, door, client_key, shared_secret, base_url, state, installed_at, updated_at) "
        "VALUES (1, 'connect', 'k', 's', 'https://s.example', 'enabled', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
    for webhook_id in range(1, webhooks + 1):
        connection.execute(text(
            "INSERT INTO webhooks (id, tenant_id, name, url, enabled, secret, created_at, updated_at) "
            "VALUES (:id, 1, :name, :url, true, 's', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"),
            {"id": webhook_id, "name": f"w{webhook_id}", "url": f"https://r.example/{webhook_id}"})
