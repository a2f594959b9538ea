"""The Jira REST client, signed as the app (JWT with `iss` = app key), with errors mapped to clear exceptions."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests

from addon import __version__
from addon.connect.jwt import encode_app_token
from addon.request_json import unstorable_at

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 10.0


class JiraError(Exception):
    """Jira answered with an unexpected 4xx."""

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
                json: Any = None, storable: bool = True) -> Any:
        """Call `path` (relative to the tenant's base URL) and return the decoded JSON body (None if empty).
        Raises `JiraUnstorable` for an answer holding a NUL or a lone surrogate, unless `storable` is False
        (then the caller checks the parts it keeps)."""
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
            return None
        try:
            answer = response.json()
        except ValueError:
            raise JiraUnavailable(f"Jira answered {method} {path} with a body that is not JSON") from None
        where = unstorable_at(answer) if storable else None
        if where is not None:
            raise JiraUnstorable(f"Jira answered {method} {path} with a NUL or a lone surrogate at {where}", status)
        return answer

    # The calls this add-on makes.

    def get_project(self, tenant: TenantCredentials, id_or_key: str) -> dict:
        return self.request(tenant, "GET", f"/rest/api/3/project/{id_or_key}",
                            params={"expand": "description,lead,url,projectKeys"})

    def iter_projects(self, tenant: TenantCredentials, page_size: int = 50):  # type: ignore[no-untyped-def]
        """Every project, page by page, from `GET /rest/api/3/project/search`."""
        start = 0
        while True:
            page = self.request(tenant, "GET", "/rest/api/3/project/search",
                                params={"startAt": start, "maxResults": page_size,
                                        "expand": "description,lead,url"}, storable=False)
            values = page.get("values", []) if isinstance(page, dict) else []
            for project in values:
                # One project no database can store is left out (and said so), not the whole snapshot.
                where = unstorable_at(project)
                if where is None:
                    yield project
                else:
                    log.warning("project left out of the snapshot: a NUL or a lone surrogate at %s", where)
            if not values or page.get("isLast", True):
                return
            start += len(values)

    def is_admin(self, tenant: TenantCredentials, account_id: str) -> bool:
        answer = self.request(tenant, "POST", "/rest/api/3/permissions/check",
                              json={"accountId": account_id, "globalPermissions": ["ADMINISTER"]})
        granted = answer.get("globalPermissions", []) if isinstance(answer, dict) else []
        return "ADMINISTER" in granted

    def time_tracking_options(self, tenant: TenantCredentials) -> dict:
        return self.request(tenant, "GET", "/rest/api/3/configuration/timetracking/options") or {}


def jira_host(base_url: str) -> str:
    return urlsplit(base_url).hostname or ""
