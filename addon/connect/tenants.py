"""Tenants: looking them up for authentication, and the detached view a request carries."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
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


def view_of(tenant: Tenant, box: SecretBox) -> TenantView:
    return TenantView(tenant.id, tenant.client_key, tenant.base_url, tenant.state, box.open(tenant.shared_secret))


def find_installed(session: Session, client_key: str, box: SecretBox) -> TenantView | None:
    """The tenant for a clientKey, unless it is unknown or uninstalled."""
    tenant = session.scalar(select(Tenant).where(Tenant.client_key == client_key))
    if tenant is None or tenant.state == TenantState.UNINSTALLED:
        return None
    return view_of(tenant, box)


def get_view(session: Session, tenant_id: int, box: SecretBox) -> TenantView | None:
    tenant = session.get(Tenant, tenant_id)
    return view_of(tenant, box) if tenant is not None else None
