"""Tenants: looking them up for authentication, the detached view a request carries, and the intake's memory of
them."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from cachetools import LRUCache
from sqlalchemy import ColumnElement, bindparam, func, select
from sqlalchemy.engine import Engine, Row
from sqlalchemy.orm import Session

from addon.storage.driver import DriverStatement, driver_one_statement
from addon.storage.models import Door, Tenant, TenantState, table_of
from addon.storage.secrets import SecretBox


@dataclass(frozen=True)
class TenantView:
    """A tenant as a request sees it, detached from the session that loaded it."""

    id: int
    client_key: str
    """The tenant's key in its door: Connect's clientKey, or Forge's installationId."""
    base_url: str
    state: str
    shared_secret: str = field(repr=False)
    sealed_secret: str = field(repr=False)
    """The shared secret as the row stores it (sealed with ADDON_SECRET_KEY, when set): what says, without
    opening it, whether the row still holds the secret this view was read with."""
    door: str = "connect"
    """The door (`addon.doors`) the tenant came in by, which makes its Jira client."""
    filters_version: int = 0
    """The tenant's `filters_version` when read: the intake applies the webhook filters of this version only."""

    @property
    def is_disabled(self) -> bool:
        return self.state == TenantState.DISABLED


def view_of(tenant: Tenant | Row, box: SecretBox) -> TenantView:
    """The view of a tenant loaded as an ORM object or read as a row with the same column names. A Forge tenant
    has no shared secret: its view's secrets are empty (as `tenant_key_column`/`tenant_secret_column` read it)."""
    if tenant.door == Door.FORGE:
        return TenantView(tenant.id, tenant.installation_id or "", tenant.base_url, tenant.state, "", "",
                          Door.FORGE.value, tenant.filters_version or 0)
    sealed = tenant.shared_secret or ""
    return TenantView(tenant.id, tenant.client_key or "", tenant.base_url, tenant.state, box.open(sealed), sealed,
                      tenant.door, tenant.filters_version or 0)


def tenant_key_column(tenants: Any) -> ColumnElement[str]:
    """The tenant's key in its door (`TenantView.client_key`) as SQL, for statements that check a view still holds."""
    return func.coalesce(tenants.client_key, tenants.installation_id)


def tenant_secret_column(tenants: Any) -> ColumnElement[str]:
    """The sealed shared secret as `TenantView.sealed_secret` holds it (empty for a Forge tenant), as SQL."""
    return func.coalesce(tenants.shared_secret, "")


_tenants = table_of(Tenant)
_BY_CLIENT_KEY = (select(_tenants.c.id, _tenants.c.client_key, _tenants.c.base_url, _tenants.c.state,
                         _tenants.c.shared_secret, _tenants.c.filters_version)
                  .where(_tenants.c.client_key == bindparam("client_key"), _tenants.c.door == bindparam("door")))


_DRIVER_BY_CLIENT_KEY = DriverStatement(_BY_CLIENT_KEY)


def find_installed(engine: Engine, client_key: str, box: SecretBox, door: str = Door.CONNECT.value
                   ) -> TenantView | None:
    """The tenant of `door` (Connect's, or the demo's) for a clientKey, unless it is unknown or uninstalled.

    Read on every authenticated request, so that a replaced shared secret or an uninstall takes effect at once
    in every process: one statement run by the driver (`addon.storage.driver`), and the secret opened through the box's
    memory of sealed values.
    """
    row = driver_one_statement(engine, _DRIVER_BY_CLIENT_KEY, {"client_key": client_key, "door": door})
    if row is None:
        return None
    tenant_id, key, base_url, state, sealed_secret, filters_version = row
    if state == TenantState.UNINSTALLED or key is None:  # a Forge tenant has no clientKey
        return None
    return TenantView(tenant_id, key, base_url, state, box.open(sealed_secret), sealed_secret, door,
                      filters_version)


def get_view(session: Session, tenant_id: int, box: SecretBox) -> TenantView | None:
    tenant = session.get(Tenant, tenant_id)
    return view_of(tenant, box) if tenant is not None else None


class TenantChanged(Exception):
    """The tenant's row is no longer what the request was authenticated with (re-installed with a new secret or
    base URL, disabled, enabled or uninstalled since): nothing was written; authenticate again."""


class TenantCache:
    """Installed tenants by clientKey as last read, so that the intake need not read the row on every request.

    An entry may be stale: another process may have re-installed, disabled or uninstalled the tenant. Whoever
    uses an entry confirms it where it matters: the intake stores an event only while the tenant's row is still
    the one it authenticated with (`addon.outbox.store.store_event`, in the same statement), and answers an
    error only after reading the row afresh (`addon.doors.caller_required`). Bounded: the least recently used
    entry goes first (entries are only ever added for installed tenants whose token verified).
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        self._entries: LRUCache[str, TenantView] = LRUCache(max_entries)
        self._lock = threading.Lock()  # cachetools' caches are not thread-safe; reads reorder the LRU list

    def get(self, client_key: str) -> TenantView | None:
        with self._lock:
            return self._entries.get(client_key)

    def put(self, tenant: TenantView) -> None:
        with self._lock:
            self._entries[tenant.client_key] = tenant

    def forget(self, client_key: str) -> None:
        with self._lock:
            self._entries.pop(client_key, None)
