"""A fake Atlassian over real HTTP on 127.0.0.1: the install key server, Jira's REST API for each site (which
verifies the add-on's JWT like Jira does), and helpers that send signed lifecycle calls and webhooks.

Each site lives under its own path prefix (`http://127.0.0.1:PORT/<site>`), so one server plays many tenants.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import requests
from atlassian_jwt.url_utils import hash_url
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.http import BackgroundServer, QuietHandler

APP_KEY = "projectrak-outgoing-webhooks"
REPORT_ACCOUNTS_PATH = "/rest/atlassian-connect/latest/report-accounts"
MAX_REPORTED_ACCOUNTS = 90
UPDATED_AT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$")


def qsh(method: str, path: str, query: str = "") -> str:
    return hash_url(method, path + ("?" + query if query else ""))


def new_rsa_key() -> tuple[rsa.RSAPrivateKey, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key, pem


@dataclass
class JiraCall:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    claims: dict


@dataclass
class FakeSite:
    """One Jira Cloud site: its clientKey, shared secret, projects, admins and REST call log."""

    atlassian: FakeAtlassian
    name: str
    client_key: str
    shared_secret: str
    projects: dict[str, dict] = field(default_factory=dict)
    admins: set[str] = field(default_factory=set)
    time_tracking: dict = field(default_factory=lambda: {"workingHoursPerDay": 8.0, "workingDaysPerWeek": 5.0,
                                                          "timeFormat": "pretty", "defaultUnit": "minute"})
    down: bool = False
    # When set, every REST call is answered with this status (e.g. 429, 401, 403) and `refusal_headers`.
    refusal: int | None = None
    refusal_headers: dict[str, str] = field(default_factory=dict)
    # Project attributes `GET /rest/api/3/project/search` leaves out of its values (`GET project/{id}` keeps
    # them), e.g. {"assigneeType"} as Atlassian's documented search answers show.
    search_omits: set[str] = field(default_factory=set)
    calls: list[JiraCall] = field(default_factory=list)
    rejected_calls: list[str] = field(default_factory=list)
    # Changes applied to a project just before each `GET /rest/api/3/project/{id}` answer, one per call
    # (lets a test make Jira's state move between the add-on's reads).
    scripted_changes: dict[str, list[dict]] = field(default_factory=dict)
    # Atlassian's personal data reporting API (CONTRACT §11), whichever door reported: accounts it answers
    # `closed` or `updated` (200 listing those of the batch; 204 when the batch has none), a `Cycle-Period` header
    # (seconds) on every answer when set, and answers scripted ahead of those (`(status, body, headers)`, taken in
    # order, e.g. `(429, None, {"Retry-After": "120"})`). `reports` holds every batch received, as sent.
    closed_accounts: set[str] = field(default_factory=set)
    updated_accounts: set[str] = field(default_factory=set)
    cycle_period_s: int | None = None
    report_answers: list[tuple[int, Any, dict[str, str]]] = field(default_factory=list)
    reports: list[list[dict]] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"{self.atlassian.url}/{self.name}"

    # Jira's data.

    def add_project(self, project_id: int | str, key: str, name: str, **attrs: Any) -> dict:
        project = {
            "self": f"{self.base_url}/rest/api/3/project/{project_id}",
            "id": str(project_id),
            "key": key,
            "name": name,
            "projectTypeKey": attrs.get("projectTypeKey", "software"),
            "description": attrs.get("description", ""),
            "lead": {"accountId": attrs.get("lead", "lead-account-1"), "displayName": "Lead"},
            "assigneeType": attrs.get("assigneeType", "UNASSIGNED"),
        }
        if attrs.get("url"):
            project["url"] = attrs["url"]
        if attrs.get("category"):
            project["projectCategory"] = {"id": "10000", "name": attrs["category"]}
        self.projects[str(project_id)] = project
        return project

    def update_project(self, project_id: int | str, **attrs: Any) -> dict:
        """Change a project as Jira's REST API shows it: key, name, projectTypeKey, url, lead (an accountId),
        assigneeType, category (a name or None) and description."""
        project = self.projects[str(project_id)]
        for name, value in attrs.items():
            if name == "lead":
                project["lead"] = {"accountId": value, "displayName": "Lead"}
            elif name == "category":
                if value is None:
                    project.pop("projectCategory", None)
                else:
                    project["projectCategory"] = {"id": "10000", "name": value}
            elif name == "url" and value is None:
                project.pop("url", None)
            else:
                project[name] = value
        return project

    def remove_project(self, project_id: int | str) -> None:
        self.projects.pop(str(project_id), None)

    def calls_to(self, method: str, path: str) -> list[JiraCall]:
        return [c for c in self.calls if c.method == method and c.path == path]

    def find_project(self, id_or_key: str) -> dict | None:
        if id_or_key in self.projects:
            return self.projects[id_or_key]
        return next((p for p in self.projects.values() if p["key"] == id_or_key), None)

    def webhook_project(self, project_id: int | str) -> dict:
        """The project as Jira's webhook body carries it: a numeric id, `projectLead`, Jira's assignee names."""
        project = self.projects[str(project_id)]
        assignee = {"UNASSIGNED": "admin.assignee.type.unassigned", "PROJECT_LEAD": "admin.assignee.type.project.lead"}
        return {
            "self": project["self"].replace("/3/", "/2/"),
            "id": int(project["id"]),
            "key": project["key"],
            "name": project["name"],
            "projectLead": {"accountId": project["lead"]["accountId"], "displayName": "Lead"},
            "assigneeType": assignee[project["assigneeType"]],
        }

    # Atlassian's personal data reporting API, whichever door the call came through (credentials checked).

    def answer_report(self, body: Any) -> tuple[int, Any, dict[str, str]]:
        """`{"accounts": [{"accountId", "updatedAt"}, …]}` → 204, 200 with the closed and updated accounts, or a
        scripted answer; a batch that breaks Atlassian's rules is 400 (and not recorded)."""
        accounts = body.get("accounts") if isinstance(body, dict) else None
        if (not isinstance(accounts, list) or not 1 <= len(accounts) <= MAX_REPORTED_ACCOUNTS
                or not all(isinstance(a, dict) and isinstance(a.get("accountId"), str) and a["accountId"]
                           and isinstance(a.get("updatedAt"), str) and UPDATED_AT.match(a["updatedAt"])
                           for a in accounts)):
            return 400, {"errorMessages": [f"not a report of 1-{MAX_REPORTED_ACCOUNTS} accounts"]}, {}
        self.reports.append(accounts)
        headers = {"Cycle-Period": str(self.cycle_period_s)} if self.cycle_period_s is not None else {}
        if self.report_answers:
            status, payload, extra = self.report_answers.pop(0)
            return status, payload, {**headers, **extra}
        ids = [a["accountId"] for a in accounts]
        listed = ([{"accountId": i, "status": "closed"} for i in ids if i in self.closed_accounts]
                  + [{"accountId": i, "status": "updated"} for i in ids if i in self.updated_accounts])
        return (200, {"accounts": listed}, headers) if listed else (204, None, headers)

    @property
    def reported_ids(self) -> list[str]:
        """Every accountId reported so far, in order (with repeats)."""
        return [a["accountId"] for batch in self.reports for a in batch]

    # Jira's REST API, whichever door the call came through (the caller has checked its credentials).

    def answer(self, method: str, path: str, query: dict[str, list[str]], body: Any
               ) -> tuple[int, Any, dict[str, str]]:
        """Jira's answer to an authenticated REST call: (status, JSON body, extra headers)."""
        if self.down:
            return 503, {"errorMessages": ["Jira is down"]}, {}
        if self.refusal is not None:
            return self.refusal, {"errorMessages": [f"refused with {self.refusal}"]}, dict(self.refusal_headers)
        if method == "POST" and path == REPORT_ACCOUNTS_PATH:
            return self.answer_report(body)
        if method == "GET" and path == "/rest/api/3/project/search":
            start = int(query.get("startAt", ["0"])[0])
            size = int(query.get("maxResults", ["50"])[0])
            values = list(self.projects.values())
            wanted = query.get("query", [""])[0].lower()  # as Jira: a key or a name holding it, any case
            if wanted:
                values = [p for p in values if wanted in p["key"].lower() or wanted in p["name"].lower()]
            page = [{k: v for k, v in p.items() if k not in self.search_omits} for p in values[start:start + size]]
            return 200, {"startAt": start, "maxResults": size, "total": len(values), "values": page,
                         "isLast": start + size >= len(values)}, {}
        if method == "GET" and path.startswith("/rest/api/3/project/"):
            project = self.find_project(path.rsplit("/", 1)[1])
            script = self.scripted_changes.get(project["id"]) if project is not None else None
            if script:
                project = self.update_project(project["id"], **script.pop(0))
            if project is None:
                return 404, {"errorMessages": ["No project could be found"]}, {}
            return 200, project, {}
        if method == "POST" and path == "/rest/api/3/permissions/check":
            granted = ["ADMINISTER"] if body and body.get("accountId") in self.admins else []
            return 200, {"globalPermissions": granted, "projectPermissions": []}, {}
        if method == "GET" and path == "/rest/api/3/configuration/timetracking/options":
            return 200, self.time_tracking, {}
        return 404, {"errorMessages": [f"not faked: {method} {path}"]}, {}

    # Tokens Jira would sign.

    def token(self, method: str, path: str, query: str = "", *, sub: str | None = "admin-account",
              secret: str | None = None, iss: str | None = None, qsh_value: str | None = None, exp_in: int = 180,
              iat_offset: int = 0, omit: tuple[str, ...] = (), algorithm: str = "HS256", key: Any = None) -> str:
        now = int(time.time()) + iat_offset
        claims: dict[str, Any] = {
            "iss": iss or self.client_key,
            "iat": now,
            "exp": now + exp_in,
            "qsh": qsh_value if qsh_value is not None else qsh(method, path, query),
        }
        if sub is not None:
            claims["sub"] = sub
        for name in omit:
            claims.pop(name, None)
        return jwt.encode(claims, key if key is not None else (secret or self.shared_secret), algorithm=algorithm)

    def context_token(self, sub: str = "admin-account", **kwargs: Any) -> str:
        return self.token("GET", "/", sub=sub, qsh_value="context-qsh", **kwargs)

    # Calls Jira makes to the add-on.

    def call(self, addon_url: str, method: str, path: str, *, json_body: Any = None, data: bytes | None = None,
             headers: dict[str, str] | None = None, token: str | None = None, in_query: bool = False,
             **token_kwargs: Any) -> requests.Response:
        parts = urlsplit(path)
        token = token or self.token(method, parts.path, parts.query, **token_kwargs)
        all_headers = dict(headers or {})
        url = addon_url + path
        if in_query:
            url += ("&" if parts.query else "?") + "jwt=" + token
        else:
            all_headers["Authorization"] = f"JWT {token}"
        return requests.request(method, url, json=json_body, data=data, headers=all_headers, timeout=30)

    def install(self, addon_url: str, *, event: str = "installed", kid: str | None = None,
                body: dict | None = None, **claim_changes: Any) -> requests.Response:
        """A signed install (or uninstall) as Jira sends it: RS256 with an install key the key server serves."""
        body = body if body is not None else self.lifecycle_body(event)
        token = self.atlassian.install_token(addon_url, f"/lifecycle/{event}", issuer=self.client_key, kid=kid,
                                             **claim_changes)
        return requests.post(f"{addon_url}/lifecycle/{event}", json=body,
                             headers={"Authorization": f"JWT {token}"}, timeout=30)

    def lifecycle_body(self, event: str = "installed") -> dict:
        return {
            "key": APP_KEY,
            "clientKey": self.client_key,
            "sharedSecret": self.shared_secret,
            "serverVersion": "100.0",
            "pluginsVersion": "1001.0.0",
            "baseUrl": self.base_url,
            "displayUrl": self.base_url,
            "productType": "jira",
            "description": "Atlassian JIRA at " + self.base_url,
            "eventType": event,
        }

    def send_webhook(self, addon_url: str, event: str, project_id: int | str, *, identifier: str | None = None,
                     sub: str | None = None, timestamp: int | None = None, project: dict | None = None
                     ) -> requests.Response:
        body = {"timestamp": timestamp or int(time.time() * 1000), "webhookEvent": event,
                "project": project or self.webhook_project(project_id)}
        headers = {"X-Atlassian-Webhook-Identifier": identifier or str(uuid.uuid4()),
                   "X-Atlassian-Webhook-Flow": "Primary"}
        return self.call(addon_url, "POST", f"/events/jira/{event}", json_body=body, headers=headers, sub=sub)


class FakeAtlassian:
    """The install key server and every site's Jira REST API, on one HTTP server."""

    def __init__(self, app_key: str = APP_KEY) -> None:
        self.app_key = app_key
        self.keys: dict[str, tuple[rsa.RSAPrivateKey, bytes]] = {}
        self.key_fetches: list[str] = []
        #: kid → gate: a fetch of that kid waits until the gate opens (at most 30 s), then answers as usual
        self.key_gates: dict[str, threading.Event] = {}
        self.sites: dict[str, FakeSite] = {}
        self._lock = threading.Lock()
        self.current_kid = self.add_key()
        self._server = BackgroundServer(_handler_for(self)).start()
        self.url = f"http://127.0.0.1:{self._server.port}"

    @property
    def keys_url(self) -> str:
        return f"{self.url}/keys"

    def add_key(self, kid: str | None = None) -> str:
        kid = kid or f"install-key-{uuid.uuid4().hex[:8]}"
        self.keys[kid] = new_rsa_key()
        return kid

    def new_site(self, name: str | None = None, client_key: str | None = None) -> FakeSite:
        name = name or f"site-{uuid.uuid4().hex[:8]}"
        site = FakeSite(self, name, client_key or f"client-{uuid.uuid4()}", secrets.token_urlsafe(48))
        self.sites[name] = site
        return site

    def install_token(self, addon_url: str, path: str, *, issuer: str, kid: str | None = None,
                      aud: Any = None, key: Any = None, algorithm: str = "RS256", exp_in: int = 180,
                      iat_offset: int = 0, qsh_value: str | None = None, omit: tuple[str, ...] = (),
                      headers: dict | None = None) -> str:
        kid = kid or self.current_kid
        now = int(time.time()) + iat_offset
        claims: dict[str, Any] = {
            "iss": issuer,
            "sub": "system",
            "aud": [aud if aud is not None else addon_url],
            "qsh": qsh_value if qsh_value is not None else qsh("POST", path),
            "iat": now,
            "exp": now + exp_in,
            "context": {},
            "jti": uuid.uuid4().hex,
        }
        for name in omit:
            claims.pop(name, None)
        if key is None:
            key = self.keys[kid][0] if kid in self.keys else new_rsa_key()[0]
        return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": kid, **(headers or {})})

    def stop(self) -> None:
        self._server.stop()

    # Jira's side of a REST call from the add-on.

    def verify_app_call(self, site: FakeSite, method: str, path: str, query: str, auth: str | None) -> dict:
        if not auth or not auth.startswith("JWT "):
            raise PermissionError("no JWT")
        token = auth[4:]
        claims = jwt.decode(token, site.shared_secret, algorithms=["HS256"], options={"verify_aud": False})
        if claims.get("iss") != self.app_key:
            raise PermissionError(f"iss {claims.get('iss')!r} is not the app key")
        if claims.get("qsh") != qsh(method, path, query):
            raise PermissionError("qsh mismatch")
        if claims["exp"] - claims["iat"] > 180:
            raise PermissionError("token lives longer than 3 minutes")
        return claims


def _handler_for(fake: FakeAtlassian) -> type[QuietHandler]:
    class Handler(QuietHandler):
        def do_GET(self) -> None:  # noqa: N802
            self._dispatch("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._dispatch("POST")

        def _json(self, status: int, payload: Any) -> None:
            self.send_bytes(status, json.dumps(payload).encode())

        def _dispatch(self, method: str) -> None:
            parts = urlsplit(self.path)
            body_raw = self.read_body()
            segments = parts.path.split("/", 2)
            if parts.path.startswith("/keys/"):
                kid = parts.path[len("/keys/"):]
                fake.key_fetches.append(kid)
                gate = fake.key_gates.get(kid)
                if gate is not None:
                    gate.wait(30)
                if kid in fake.keys:
                    self.send_bytes(200, fake.keys[kid][1], "application/x-pem-file")
                else:
                    self._json(404, {"message": "no such key"})
                return
            site = fake.sites.get(segments[1]) if len(segments) > 2 else None
            if site is None:
                self._json(404, {"errorMessages": ["no such site"]})
                return
            path = "/" + segments[2]
            try:
                claims = fake.verify_app_call(site, method, path, parts.query, self.headers.get("Authorization"))
            except (PermissionError, jwt.PyJWTError) as err:
                site.rejected_calls.append(f"{method} {path}: {err}")
                self._json(401, {"errorMessages": ["unauthorized"]})
                return
            body = json.loads(body_raw) if body_raw else None
            query = parse_qs(parts.query, keep_blank_values=True)
            site.calls.append(JiraCall(method, path, query, body, claims))
            status, payload, headers = site.answer(method, path, query, body)
            self.send_bytes(status, b"" if payload is None else json.dumps(payload).encode(), headers=headers)

    return Handler
