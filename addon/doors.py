"""The seam between the core and its front doors.

A door is how a Jira site reaches the add-on: Atlassian Connect (`addon.connect`) today, Forge Remote next. Behind
any door everything is the same core (intake, outbox, delivery, sending, storage, the admin API), which imports
nothing from a door. A door gives the core three things:

- the authentication of its requests as a `Caller` (tenant, user), for a `Purpose`;
- a Jira client for one of its tenants (`JiraApi`), signed the door's way (Connect: an app JWT; Forge: a system
  token), whose failures are the core's `JiraError`s;
- its lifecycle and its own routes (install, enable, its descriptor or manifest), as Flask blueprints;
- the call that reports stored accountIds to Atlassian for one of its tenants (`Door.report_accounts`, CONTRACT
  §11), signed the door's way; the pass around it (what is stored, the cycle, erasure) is the core's
  (`addon.privacy`).

The runtime holds the doors (`Runtime.doors`). Core routes ask this module for the caller (`caller_required`,
`current_caller`) and for a tenant's Jira (`Runtime.jira_for`).
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from flask import Blueprint, Request, current_app, g, request
from werkzeug.exceptions import HTTPException

from addon.storage.tenants import TenantChanged, TenantView, find_installed
from addon.web.errors import ApiError
from addon.web.json_body import unstorable_at

if TYPE_CHECKING:  # the runtime holds the doors: at run time, this module reads it from the app (`_runtime`)
    from addon.process.runtime import Runtime

F = TypeVar("F", bound=Callable[..., Any])


class Purpose(enum.Enum):
    """What a request is for: each door decides what proves it."""

    ADMIN_API = "admin_api"
    """The admin REST API, called by the admin page: a token of the page's user (Connect's context tokens too)."""
    ADMIN_PAGE = "admin_page"
    """The admin page's load in Jira."""
    INTAKE = "intake"
    """Server-to-server intake (Projectrak field changes): bound to the exact request; the acting user is
    required (401 without one). The tenant may come from the runtime's tenant cache (see `caller_required`)."""
    JIRA_CALLBACK = "jira_callback"
    """A request Jira itself makes (webhooks, lifecycle callbacks): bound to the exact request; no user needed."""


@dataclass(frozen=True)
class Caller:
    """Who made a request: a tenant, through a door, perhaps on behalf of a user."""

    tenant: TenantView
    account_id: str | None
    """The Atlassian accountId of the user, when the credentials name one."""
    door: str
    """The name of the door that authenticated the request."""
    from_cache: bool = False
    """The tenant came from the runtime's tenant cache and may be stale (see `caller_required`)."""

    @property
    def tenant_id(self) -> int:
        return self.tenant.id


class JiraError(Exception):
    """Jira answered with an unexpected status (or a body that cannot be used)."""

    def __init__(self, message: str, status: int | None = None, retry_after: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        """Jira's `Retry-After` header as given (a 429 or 503 may carry one), else None."""


class JiraUnavailable(JiraError):
    """Jira could not be reached, timed out or answered 5xx: the caller should retry later."""


class JiraNotFound(JiraError):
    """Jira answered 404."""


class JiraUnstorable(JiraError):
    """Jira answered JSON holding a string no database stores (a NUL or a lone surrogate): refused where it stands
    (the intake's 422, the inbox's recorded error), not retried, since asking again gets the same answer."""


def storable(answer: Any, what: str) -> Any:
    """A Jira answer the core may keep, else `JiraUnstorable` naming where it is not (whichever door fetched it)."""
    where = unstorable_at(answer)
    if where is not None:
        raise JiraUnstorable(f"Jira answered {what} with a NUL or a lone surrogate at {where}", 200)
    return answer


class JiraApi(Protocol):
    """One tenant's Jira REST API, as its door calls it. Paths are relative to the site (`/rest/api/3/…`); the
    answers are the decoded JSON bodies (None when empty). Failures raise `JiraError` and its subclasses."""

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any: ...

    def post(self, path: str, json: Any) -> Any: ...


@dataclass(frozen=True)
class ReportAnswer:
    """Atlassian's answer to a personal data report that succeeded (2xx): its status, decoded JSON body (None when
    empty) and headers (`Cycle-Period`), read by the core (`addon.privacy.report`)."""

    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)


class Door(Protocol):
    name: str
    """A short name ("connect", "forge"), as `Caller.door` carries it."""
    challenge: str
    """The `WWW-Authenticate` scheme of this door's 401 answers."""
    credentials_hint: str
    """What a request without credentials is told (the 401's message; with several doors, joined by "or")."""

    def authenticate(self, request: Request, purpose: Purpose) -> Caller | None:
        """The caller, or None when the request carries no credentials of this door's scheme (another door may
        own it). Credentials of this door that fail answer 401 (`unauthorized`); they never reach a handler."""
        ...

    def jira_for(self, tenant: TenantView) -> JiraApi:
        """A Jira client for one of this door's tenants."""
        ...

    def blueprints(self) -> list[Blueprint]:
        """The door's own routes: its lifecycle, its descriptor or manifest, its events."""
        ...

    def report_accounts(self, tenant: TenantView, accounts: Sequence[Mapping[str, str]]) -> ReportAnswer:
        """POST `{"accounts": accounts}` (each `{"accountId", "updatedAt"}`, at most 90) to Atlassian's personal
        data reporting API for this tenant (Connect: the site's `report-accounts`, signed as the app; Forge:
        `{PRIVACY_API_URL}/app/report-accounts/` with the system token). Any answer but 2xx raises `JiraError`
        (a `429` with its `retry_after`); unreachable or 5xx raises `JiraUnavailable`."""
        ...


def unauthorized(message: str, challenge: str = "JWT") -> ApiError:
    return ApiError(401, "unauthorized", message, {"WWW-Authenticate": challenge})


def authenticate(runtime: Runtime, purpose: Purpose) -> Caller:
    """The request's caller, from the first door whose scheme the request carries; 401 when none does."""
    for door in runtime.doors:
        caller = door.authenticate(request, purpose)
        if caller is not None:
            return caller
    message = " or ".join(door.credentials_hint for door in runtime.doors) or "no door is open"
    raise unauthorized(message, runtime.doors[0].challenge if runtime.doors else "JWT")


def current_caller() -> Caller:
    """The caller of the request being handled (set by `caller_required`)."""
    caller: Caller = g.caller
    return caller


def caller_required(purpose: Purpose) -> Callable[[F], F]:
    """Route decorator: authenticate the request for `purpose` before the view runs; `current_caller()` then
    tells who called.

    A tenant read from the runtime's tenant cache (the intake's) may be stale when another process has just
    re-installed, disabled or uninstalled it. The answer is still the one a fresh read gives: the view's writes
    check the tenant's row (`TenantChanged`), and before an error answer the row is read again; when it changed,
    the request is authenticated afresh (401 for credentials of the old installation) and handled again (nothing
    was written).
    """

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            runtime = _runtime()
            g.caller = authenticate(runtime, purpose)
            if not g.caller.from_cache:
                return _handle_fresh(view, args, kwargs)
            try:
                return view(*args, **kwargs)
            except (ApiError, HTTPException, TenantChanged) as err:
                if not isinstance(err, TenantChanged) and _cached_tenant_is_current(runtime, g.caller.tenant):
                    raise
            runtime.tenant_cache.forget(g.caller.tenant.client_key)
            g.caller = authenticate(runtime, purpose)
            return _handle_fresh(view, args, kwargs)

        return wrapper  # type: ignore[return-value]  # functools.wraps keeps the view's signature, not F

    return decorate


def _runtime() -> Runtime:
    runtime: Runtime = current_app.extensions["addon"]  # as `addon.process.runtime.current_runtime`
    return runtime


def _cached_tenant_is_current(runtime: Runtime, tenant: TenantView) -> bool:
    return find_installed(runtime.engine, tenant.client_key, runtime.box, tenant.door) == tenant


def _handle_fresh(view: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
    """The view, for a tenant just read: a `TenantChanged` now means the tenant changed while the request was
    handled (a re-install or a disable racing it); nothing was written, and the sender is asked to try again."""
    try:
        return view(*args, **kwargs)
    except TenantChanged:
        raise ApiError(503, "tenant_changed", "the add-on's installation changed while the request was handled; "
                       "send it again", {"Retry-After": "1"}) from None
