"""What both doors' clients of Atlassian's REST APIs share: one pooled session, and the mapping of a call's
failures onto the core's `JiraError`s (how each door signs its calls is its own)."""

from __future__ import annotations

from typing import Any

import requests

from addon.doors import JiraError, JiraNotFound, JiraUnavailable, ReportAnswer

CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 10.0


def pooled_session(user_agent: str) -> requests.Session:
    """A session for one process's calls to Atlassian: no proxy or CA variables from the environment, 32 pooled
    connections per host, no redirects followed (each call says so)."""
    session = requests.Session()
    session.trust_env = False
    session.headers["User-Agent"] = user_agent
    adapter = requests.adapters.HTTPAdapter(pool_connections=32, pool_maxsize=32)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def send(session: requests.Session, method: str, url: str, path: str, *, headers: dict[str, str],
         params: dict[str, Any] | None = None, json: Any = None) -> requests.Response:
    """Make the call; a timeout or a connection failure is `JiraUnavailable` (`path` names the call in errors,
    without the query or the host)."""
    try:
        return session.request(method, url, params=params, json=json, headers=headers,
                               timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S), allow_redirects=False)
    except requests.Timeout:
        raise JiraUnavailable(f"Jira timed out on {method} {path}") from None
    except requests.RequestException as err:
        raise JiraUnavailable(f"Jira could not be reached on {method} {path}: {type(err).__name__}") from None


def read_answer(response: requests.Response, method: str, path: str) -> ReportAnswer:
    """A 2xx answer whole (status, decoded JSON body or None when empty, headers); any other answer raises:
    5xx and an unreadable body `JiraUnavailable` (try later), 404 `JiraNotFound`, the rest `JiraError`."""
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
