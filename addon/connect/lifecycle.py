"""Lifecycle callbacks: signed install and uninstall (RS256), enabled and disabled (HS256)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Blueprint, request
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from addon.connect.auth import DOOR, jwt_required, request_qsh, unauthorized
from addon.connect.jwt import JwtError, extract_token, token_fingerprint, verify_install
from addon.delivery.outcomes import cancel_tenant_deliveries
from addon.doors import current_caller
from addon.outbox.store import notify_workers
from addon.process.runtime import current_runtime
from addon.storage.engine import transaction
from addon.storage.models import Tenant, TenantState, UsedInstallToken, utcnow
from addon.web.json_body import read_json, unprocessable

log = logging.getLogger(__name__)
bp = Blueprint("lifecycle", __name__)
T = TypeVar("T")


def _verified_install_claims() -> tuple[dict, str]:
    token = extract_token(request.headers, {})
    if token is None:
        raise unauthorized("a signed install JWT is required in the Authorization header")
    runtime = current_runtime()
    try:
        # The install keys are the Connect door's (`ConnectDoor.install_keys`), which imports this module.
        install_keys = runtime.door(DOOR).install_keys  # type: ignore[attr-defined]
        claims = verify_install(token, install_keys, audience=runtime.settings.base_url,
                                expected_qsh=request_qsh(runtime.settings.base_url))
    except JwtError as err:
        raise unauthorized(str(err)) from None
    return claims, token


#: The body's fields that are stored, with the most characters their columns take (`addon.storage.models.Tenant`).
_REQUIRED_FIELDS = {"clientKey": 255, "baseUrl": 255}
_OPTIONAL_FIELDS = {"displayUrl": 255, "productType": 32}


def _check_text(name: str, value: Any, max_length: int) -> None:
    if not isinstance(value, str) or not value.strip() or len(value) > max_length:
        raise unprocessable(name, f"must be a non-empty string of at most {max_length} characters")
    if "\x00" in value:
        raise unprocessable(name, "must not contain NUL characters")


def _lifecycle_body(install: bool) -> dict[str, Any]:
    """The signed body, checked before anything is written: for an install, every field that is stored a string
    that fits its column (a 422 naming the field, not a database error)."""
    body = read_json()
    if not isinstance(body, dict):
        raise unprocessable("body", "must be a JSON object")
    for name, max_length in _REQUIRED_FIELDS.items():
        _check_text(name, body.get(name), max_length)
    if install:
        _check_text("sharedSecret", body.get("sharedSecret"), 255)
        for name, max_length in _OPTIONAL_FIELDS.items():
            if body.get(name) not in (None, ""):  # absent, null or "": not stored
                _check_text(name, body[name], max_length)
    return body


#: Attempts of a lifecycle write that a concurrent one made fail on a unique key (PostgreSQL: two installs of
#: the same new clientKey, or one install token sent twice at once). The next attempt sees the other's row.
_WRITE_ATTEMPTS = 3


def _write(work: Callable[[Session], T]) -> T:
    """Run `work` in a transaction, again when a concurrent lifecycle call inserted the same row first."""
    sessions = current_runtime().sessions
    for attempt in range(1, _WRITE_ATTEMPTS + 1):
        try:
            with transaction(sessions) as session:
                return work(session)
        except IntegrityError:
            if attempt == _WRITE_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def _refuse_replay(session, token: str, claims: dict) -> None:
    now = utcnow()
    fingerprint = token_fingerprint(token)
    used = session.get(UsedInstallToken, fingerprint)
    if used is not None and used.expires_at > now:
        raise unauthorized("this install token has already been used")
    expires_at = dt.datetime.fromtimestamp(int(claims["exp"]), dt.UTC) + dt.timedelta(seconds=60)
    if used is None:
        session.add(UsedInstallToken(token_hash=fingerprint, expires_at=expires_at))
    else:
        used.expires_at = expires_at


@bp.post("/lifecycle/installed")
def installed():
    claims, token = _verified_install_claims()
    body = _lifecycle_body(install=True)
    if claims.get("iss") != body["clientKey"]:
        raise unauthorized("the token's issuer is not the body's clientKey")
    runtime = current_runtime()
    if not runtime.settings.jira_base_url_allowed(body["baseUrl"]):
        raise unprocessable("baseUrl", "is not an https URL on a host that ADDON_JIRA_HOSTS allows")

    def install(session: Session) -> int:
        _refuse_replay(session, token, claims)
        tenant = session.scalar(select(Tenant).where(Tenant.client_key == body["clientKey"]))
        if tenant is None:
            tenant = Tenant(client_key=body["clientKey"], state=TenantState.INSTALLED)
            session.add(tenant)
        elif tenant.state == TenantState.UNINSTALLED:
            tenant.state = TenantState.INSTALLED
            tenant.uninstalled_at = None
        tenant.shared_secret = runtime.box.seal(body["sharedSecret"])
        tenant.base_url = body["baseUrl"].rstrip("/")
        tenant.display_url = body["displayUrl"].rstrip("/") or None if body.get("displayUrl") else None
        tenant.product_type = body.get("productType") or None
        session.flush()
        return tenant.id

    tenant_id = _write(install)
    runtime.tenant_cache.forget(body["clientKey"])  # other processes find out at their next write (TenantCache)
    log.info("tenant installed tenant=%s", tenant_id)
    for hook in runtime.on_installed:
        hook(tenant_id)
    return "", 204


@bp.post("/lifecycle/uninstalled")
def uninstalled():
    claims, token = _verified_install_claims()
    body = _lifecycle_body(install=False)
    if claims.get("iss") != body["clientKey"]:
        raise unauthorized("the token's issuer is not the body's clientKey")
    runtime = current_runtime()

    def uninstall(session: Session) -> None:
        _refuse_replay(session, token, claims)
        tenant = session.scalar(select(Tenant).where(Tenant.client_key == body["clientKey"]))
        if tenant is not None and tenant.state != TenantState.UNINSTALLED:
            tenant.state = TenantState.UNINSTALLED
            tenant.uninstalled_at = utcnow()
            cancel_tenant_deliveries(session, tenant.id)
            log.info("tenant uninstalled tenant=%s", tenant.id)

    _write(uninstall)
    runtime.tenant_cache.forget(body["clientKey"])
    return "", 204


def _set_state(state: TenantState) -> None:
    runtime = current_runtime()
    caller = current_caller()
    with transaction(runtime.sessions) as session:
        tenant = session.get(Tenant, caller.tenant_id)
        if tenant is not None and tenant.state != TenantState.UNINSTALLED:
            tenant.state = state
            if state == TenantState.ENABLED:
                notify_workers(session)  # paused deliveries are due again, in every worker process
    runtime.tenant_cache.forget(caller.tenant.client_key)
    log.info("tenant %s tenant=%s", state.value, caller.tenant_id)
    if state == TenantState.ENABLED:
        runtime.deliveries_committed.notify()


@bp.post("/lifecycle/enabled")
@jwt_required
def enabled():
    _set_state(TenantState.ENABLED)
    return "", 204


@bp.post("/lifecycle/disabled")
@jwt_required
def disabled():
    _set_state(TenantState.DISABLED)
    return "", 204
