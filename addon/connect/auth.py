"""Request authentication for every route that Jira (or Projectrak, or the admin page) calls.

A failed check answers 401 before any handler runs. Handlers read the caller from `flask.g.auth`.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import g, request
from werkzeug.exceptions import HTTPException

from addon.connect.jira import JiraError, JiraUnavailable
from addon.connect.jwt import (
    JwtError,
    extract_token,
    query_string_hash,
    relative_path,
    unverified_issuer,
    verify_symmetric,
)
from addon.process.runtime import current_runtime
from addon.storage.tenants import TenantChanged, TenantView, find_installed
from addon.web.errors import ApiError

F = TypeVar("F", bound=Callable[..., Any])

ADMIN_CACHE_TTL_S = 60.0
JIRA_RETRY_AFTER_S = "30"


@dataclass(frozen=True)
class AuthContext:
    tenant: TenantView
    claims: dict
    account_id: str | None
    is_context_token: bool
    tenant_from_cache: bool = False
    """The tenant came from `TenantCache` and may be stale (see `jwt_required`)."""


def unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, {"WWW-Authenticate": "JWT"})


def request_qsh() -> str:
    settings = current_runtime().settings
    path = relative_path(request.path, settings.base_url)
    return query_string_hash(request.method, path, request.query_string.decode("latin-1"))


def _verified(token: str, tenant: TenantView, allow_context: bool, from_cache: bool) -> AuthContext:
    claims = verify_symmetric(token, tenant.shared_secret, expected_qsh=request_qsh(), allow_context=allow_context)
    sub = claims.get("sub")
    return AuthContext(tenant=tenant, claims=claims, account_id=sub if isinstance(sub, str) and sub else None,
                       is_context_token=claims.get("qsh") == "context-qsh", tenant_from_cache=from_cache)


def authenticate_request(allow_context: bool, *, cached_tenant: bool = False) -> AuthContext:
    """Verify the request's HS256 token against its tenant's shared secret, read from the database (or, with
    `cached_tenant`, from the tenant cache when it has the tenant and its secret verifies the token)."""
    token = extract_token(request.headers, request.args)
    if token is None:
        raise unauthorized("a JWT is required (Authorization: JWT … or the jwt query parameter)")
    runtime = current_runtime()
    try:
        issuer = unverified_issuer(token)
        if cached_tenant:
            cached = runtime.tenant_cache.get(issuer)
            if cached is not None:
                try:
                    return _verified(token, cached, allow_context, from_cache=True)
                except JwtError:
                    runtime.tenant_cache.forget(issuer)  # the secret may have changed: ask the database
        tenant = find_installed(runtime.engine, issuer, runtime.box)
        if tenant is None:
            raise JwtError("the token's issuer is not an installed tenant")
        auth = _verified(token, tenant, allow_context, from_cache=False)
    except JwtError as err:
        raise unauthorized(str(err)) from None
    if cached_tenant:
        runtime.tenant_cache.put(tenant)
    return auth


def _cached_tenant_is_current(tenant: TenantView) -> bool:
    runtime = current_runtime()
    return find_installed(runtime.engine, tenant.client_key, runtime.box) == tenant


def jwt_required(allow_context: bool = False, *, cached_tenant: bool = False) -> Callable[[F], F]:
    """Route decorator: authenticate with a qsh-bound token (and a context token where allowed).

    With `cached_tenant` (the intake), the tenant may come from the tenant cache, whose entry may be stale when
    another process has just re-installed, disabled or uninstalled it. The answer is still the one a fresh read
    gives: the view's writes check the tenant's row (`TenantChanged`), and before an error answer the row is read
    again; when it changed, the request is authenticated afresh (401 for a token of the old secret) and handled
    again (nothing was written).
    """

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            g.auth = authenticate_request(allow_context, cached_tenant=cached_tenant)
            if not g.auth.tenant_from_cache:
                return _handle_fresh(view, args, kwargs)
            try:
                return view(*args, **kwargs)
            except (ApiError, HTTPException, TenantChanged) as err:
                if not isinstance(err, TenantChanged) and _cached_tenant_is_current(g.auth.tenant):
                    raise
            current_runtime().tenant_cache.forget(g.auth.tenant.client_key)
            g.auth = authenticate_request(allow_context, cached_tenant=cached_tenant)
            return _handle_fresh(view, args, kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def _handle_fresh(view: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
    """The view, for a tenant just read: a `TenantChanged` now means the tenant changed while the request was
    handled (a re-install or a disable racing it); nothing was written, and the sender is asked to try again."""
    try:
        return view(*args, **kwargs)
    except TenantChanged:
        raise ApiError(503, "tenant_changed", "the add-on's installation changed while the request was handled; "
                       "send it again", {"Retry-After": "1"}) from None


class AdminCache:
    """Jira's answers to the permission check per (tenant, accountId), kept at most `ttl_s` (60 s) by `clock`.

    Only answers are kept: when Jira could not tell (unreachable, timed out, 5xx, 429, another refusal), nothing is.
    """

    def __init__(self, ttl_s: float = ADMIN_CACHE_TTL_S, max_entries: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._clock = clock
        self._entries: dict[tuple[int, str], tuple[float, bool]] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[int, str]) -> bool | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] <= self._clock():
                return None
            return entry[1]

    def put(self, key: tuple[int, str], value: bool) -> None:
        with self._lock:
            now = self._clock()
            if len(self._entries) >= self._max_entries:
                self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
                if len(self._entries) >= self._max_entries:
                    self._entries.clear()
            self._entries[key] = (now + self._ttl_s, value)


_admin_cache = AdminCache()


def _jira_unavailable(message: str) -> ApiError:
    return ApiError(503, "jira_unavailable", message, {"Retry-After": JIRA_RETRY_AFTER_S})


def require_jira_admin(auth: AuthContext) -> None:
    """403 unless Jira says the token's user has ADMINISTER; 503 when Jira cannot tell."""
    if auth.account_id is None:
        raise ApiError(403, "forbidden", "the token names no user (sub)")
    key = (auth.tenant.id, auth.account_id)
    allowed = _admin_cache.get(key)
    if allowed is None:
        try:
            allowed = current_runtime().jira.is_admin(auth.tenant.credentials, auth.account_id)
        except JiraUnavailable:
            raise _jira_unavailable("Jira could not be reached to check permissions") from None
        except JiraError as err:
            # Jira did not say whether the user is an administrator, so nothing is cached. Rate limited: the
            # caller is asked to try again; any other refusal (e.g. of the app's own token) is not ADMINISTER.
            if err.status == 429:
                raise _jira_unavailable("Jira rate-limited the permission check (HTTP 429)") from None
            raise ApiError(403, "forbidden", f"Jira refused the permission check (HTTP {err.status})") from None
        _admin_cache.put(key, allowed)
    if not allowed:
        raise ApiError(403, "forbidden", "only Jira administrators may manage outgoing webhooks")


def admin_required(view: F) -> F:
    """Route decorator for the admin REST API: a context (or qsh-bound) token of a Jira administrator."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        g.auth = authenticate_request(allow_context=True)
        require_jira_admin(g.auth)
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
