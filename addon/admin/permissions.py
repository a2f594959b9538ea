"""Who may use the admin REST API: Jira administrators only, as the tenant's Jira says (through either door)."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from cachetools import TTLCache

from addon.doors import (
    Caller,
    JiraApi,
    JiraError,
    JiraUnavailable,
    Purpose,
    caller_required,
    current_caller,
    storable,
)
from addon.process.runtime import current_runtime
from addon.web.errors import ApiError

F = TypeVar("F", bound=Callable[..., Any])

ADMIN_CACHE_TTL_S = 60.0
JIRA_RETRY_AFTER_S = "30"


class AdminCache:
    """Jira's answers to the permission check per (tenant, accountId), kept at most `ttl_s` (60 s) by `clock`.

    Only answers are kept: when Jira could not tell (unreachable, timed out, 5xx, 429, another refusal), nothing is.
    """

    def __init__(self, ttl_s: float = ADMIN_CACHE_TTL_S, max_entries: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: TTLCache[tuple[int, str], bool] = TTLCache(max_entries, ttl_s, timer=clock)
        self._lock = threading.Lock()  # cachetools' caches are not thread-safe

    def get(self, key: tuple[int, str]) -> bool | None:
        with self._lock:
            return self._entries.get(key)

    def put(self, key: tuple[int, str], value: bool) -> None:
        with self._lock:
            self._entries[key] = value

    def forget(self, keys: Iterable[tuple[int, str]]) -> int:
        """Drop these entries (a closed account's, CONTRACT §11); returns how many there were."""
        with self._lock:
            return sum(self._entries.pop(key, None) is not None for key in keys)


_admin_cache = AdminCache()


def forget_admin_checks(tenant_id: int, account_ids: Iterable[str]) -> int:
    """Drop this process's cached checks of these accounts (other processes' expire within 60 s)."""
    return _admin_cache.forget((tenant_id, account) for account in account_ids)


def jira_unavailable(message: str) -> ApiError:
    return ApiError(503, "jira_unavailable", message, {"Retry-After": JIRA_RETRY_AFTER_S})


def is_jira_admin(jira: JiraApi, account_id: str) -> bool:
    """Whether Jira grants the user the global ADMINISTER permission."""
    path = "/rest/api/3/permissions/check"
    answer = storable(jira.post(path, json={"accountId": account_id, "globalPermissions": ["ADMINISTER"]}),
                      f"POST {path}")
    granted = answer.get("globalPermissions", []) if isinstance(answer, dict) else []
    return "ADMINISTER" in granted


def require_jira_admin(caller: Caller) -> None:
    """403 unless Jira says the caller's user has ADMINISTER; 503 when Jira cannot tell."""
    if caller.account_id is None:
        raise ApiError(403, "forbidden", "the token names no user (Connect: sub; Forge: principal)")
    key = (caller.tenant_id, caller.account_id)
    allowed = _admin_cache.get(key)
    if allowed is None:
        try:
            allowed = is_jira_admin(current_runtime().jira_for(caller.tenant), caller.account_id)
        except JiraUnavailable:
            raise jira_unavailable("Jira could not be reached to check permissions") from None
        except JiraError as err:
            # Jira did not say whether the user is an administrator, so nothing is cached. Rate limited: the
            # caller is asked to try again; any other refusal (e.g. of the app's own token) is not ADMINISTER.
            if err.status == 429:
                raise jira_unavailable("Jira rate-limited the permission check (HTTP 429)") from None
            raise ApiError(403, "forbidden", f"Jira refused the permission check (HTTP {err.status})") from None
        _admin_cache.put(key, allowed)
    if not allowed:
        raise ApiError(403, "forbidden", "only Jira administrators may manage outgoing webhooks")


def admin_required(view: F) -> F:
    """Route decorator for the admin REST API: a caller whom Jira names an administrator."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        require_jira_admin(current_caller())
        return view(*args, **kwargs)

    return caller_required(Purpose.ADMIN_API)(wrapper)  # type: ignore[return-value]  # wraps keeps the signature
