"""The Jira REST client of the Connect door, signed as the app (JWT with `iss` = app key), its failures mapped to
the core's `JiraError`s."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from addon import __version__
from addon.connect.jwt import encode_app_token
from addon.doors import ReportAnswer
from addon.jira_http import pooled_session, read_answer, send

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TenantCredentials:
    """What a call to one tenant's Jira needs, detached from any database session."""

    client_key: str
    base_url: str
    shared_secret: str


class JiraClient:
    """Calls a tenant's Jira REST API as the app."""

    def __init__(self, app_key: str) -> None:
        self._app_key = app_key
        self._http = pooled_session(f"projectrak-outgoing-webhooks/{__version__} ({app_key})")

    def request(self, tenant: TenantCredentials, method: str, path: str, *, params: dict[str, Any] | None = None,
                json: Any = None) -> Any:
        """Call `path` (relative to the tenant's base URL) and return the decoded JSON body (None if empty)."""
        return self.exchange(tenant, method, path, params=params, json=json).body

    def exchange(self, tenant: TenantCredentials, method: str, path: str, *, params: dict[str, Any] | None = None,
                 json: Any = None) -> ReportAnswer:
        """Call `path` and return a 2xx answer whole (status, decoded body, headers); other answers raise."""
        query = urlencode(params or {}, doseq=True)
        relative_url = path + ("?" + query if query else "")
        base = tenant.base_url.rstrip("/")
        token = encode_app_token(app_key=self._app_key, client_key=tenant.client_key,
                                 shared_secret=tenant.shared_secret, method=method, relative_url=relative_url)
        headers = {"Authorization": f"JWT {token}", "Accept": "application/json"}
        if json is not None:
            headers["X-Atlassian-Token"] = "nocheck"
        response = send(self._http, method, base + relative_url, path, headers=headers, json=json)
        return read_answer(response, method, path)



class ConnectJira:
    """`addon.doors.JiraApi` for one Connect tenant: every call signed as the app with the tenant's secret."""

    def __init__(self, client: JiraClient, tenant: TenantCredentials) -> None:
        self._client = client
        self._tenant = tenant

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self._client.request(self._tenant, "GET", path, params=params)

    def post(self, path: str, json: Any) -> Any:
        return self._client.request(self._tenant, "POST", path, json=json)
