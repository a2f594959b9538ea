"""How the Connect door authenticates a request: an HS256 JWT signed with the tenant's shared secret, in
`Authorization: JWT …` or the `jwt` query parameter, bound to the request by its `qsh` (or, on the admin REST API
only, a context token from `AP.context.getToken()`).

A failed check answers 401 before any handler runs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Request, g, request

from addon.connect.jwt import (
    JwtError,
    extract_token,
    query_string_hash,
    relative_path,
    unverified_issuer,
    verify_symmetric,
)
from addon.doors import Caller, Purpose
from addon.doors import unauthorized as door_unauthorized
from addon.process.runtime import Runtime, current_runtime
from addon.storage.tenants import TenantView, find_installed
from addon.web.errors import ApiError

F = TypeVar("F", bound=Callable[..., Any])

DOOR = "connect"
CHALLENGE = "JWT"
CREDENTIALS_HINT = "a JWT is required (Authorization: JWT … or the jwt query parameter)"


def unauthorized(message: str) -> ApiError:
    return door_unauthorized(message, CHALLENGE)


def request_qsh(base_url: str, req: Request | None = None) -> str:
    """The qsh of the request being handled, its path taken relative to the add-on's base URL."""
    req = req if req is not None else request
    path = relative_path(req.path, base_url)
    return query_string_hash(req.method, path, req.query_string.decode("latin-1"))


def _verified(req: Request, runtime: Runtime, token: str, tenant: TenantView, allow_context: bool,
              from_cache: bool) -> Caller:
    claims = verify_symmetric(token, tenant.shared_secret, expected_qsh=request_qsh(runtime.settings.base_url, req),
                              allow_context=allow_context)
    sub = claims.get("sub")
    return Caller(tenant=tenant, account_id=sub if isinstance(sub, str) and sub else None, door=DOOR,
                  from_cache=from_cache)


def authenticate(runtime: Runtime, req: Request, purpose: Purpose) -> Caller | None:
    """The caller of a request carrying a Connect JWT, None for a request without one; 401 when it fails.

    The tenant is read from the database on every request (so a replaced shared secret or an uninstall takes
    effect at once in every process), except for the intake, which takes it from the runtime's tenant cache when
    the cache has it and its secret verifies the token (see `addon.doors.caller_required`)."""
    token = extract_token(req.headers, req.args)
    if token is None:
        return None
    allow_context = purpose is Purpose.ADMIN_API
    cached_tenant = purpose is Purpose.INTAKE
    try:
        issuer = unverified_issuer(token)
        caller = None
        if cached_tenant:
            cached = runtime.tenant_cache.get(issuer)
            if cached is not None:
                try:
                    caller = _verified(req, runtime, token, cached, allow_context, from_cache=True)
                except JwtError:
                    runtime.tenant_cache.forget(issuer)  # the secret may have changed: ask the database
        if caller is None:
            tenant = find_installed(runtime.engine, issuer, runtime.box)
            if tenant is None:
                raise JwtError("the token's issuer is not an installed tenant")
            caller = _verified(req, runtime, token, tenant, allow_context, from_cache=False)
            if cached_tenant:
                runtime.tenant_cache.put(tenant)
    except JwtError as err:
        raise unauthorized(str(err)) from None
    if purpose is Purpose.INTAKE and caller.account_id is None:
        raise unauthorized("the token must name the acting user in its sub claim")
    return caller


def jwt_required(view: F) -> F:
    """Route decorator for the Connect door's own callbacks (`enabled`, `disabled`): a qsh-bound Connect JWT."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        caller = authenticate(current_runtime(), request, Purpose.JIRA_CALLBACK)
        if caller is None:
            raise unauthorized(CREDENTIALS_HINT)
        g.caller = caller
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]  # functools.wraps keeps the view's signature, not F
