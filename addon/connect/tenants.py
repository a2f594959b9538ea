"""Tenants: looking them up for authentication, and the detached view a request carries."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection, Row
from sqlalchemy.orm import Session

from addon.connect.jira import TenantCredentials
from addon.models import Tenant, TenantState
from addon.secrets_box import SecretBox


@dataclass(frozen=True)
class TenantView:
    """A tenant as a request sees it, detached from the session that loaded it."""

    id: int
    client_key: str
    base_url: str
    state: str
    shared_secret: str

    @property
    def credentials(self) -> TenantCredentials:
        return TenantCredentials(self.client_key, self.base_url, self.shared_secret)

    @property
    def is_disabled(self) -> bool:
        return self.state == TenantState.DISABLED


def view_of(tenant: Tenant | Row, box: SecretBox) -> TenantView:
    """The view of a tenant loaded as an ORM object or read as a row with the same column names."""
    return TenantView(tenant.id, tenant.client_key, tenant.base_url, tenant.state, box.open(tenant.shared_secret))


_tenants = Tenant.__table__
_BY_CLIENT_KEY = (select(_tenants.c.id, _tenants.c.client_key, _tenants.c.base_url, _tenants.c.state,
                         _tenants.c.shared_secret)
                  .where(_tenants.c.client_key == bindparam("client_key")))


def find_installed(connection: Connection, client_key: str, box: SecretBox) -> TenantView | None:
    """The tenant for a clientKey, unless it is unknown or uninstalled.

    Read on every authenticated request, so that a replaced shared secret or an uninstall takes effect at once
    in every process: one prepared Core statement (no ORM object), and the secret opened through the box's
    memory of sealed values.
    """
    row = connection.execute(_BY_CLIENT_KEY, {"client_key": client_key}).first()
    if row is None or row.state == TenantState.UNINSTALLED:
        return None
    return view_of(row, box)


def get_view(session: Session, tenant_id: int, box: SecretBox) -> TenantView | None:
    tenant = session.get(Tenant, tenant_id)
    return view_of(tenant, box) if tenant is not None else None
