"""The Jira REST client of the Connect door, signed as the app (JWT with `iss` = app key), its failures mapped to
the core's `JiraError`s."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import requests

from addon import __version__
from addon.connect.jwt import encode_app_token
from addon.doors import JiraError, JiraNotFound, JiraUnavailable, ReportAnswer

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 10.0


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
        self._http = requests.Session()
        self._http.trust_env = False
        self._http.headers["User-Agent"] = f"projectrak-outgoing-webhooks/{__version__} ({app_key})"
        adapter = requests.adapters.HTTPAdapter(pool_connections=32, pool_maxsize=32)
        self._http.mount("https://", adapter)
        self._http.mount("http://", adapter)

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
        try:
            response = self._http.request(method, base + relative_url, headers=headers, json=json,
                                          timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S), allow_redirects=False)
        except requests.Timeout:
            raise JiraUnavailable(f"Jira timed out on {method} {path}") from None
        except requests.RequestException as err:
            raise JiraUnavailable(f"Jira could not be reached on {method} {path}: {type(err).__name__}") from None
        status = response.status_code
        retry_after = response.headers.get("Retry-After")
        if status >= 500:
            raise JiraUnavailable(f"Jira answered {status} on {method} {path}", status, retry_after)
        if status == 404:
            raise JiraNotFound(f"Jira answered 404 on {method} {path}", status)
        if status >= 300:
            raise JiraError(f"Jira answered {status} on {method} {path}", status, retry_after)
        if not response.content:
            return ReportAnswer(status, None, response.headers)
        try:
            return ReportAnswer(status, response.json(), response.headers)
        except ValueError:
            raise JiraUnavailable(f"Jira answered {method} {path} with a body that is not JSON") from None



class ConnectJira:
    """`addon.doors.JiraApi` for one Connect tenant: every call signed as the app with the tenant's secret."""

    def __init__(self, client: JiraClient, tenant: TenantCredentials) -> None:
        self._client = client
        self._tenant = tenant

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self._client.request(self._tenant, "GET", path, params=params)

    def post(self, path: str, json: Any) -> Any:
        return self._client.request(self._tenant, "POST", path, json=json)
