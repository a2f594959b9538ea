"""The demo site's tenant in the demo's database, and the refusal to run on a database of real sites."""

from __future__ import annotations

import secrets

from sqlalchemy import func, select

from addon.demo.site import CLIENT_KEY, SITE_URL
from addon.process.runtime import Runtime
from addon.storage.engine import transaction
from addon.storage.models import Door, Tenant, TenantState


class RealTenants(Exception):
    """The database holds tenants of real Jira sites: the demo must not add its own beside them."""


def refuse_real_tenants(runtime: Runtime) -> None:
    with runtime.sessions() as session:
        count = session.scalar(select(func.count()).select_from(Tenant).where(Tenant.door != Door.DEMO.value)) or 0
    if count:
        raise RealTenants(f"this database holds {count} tenant(s) of real Jira sites (Connect or Forge); the demo "
                          "runs only on a database of its own (by default instance/demo.sqlite)")


def install(runtime: Runtime) -> int:
    """Create or revive the demo site's tenant with a new shared secret (the tokens of an earlier run stop
    working), enabled; its id."""
    secret = secrets.token_urlsafe(32)
    with transaction(runtime.sessions) as session:
        tenant = session.scalar(select(Tenant).where(Tenant.door == Door.DEMO.value, Tenant.client_key == CLIENT_KEY))
        if tenant is None:
            tenant = Tenant(door=Door.DEMO.value, client_key=CLIENT_KEY)
            session.add(tenant)
        tenant.shared_secret = runtime.box.seal(secret)
        tenant.base_url = SITE_URL
        tenant.display_url = None
        tenant.product_type = "jira"
        tenant.state = TenantState.ENABLED
        tenant.uninstalled_at = None
        session.flush()
        return tenant.id
