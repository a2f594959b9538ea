"""The demo's Jira site, in memory: its users (one of them its administrator), project categories and projects,
and the `JiraApi` the core calls for it (`DemoJira`), which answers the few Jira REST calls the core makes with the
shapes Jira's REST API gives, so the permission check and the project look-ups run their real code."""

from __future__ import annotations

import copy
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from addon.doors import JiraNotFound

SITE_URL = "https://demo-site.invalid"  # never called: the demo's Jira is in this process
CLIENT_KEY = "demo-site"
ADMIN_ACCOUNT_ID = "demo-admin-ada"

USERS: dict[str, str] = {
    ADMIN_ACCOUNT_ID: "Ada Lovelace",
    "demo-user-grace": "Grace Hopper",
    "demo-user-alan": "Alan Turing",
    "demo-user-katherine": "Katherine Johnson",
}
ADMINISTRATORS = frozenset({ADMIN_ACCOUNT_ID})

CATEGORIES: dict[str, str] = {"10000": "Engineering", "10001": "Marketing", "10002": "Operations"}

ASSIGNEE_TYPES = ("PROJECT_LEAD", "UNASSIGNED")
_KEY_RE = re.compile(r"[A-Z][A-Z0-9]{1,9}")
EDITABLE = ("name", "key", "lead", "category", "assigneeType", "description", "url")


class SiteError(ValueError):
    """A change the demo site refuses, naming the attribute."""


@dataclass
class Project:
    id: str
    key: str
    name: str
    type: str
    lead: str
    category: str | None = None  # a CATEGORIES id
    assignee_type: str = "PROJECT_LEAD"
    description: str = ""
    url: str = ""

    def rest(self) -> dict[str, Any]:
        """As `GET /rest/api/3/project/{id}` answers (with `expand=description,lead,url`)."""
        answer: dict[str, Any] = {
            "self": f"{SITE_URL}/rest/api/3/project/{self.id}", "id": self.id, "key": self.key, "name": self.name,
            "projectTypeKey": self.type, "description": self.description,
            "lead": {"accountId": self.lead, "displayName": USERS[self.lead], "active": True},
            "assigneeType": self.assignee_type, "simplified": False, "style": "classic", "isPrivate": False,
        }
        if self.url:
            answer["url"] = self.url
        if self.category is not None:
            answer["projectCategory"] = {"self": f"{SITE_URL}/rest/api/3/projectCategory/{self.category}",
                                         "id": self.category, "name": CATEGORIES[self.category], "description": ""}
        return answer

    def webhook(self) -> dict[str, Any]:
        """The `project` of Jira's project webhook body: fewer attributes than REST (no category, no URL), the
        lead as `projectLead` and the assignee type as Jira's i18n key, so the core fetches what is missing."""
        assignee = {"PROJECT_LEAD": "admin.assignee.type.project.lead",
                    "UNASSIGNED": "admin.assignee.type.unassigned"}[self.assignee_type]
        return {"self": f"{SITE_URL}/rest/api/2/project/{self.id}", "id": int(self.id), "key": self.key,
                "name": self.name, "projectTypeKey": self.type, "assigneeType": assignee,
                "projectLead": {"accountId": self.lead, "displayName": USERS[self.lead]}}

    def panel(self) -> dict[str, Any]:
        """As the demo panel shows and edits it."""
        return {"id": self.id, "key": self.key, "name": self.name, "type": self.type, "lead": self.lead,
                "category": self.category, "assigneeType": self.assignee_type, "description": self.description,
                "url": self.url}


def _seed() -> dict[str, Project]:
    projects = [
        Project("10000", "DEMO", "Demo project", "software", ADMIN_ACCOUNT_ID, "10000",
                description="Where the demo starts: rename it and watch the webhook arrive."),
        Project("10001", "WEB", "Website relaunch", "business", "demo-user-grace", "10001",
                url="https://www.example.com/relaunch"),
        Project("10002", "OPS", "Operations", "service_desk", "demo-user-alan", "10002", "UNASSIGNED"),
        Project("10003", "RND", "Research", "software", "demo-user-katherine"),
        Project("10004", "HR", "People team", "business", "demo-user-grace", description="Hiring and onboarding."),
    ]
    return {project.id: project for project in projects}


@dataclass
class DemoSite:
    """The demo's Jira site: reset to the same projects on every start."""

    projects: dict[str, Project] = field(default_factory=_seed)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def find(self, id_or_key: str) -> Project | None:
        with self._lock:
            if id_or_key in self.projects:
                return copy.copy(self.projects[id_or_key])
            for project in self.projects.values():
                if project.key == id_or_key.upper():
                    return copy.copy(project)
        return None

    def all(self) -> list[Project]:
        with self._lock:
            return [copy.copy(project) for project in self.projects.values()]

    def update(self, project_id: str, changes: dict[str, Any]) -> Project:
        """Change a project's Jira attributes as Jira's project settings would; `SiteError` for a bad value."""
        unknown = sorted(set(changes) - set(EDITABLE))
        if unknown:
            raise SiteError(f"{unknown[0]}: not an attribute the demo site edits ({', '.join(EDITABLE)})")
        with self._lock:
            project = self.projects.get(project_id)
            if project is None:
                raise SiteError(f"project: the demo site has no project {project_id}")
            edited = copy.copy(project)
            for name, value in changes.items():
                _apply(edited, name, value, self.projects)
            self.projects[project_id] = edited
            return copy.copy(edited)


def _text(name: str, value: Any, required: bool = False) -> str:
    if not isinstance(value, str) or (required and not value.strip()):
        raise SiteError(f"{name}: must be {'a non-empty' if required else 'a'} string")
    if len(value) > 2000:
        raise SiteError(f"{name}: at most 2000 characters")
    return value.strip() if required else value


def _apply(project: Project, name: str, value: Any, projects: dict[str, Project]) -> None:
    if name == "name":
        project.name = _text(name, value, required=True)
    elif name == "key":
        key = _text(name, value, required=True).upper()
        if not _KEY_RE.fullmatch(key):
            raise SiteError("key: 2 to 10 capital letters and digits, starting with a letter")
        if any(other.key == key and other.id != project.id for other in projects.values()):
            raise SiteError(f"key: another project has the key {key}")
        project.key = key
    elif name == "lead":
        if value not in USERS:
            raise SiteError("lead: must be the accountId of a user of the demo site")
        project.lead = value
    elif name == "category":
        if value is not None and value not in CATEGORIES:
            raise SiteError("category: must be a category id of the demo site, or null")
        project.category = value
    elif name == "assigneeType":
        if value not in ASSIGNEE_TYPES:
            raise SiteError(f"assigneeType: must be one of {', '.join(ASSIGNEE_TYPES)}")
        project.assignee_type = value
    elif name == "description":
        project.description = _text(name, value)
    elif name == "url":
        url = _text(name, value).strip()
        if url and not re.match(r"https?://", url):
            raise SiteError("url: must be an http(s) URL, or empty")
        project.url = url


class DemoJira:
    """`addon.doors.JiraApi` of the demo site: the REST calls the core makes, answered from `DemoSite`."""

    def __init__(self, site: DemoSite) -> None:
        self.site = site

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        params = params or {}
        if path == "/rest/api/3/project/search":
            start, size = int(params.get("startAt", 0)), int(params.get("maxResults", 50))
            projects = self.site.all()
            page = [project.rest() for project in projects[start:start + size]]
            return {"startAt": start, "maxResults": size, "total": len(projects),
                    "isLast": start + size >= len(projects), "values": page}
        if path.startswith("/rest/api/3/project/"):
            project = self.site.find(path.rsplit("/", 1)[1])
            if project is None:
                raise JiraNotFound(f"Jira answered GET {path} with 404", 404)
            return project.rest()
        if path == "/rest/api/3/configuration/timetracking/options":
            return {"workingHoursPerDay": 8, "workingDaysPerWeek": 5, "timeFormat": "pretty",
                    "defaultUnit": "minute"}
        raise JiraNotFound(f"the demo site has no GET {path}", 404)

    def post(self, path: str, json: Any) -> Any:
        if path == "/rest/api/3/permissions/check":
            account = json.get("accountId") if isinstance(json, dict) else None
            wanted = json.get("globalPermissions", []) if isinstance(json, dict) else []
            granted = [p for p in wanted if p == "ADMINISTER" and account in ADMINISTRATORS]
            return {"globalPermissions": granted, "projectPermissions": []}
        raise JiraNotFound(f"the demo site has no POST {path}", 404)
