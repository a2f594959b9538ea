"""The Jira REST client of the Forge door: `{app.apiBaseUrl}/rest/api/3/…` with `Authorization: Bearer <the newest
app system token>` (CONTRACT §9.3), its failures mapped to the core's `JiraError`s.

The token is read from the tenant's row at each call, so every call uses the newest one a request brought. With
no token younger than `TOKEN_FRESH_FOR`, a call raises `JiraUnavailable`: background work (the install snapshot,
the Jira event processor) then waits and retries as for a Jira that is down, and its log line says why.
Jira answering 401/403 starts the tenant's `jira_refused_since` (the uninstall inference); any answer clears it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import requests

from addon import __version__
from addon.doors import JiraUnavailable, ReportAnswer
from addon.forge.tenants import TOKEN_FRESH_FOR, jira_access, mark_refused
from addon.jira_http import pooled_session, read_answer, send
from addon.process.runtime import Runtime
from addon.storage.models import utcnow

PRIVACY_REPORT_PATH = "/app/report-accounts/"


class ForgeHttp:
    """One HTTP session for the Jira calls of every Forge tenant of a process."""

    def __init__(self, app_id: str) -> None:
        self.session: requests.Session = pooled_session(
            f"projectrak-outgoing-webhooks/{__version__} (forge {app_id})")


class ForgeJira:
    """`addon.doors.JiraApi` for one Forge tenant."""

    def __init__(self, runtime: Runtime, http: ForgeHttp, tenant_id: int) -> None:
        self._runtime = runtime
        self._http = http
        self._tenant_id = tenant_id

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self._request("GET", path, params=params)

    def post(self, path: str, json: Any) -> Any:
        return self._request("POST", path, json=json)

    def report_accounts(self, accounts: Sequence[Mapping[str, str]]) -> ReportAnswer:
        """Atlassian's personal data reporting API for Forge apps, with this installation's system token (§11)."""
        url = self._runtime.settings.privacy_api_url + PRIVACY_REPORT_PATH
        return self._exchange("POST", PRIVACY_REPORT_PATH, json={"accounts": list(accounts)}, url=url)

    def _request(self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None) -> Any:
        return self._exchange(method, path, params=params, json=json).body

    def _exchange(self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None,
                  url: str | None = None) -> ReportAnswer:
        """Call `path` on the installation's Jira (or `url`) with the newest system token; a 2xx answer whole."""
        access = jira_access(self._runtime, self._tenant_id)
        if url is None and access.api_base_url is None:
            raise JiraUnavailable("the Forge installation has named no apiBaseUrl yet")
        if (access.token is None or access.token_received_at is None
                or access.token_received_at < utcnow() - TOKEN_FRESH_FOR):
            raise JiraUnavailable("waiting for a fresh Forge system token (none younger than 1 hour is stored; "
                                  "the next request of the installation brings one)")
        headers = {"Authorization": f"Bearer {access.token}", "Accept": "application/json"}
        target = url or f"{access.api_base_url}{path}"
        response = send(self._http.session, method, target, path, headers=headers, params=params, json=json)
        status = response.status_code
        refused = status in (401, 403)
        if (refused or status < 500) and refused != (access.refused_since is not None):
            mark_refused(self._runtime, self._tenant_id, refused)
        return read_answer(response, method, path)
