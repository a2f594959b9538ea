"""What the add-on knows of a tenant's Jira without asking every time: projects (id <-> key, name) and the
time-tracking settings, in a thread-safe, bounded TTL cache shared by requests and the Jira inbox processor.

Entries are keyed by the tenant's clientKey (unique per Jira site installation), so the cache describes a Jira
site's data and is never confused between tenants. A `project_updated`, `project_created` or `project_restored_*`
refreshes the project's entry, and a deletion forgets it; otherwise entries live `TTL_S` seconds (other processes of
a PostgreSQL deployment see a rename after at most that long).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from cachetools import TTLCache

from addon.doors import JiraApi, JiraError, JiraNotFound, JiraUnavailable, storable
from addon.intake.fields import TimeTracking, UnknownProjectKey
from addon.web.json_body import unstorable_at

log = logging.getLogger(__name__)

TTL_S = 300.0
MAX_ENTRIES = 20_000


@dataclass(frozen=True)
class ProjectInfo:
    """A project as the outgoing body names it: `id` is Jira's (numeric) id as a string."""

    id: str
    key: str
    name: str


def project_info(project: Mapping[str, Any]) -> ProjectInfo | None:
    """The id, key and name of a Jira REST project object; None when it lacks any of them."""
    project_id, key, name = project.get("id"), project.get("key"), project.get("name")
    if isinstance(project_id, int) and not isinstance(project_id, bool):
        project_id = str(project_id)
    if not (isinstance(project_id, str) and project_id.isascii() and project_id.isdigit() and len(project_id) <= 19):
        return None  # at most 19 digits: a longer id is not one (and int() of thousands of them raises)
    if not (isinstance(key, str) and key and isinstance(name, str)):
        return None
    return ProjectInfo(str(int(project_id)), key, name)


class _TtlCache:
    """A bounded LRU map whose entries expire (`cachetools.TTLCache`), safe to share between threads."""

    def __init__(self, ttl_s: float, max_entries: int) -> None:
        self._entries: TTLCache[Any, Any] = TTLCache(max_entries, ttl_s)
        self._lock = threading.Lock()  # cachetools' caches are not thread-safe

    def get(self, key: Any) -> Any | None:
        with self._lock:
            return self._entries.get(key)

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._entries[key] = value

    def pop(self, key: Any) -> Any | None:
        with self._lock:
            return self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def fetch_project(jira: JiraApi, id_or_key: str) -> Any:
    """Jira's project object (`GET /rest/api/3/project/{idOrKey}`), with what the outgoing body and the snapshot
    need."""
    path = f"/rest/api/3/project/{id_or_key}"
    return storable(jira.get(path, params={"expand": "description,lead,url,projectKeys"}), f"GET {path}")


def iter_projects(jira: JiraApi, page_size: int = 50) -> Iterator[Any]:
    """Every project, page by page, from `GET /rest/api/3/project/search`."""
    start = 0
    while True:
        page = jira.get("/rest/api/3/project/search",
                        params={"startAt": start, "maxResults": page_size, "expand": "description,lead,url"})
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


def fetch_time_tracking(jira: JiraApi) -> Any:
    path = "/rest/api/3/configuration/timetracking/options"
    return storable(jira.get(path), f"GET {path}") or {}


class ProjectDirectory:
    """Projects and time-tracking settings per tenant, from the cache or else from Jira.

    Raises what a door's `JiraApi` raises: `JiraNotFound` for an unknown project, `JiraUnavailable` when Jira cannot
    be reached (or answers something unusable), `JiraError` for other refusals.
    """

    def __init__(self, ttl_s: float = TTL_S, max_entries: int = MAX_ENTRIES) -> None:
        self._projects = _TtlCache(ttl_s, max_entries)
        self._time_tracking = _TtlCache(ttl_s, max_entries)

    def project(self, jira: JiraApi, client_key: str, id_or_key: str) -> ProjectInfo:
        """The project with this id (digits) or key, of the tenant `client_key` whose Jira `jira` is."""
        by = "id" if id_or_key.isascii() and id_or_key.isdigit() else "key"
        lookup = str(int(id_or_key)) if by == "id" else id_or_key.upper()
        cached = self._projects.get((client_key, by, lookup))
        if cached is not None:
            return cached
        answer = fetch_project(jira, lookup)
        info = project_info(answer) if isinstance(answer, Mapping) else None
        if info is None:
            raise JiraUnavailable(f"Jira answered GET project/{by} with an unusable project")
        self.remember(client_key, info)
        if by == "key":
            # Jira also finds a project by a former key; keep that alias too.
            self._projects.put((client_key, "key", lookup), info)
        return info

    def remember(self, client_key: str, info: ProjectInfo) -> None:
        """Record what Jira just said of a project (replacing what the cache held)."""
        previous = self._projects.get((client_key, "id", info.id))
        if previous is not None and previous.key.upper() != info.key.upper():
            self._projects.pop((client_key, "key", previous.key.upper()))
        self._projects.put((client_key, "id", info.id), info)
        self._projects.put((client_key, "key", info.key.upper()), info)

    def forget(self, client_key: str, project_id: str) -> None:
        """Drop a project's entries, so the next lookup asks Jira."""
        info = self._projects.pop((client_key, "id", project_id))
        if info is not None:
            self._projects.pop((client_key, "key", info.key.upper()))

    def time_tracking(self, jira: JiraApi, client_key: str) -> TimeTracking:
        """The tenant's working hours per day and days per week; Jira's defaults (8, 5) when it does not say."""
        cached = self._time_tracking.get(client_key)
        if cached is not None:
            return cached
        try:
            answer = fetch_time_tracking(jira)
        except JiraUnavailable:
            raise
        except JiraError:  # 404 or a refusal: Jira does not say, so its defaults apply
            answer = {}
        settings = time_tracking_of(answer)
        self._time_tracking.put(client_key, settings)
        return settings

    def clear(self) -> None:
        self._projects.clear()
        self._time_tracking.clear()


def _positive(value: Any, default: float, upper: float) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= upper:
        return float(value)
    return default


def time_tracking_of(answer: Any) -> TimeTracking:
    """Time-tracking settings from `GET /rest/api/3/configuration/timetracking/options`; bad values -> defaults."""
    defaults = TimeTracking()
    if not isinstance(answer, Mapping):
        return defaults
    return TimeTracking(
        hours_per_day=_positive(answer.get("workingHoursPerDay"), defaults.hours_per_day, 24),
        days_per_week=_positive(answer.get("workingDaysPerWeek"), defaults.days_per_week, 7),
    )


directory = ProjectDirectory()
"""The process's directory (keyed by clientKey, so several runtimes in one process can share it)."""


class JiraValueContext:
    """The `ValueContext` of one request: project keys and time tracking through the directory.

    An unknown project key raises `UnknownProjectKey` (the request is at fault, not Jira; `build_fields` turns it
    into a `ChangeError` at the value's path).
    """

    def __init__(self, jira: JiraApi, client_key: str, projects: ProjectDirectory = directory) -> None:
        self._jira = jira
        self._client_key = client_key
        self._projects = projects

    def project_id_for_key(self, key: str) -> str:
        try:
            return self._projects.project(self._jira, self._client_key, key).id
        except JiraNotFound:
            raise UnknownProjectKey(key) from None

    def time_tracking(self) -> TimeTracking:
        return self._projects.time_tracking(self._jira, self._client_key)
