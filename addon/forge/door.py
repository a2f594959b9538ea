"""The Forge door: Forge Remote's invocation tokens, tenants by installation, system-token Jira client and its
own routes (`/forge/lifecycle`, `/forge/events/jira`), as `addon.doors.Door` (CONTRACT §9).

`Authorization: Bearer <FIT>` is this door's scheme (Connect's is `JWT …`), so the core's routes (the admin API,
the Projectrak intake) pick the door by the header. A FIT that fails any check answers 401 before any handler
runs and before anything is written; the key set being unreachable is our outage: 503 with `Retry-After`.
The door exists only while `FORGE_APP_ID` is set (`addon.app.open_doors`): otherwise its routes are 404 and a
FIT is refused like any unknown credentials.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from flask import Blueprint, Request

from addon.doors import Caller, JiraApi, Purpose, ReportAnswer, unauthorized
from addon.forge.fit import FitError, FitKeysUnavailable, FitVerifier, ForgeInvocation
from addon.forge.jira import ForgeHttp, ForgeJira
from addon.forge.tenants import admit
from addon.process.runtime import Runtime
from addon.storage.tenants import TenantView
from addon.web.errors import ApiError

log = logging.getLogger(__name__)

DOOR = "forge"
CHALLENGE = "Bearer"
CREDENTIALS_HINT = "a Forge Invocation Token (Authorization: Bearer …)"
SYSTEM_TOKEN_HEADER = "x-forge-oauth-system"
KEYS_RETRY_AFTER_S = "30"


def fit_refused(message: str) -> ApiError:
    return unauthorized(message, CHALLENGE)


class ForgeDoor:
    name = DOOR
    challenge = CHALLENGE
    credentials_hint = CREDENTIALS_HINT

    def __init__(self, runtime: Runtime, verifier: FitVerifier | None = None) -> None:
        self.runtime = runtime
        self.verifier = verifier or FitVerifier.from_settings(runtime.settings)
        self.http = ForgeHttp(runtime.settings.forge_app_id or "")

    def verify(self, request: Request) -> ForgeInvocation:
        """The request's verified FIT; 401 (`unauthorized`) when it fails, 503 when the keys cannot be read."""
        try:
            return self.verifier.verify_authorization(request.headers.get("Authorization"))
        except FitKeysUnavailable as err:
            log.warning("forge keys unavailable: %s", err)
            raise ApiError(503, "forge_keys_unavailable", f"{err}; try again later",
                           {"Retry-After": KEYS_RETRY_AFTER_S}) from None
        except FitError as err:
            raise fit_refused(str(err)) from None

    def admit(self, request: Request, invocation: ForgeInvocation) -> TenantView:
        """The installation's tenant (created or revived), with the request's system token kept."""
        token = request.headers.get(SYSTEM_TOKEN_HEADER, "").strip() or None
        return admit(self.runtime, invocation, token)

    def authenticate(self, request: Request, purpose: Purpose) -> Caller | None:
        scheme, _, _ = request.headers.get("Authorization", "").strip().partition(" ")
        if scheme.lower() != "bearer":
            return None
        invocation = self.verify(request)
        if purpose is Purpose.INTAKE and invocation.principal is None:
            raise fit_refused("the Forge Invocation Token must name the acting user in its principal claim")
        if purpose in (Purpose.ADMIN_PAGE, Purpose.JIRA_CALLBACK):
            # Forge serves the admin page itself and sends Jira's events to /forge/events/jira.
            raise fit_refused("a Forge Invocation Token is not accepted on this route")
        tenant = self.admit(request, invocation)
        return Caller(tenant=tenant, account_id=invocation.principal, door=DOOR)

    def jira_for(self, tenant: TenantView) -> JiraApi:
        return ForgeJira(self.runtime, self.http, tenant.id)

    def report_accounts(self, tenant: TenantView, accounts: Sequence[Mapping[str, str]]) -> ReportAnswer:
        """`POST {PRIVACY_API_URL}/app/report-accounts/` with the installation's newest system token (§11); with
        none younger than an hour it raises `JiraUnavailable` and the next hourly look tries again."""
        return ForgeJira(self.runtime, self.http, tenant.id).report_accounts(accounts)

    def blueprints(self) -> list[Blueprint]:
        from addon.forge import routes  # the routes read this door from the runtime

        return [routes.bp]
