"""The demo door (`addon.doors.Door`): the demo site's tenant, its signed requests and its in-process Jira.

Opened only by `addon demo` (`addon.demo.command`), as the only door of that process. Its requests authenticate the
way the Connect door's do, through the same `caller_required(purpose)` of every core route: an HS256 JWT with the
demo tenant's shared secret, qsh-bound (a context token on the admin REST API only). The admin page's user is the
`sub` of the context token the demo site hands its page (`/demo/site/token`), and the admin API still asks this
door's Jira whether that user is an administrator (`admin.permissions`), which the demo site answers from its own
list of administrators.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence

from flask import Blueprint, Request

from addon.demo import auth
from addon.demo.receiver import Receiver
from addon.demo.site import CLIENT_KEY, DemoJira, DemoSite
from addon.doors import Caller, JiraApi, Purpose, ReportAnswer, unauthorized
from addon.process.runtime import Runtime
from addon.storage.models import Door
from addon.storage.tenants import TenantView, find_installed

DOOR = Door.DEMO.value
CHALLENGE = "JWT"
CREDENTIALS_HINT = "a JWT of the demo site is required (Authorization: JWT …)"


class DemoDoor:
    name = DOOR
    challenge = CHALLENGE
    credentials_hint = CREDENTIALS_HINT

    def __init__(self, runtime: Runtime, site: DemoSite, receiver: Receiver) -> None:
        self.runtime = runtime
        self.site = site
        self.receiver = receiver
        self.login_key = secrets.token_urlsafe(24)
        """What the printed URL carries once: it signs the browser in to the demo site (a cookie)."""

    def tenant(self) -> TenantView:
        """The demo site's tenant as installed at start (with the shared secret the site signs with)."""
        tenant = find_installed(self.runtime.engine, CLIENT_KEY, self.runtime.box, DOOR)
        if tenant is None:
            raise LookupError("the demo site's tenant is not installed")
        return tenant

    def authenticate(self, request: Request, purpose: Purpose) -> Caller | None:
        token = auth.extract(request)
        if token is None:
            return None
        try:
            tenant = find_installed(self.runtime.engine, auth.issuer(token), self.runtime.box, DOOR)
            if tenant is None:
                raise auth.TokenRefused("the token's issuer is not the demo site")
            claims = auth.verify(token, tenant.shared_secret, auth.request_qsh(request, self.runtime.settings.base_url),
                                 allow_context=purpose is Purpose.ADMIN_API)
        except auth.TokenRefused as err:
            raise unauthorized(str(err), CHALLENGE) from None
        sub = claims.get("sub")
        account_id = sub if isinstance(sub, str) and sub else None
        if purpose is Purpose.INTAKE and account_id is None:
            raise unauthorized("the token must name the acting user in its sub claim", CHALLENGE)
        return Caller(tenant=tenant, account_id=account_id, door=DOOR)

    def jira_for(self, tenant: TenantView) -> JiraApi:
        return DemoJira(self.site)

    def blueprints(self) -> list[Blueprint]:
        from addon.demo import routes  # the routes read this door from the runtime

        return [routes.bp]

    def report_accounts(self, tenant: TenantView, accounts: Sequence[Mapping[str, str]]) -> ReportAnswer:
        """The demo site's users never close their accounts."""
        return ReportAnswer(200, {"accounts": []}, {"Cycle-Period": "604800"})
