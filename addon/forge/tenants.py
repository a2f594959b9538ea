"""Forge installations as tenants: admitted by a valid FIT, their newest app system token, and what the uninstall
inference reads (CONTRACT §9.3, §9.4).

A valid FIT of an installation not seen before creates its tenant; one of an uninstalled installation revives it.
Every request may bring a system token (`x-forge-oauth-system`): it is stored sealed (as shared secrets are) when it
differs from the stored one, the newest winning (`UPDATE … WHERE received_at < now`). The token is never logged.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError

from addon.forge.fit import ForgeInvocation
from addon.process.runtime import Runtime
from addon.storage.engine import transaction
from addon.storage.models import Door, Tenant, TenantState, utcnow
from addon.storage.tenants import TenantView, view_of

log = logging.getLogger(__name__)

TOKEN_FRESH_FOR = dt.timedelta(hours=1)
"""Background work uses the stored token only while it is younger than this (tokens live 2-4 hours)."""
LAST_REQUEST_EVERY = dt.timedelta(hours=1)
"""`last_request_at` is written at most this often per tenant (the inference counts in days)."""
_MAX_URL = 255


def _site_url(runtime: Runtime, invocation: ForgeInvocation) -> str | None:
    """The site as the FIT's context names it, when it is a Jira site URL as Connect's `baseUrl` must be."""
    site = invocation.site_url
    if site and len(site) <= _MAX_URL and runtime.settings.jira_base_url_allowed(site):
        return site.rstrip("/")
    return None


def admit(runtime: Runtime, invocation: ForgeInvocation, system_token: str | None) -> TenantView:
    """The tenant of a verified FIT's installation: created or revived as needed, its token and last request
    recorded. Writes nothing when nothing changed."""
    now = utcnow()
    for attempt in range(3):
        try:
            with transaction(runtime.sessions) as session:
                tenant = session.scalar(select(Tenant).where(Tenant.installation_id == invocation.installation_id))
                if tenant is None:
                    tenant = Tenant(door=Door.FORGE.value, installation_id=invocation.installation_id,
                                    state=TenantState.INSTALLED, installed_at=now, last_request_at=now)
                    session.add(tenant)
                    log.info("forge installation admitted as a new tenant")
                elif tenant.state == TenantState.UNINSTALLED:
                    tenant.state = TenantState.INSTALLED
                    tenant.uninstalled_at = None
                    tenant.jira_refused_since = None
                    tenant.last_request_at = now
                    log.info("forge tenant revived by a valid request tenant=%s", tenant.id)
                elif tenant.last_request_at is None or tenant.last_request_at < now - LAST_REQUEST_EVERY:
                    tenant.last_request_at = now
                site_url = _site_url(runtime, invocation)
                if tenant.api_base_url != invocation.api_base_url:
                    tenant.api_base_url = invocation.api_base_url
                if site_url is not None and tenant.base_url != site_url:
                    tenant.base_url = site_url
                elif tenant.base_url is None:  # no usable site named yet: where its Jira answers
                    tenant.base_url = invocation.api_base_url
                session.flush()
                view = view_of(tenant, runtime.box)
                stored = runtime.box.open(tenant.forge_token) if tenant.forge_token else None
            break
        except IntegrityError:  # two first requests of one installation at once: the next read finds the row
            if attempt == 2:
                raise
    if system_token and system_token != stored:
        store_token(runtime, view.id, system_token, now)
    return view


def store_token(runtime: Runtime, tenant_id: int, token: str, received_at: dt.datetime) -> None:
    """Keep `token` unless a newer one is already stored."""
    with transaction(runtime.sessions) as session:
        result = session.execute(
            update(Tenant)
            .where(Tenant.id == tenant_id,
                   or_(Tenant.forge_token_received_at.is_(None), Tenant.forge_token_received_at <= received_at))
            .values(forge_token=runtime.box.seal(token), forge_token_received_at=received_at)
            .execution_options(synchronize_session=False)
        )
    if result.rowcount:  # type: ignore[attr-defined]
        log.info("forge system token refreshed tenant=%s", tenant_id)


@dataclass(frozen=True)
class JiraAccess:
    """Where a Forge tenant's Jira answers and with what token, as stored now."""

    api_base_url: str | None
    token: str | None
    token_received_at: dt.datetime | None
    refused_since: dt.datetime | None


def jira_access(runtime: Runtime, tenant_id: int) -> JiraAccess:
    with transaction(runtime.sessions) as session:
        row = session.execute(
            select(Tenant.api_base_url, Tenant.forge_token, Tenant.forge_token_received_at, Tenant.jira_refused_since)
            .where(Tenant.id == tenant_id)
        ).one_or_none()
    if row is None:
        return JiraAccess(None, None, None, None)
    api_base_url, sealed, received_at, refused_since = row
    return JiraAccess(api_base_url, runtime.box.open(sealed) if sealed else None, received_at, refused_since)


def mark_refused(runtime: Runtime, tenant_id: int, refused: bool) -> None:
    """Jira refused (401/403) the app's token, or answered: start or clear `jira_refused_since`."""
    with transaction(runtime.sessions) as session:
        if refused:
            session.execute(update(Tenant).where(Tenant.id == tenant_id, Tenant.jira_refused_since.is_(None))
                            .values(jira_refused_since=utcnow()).execution_options(synchronize_session=False))
        else:
            session.execute(update(Tenant).where(Tenant.id == tenant_id, Tenant.jira_refused_since.is_not(None))
                            .values(jira_refused_since=None).execution_options(synchronize_session=False))
