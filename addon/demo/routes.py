"""The demo's own routes, under `/demo`: its page (the real admin page beside the demo site's panel) and the demo
site's endpoints that the panel calls.

The site's endpoints stand for Jira's own user interface, not for the add-on's API: the browser is signed in to
them by the one-time URL `addon demo` prints (a cookie, `SameSite=Strict`). Every change they make reaches the
add-on the real way, over HTTP, signed: a project's attributes as Jira's `project_updated` webhook, a Projectrak
field change as Projectrak's request to `/events/projectrak/field-changes`.
"""

from __future__ import annotations

import hmac
import json
import uuid
from typing import Any

import requests
from flask import Blueprint, Response, make_response, redirect, request

from addon.admin.page import content_security_policy
from addon.demo import auth
from addon.demo.door import DOOR, DemoDoor
from addon.demo.receiver import ANSWERS
from addon.demo.site import ADMIN_ACCOUNT_ID, ASSIGNEE_TYPES, CATEGORIES, CLIENT_KEY, USERS, Project, SiteError
from addon.intake.outgoing import now_ms
from addon.process.runtime import current_runtime
from addon.web.errors import ApiError
from addon.web.json_body import read_json, unprocessable

bp = Blueprint("demo", __name__, url_prefix="/demo", static_folder="static", static_url_path="/static")

COOKIE = "demo_login"
ADDON_TIMEOUT_S = 15

#: CONTRACT §6.2's field types, with an example the panel's form starts from.
FIELD_TYPES: list[dict[str, Any]] = [
    {"type": "text", "id": 20001, "name": "Code name", "previous": "Falcon", "current": "Eagle"},
    {"type": "multiline_text", "id": 20002, "name": "Goals", "previous": "h1. Goals\nShip it",
     "current": "h1. Goals\n*Ship it* soon"},
    {"type": "number", "id": 20003, "name": "Budget", "previous": "25000", "current": "23000"},
    {"type": "date", "id": 20004, "name": "Due date", "previous": "2026-01-31", "current": "2026-03-15"},
    {"type": "duration", "id": 20005, "name": "Estimate", "previous": "2w 3d", "current": "2w 3d 4h 30m"},
    {"type": "priority", "id": 20006, "name": "Priority", "previous": "Medium", "current": "High"},
    {"type": "status", "id": 20007, "name": "Status", "previous": "On track", "current": "Done"},
    {"type": "list", "id": 20008, "name": "Phase", "previous": "Planning", "current": "Delivery"},
    {"type": "multi_list", "id": 20009, "name": "Regions", "previous": "EMEA", "current": "EMEA, APAC"},
    {"type": "user", "id": 20010, "name": "Sponsor", "previous": "demo-user-alan", "current": "demo-user-grace"},
    {"type": "multi_user", "id": 20011, "name": "Team", "previous": "demo-user-alan",
     "current": "demo-user-alan, demo-user-katherine"},
    {"type": "project", "id": 20012, "name": "Parent project", "previous": "OPS", "current": "RND"},
    {"type": "multi_project", "id": 20013, "name": "Depends on", "previous": "", "current": "WEB, HR"},
    {"type": "formula", "id": 20014, "name": "Health score", "previous": "1", "current": "2"},
]


def _door() -> DemoDoor:
    door = current_runtime().door(DOOR)
    assert isinstance(door, DemoDoor)  # the process that registered these routes opened it
    return door


def _signed_in() -> bool:
    cookie = request.cookies.get(COOKIE, "")
    return bool(cookie) and hmac.compare_digest(cookie, _door().login_key)


def _require_sign_in() -> None:
    if not _signed_in():
        raise ApiError(401, "unauthorized", "open the URL `addon demo` printed to sign in to the demo site",
                       {"WWW-Authenticate": "Cookie"})


PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <meta name="referrer" content="no-referrer">
  <title>Outgoing webhooks: demo</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="/demo/static/demo.css">
  <script src="/demo/static/demo.js" defer></script>
</head>
<body>
<div id="root"></div>
<noscript><p>This page needs JavaScript.</p></noscript>
</body>
</html>
"""

SIGN_IN_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Outgoing webhooks: demo</title>
</head><body><h1>Outgoing webhooks: demo</h1><p>Open the URL that <code>addon demo</code> printed when it started:
it signs this browser in to the demo site.</p></body></html>
"""

_PAGE_HEADERS = {
    "Content-Security-Policy": content_security_policy(["'none'"]),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


@bp.get("")
def page() -> Response:
    login = request.args.get("login")
    if login is not None:
        if not hmac.compare_digest(login, _door().login_key):
            return Response(SIGN_IN_PAGE, 403, _PAGE_HEADERS, mimetype="text/html")
        answer = make_response(redirect("/demo", 303))
        answer.set_cookie(COOKIE, login, httponly=True, samesite="Strict", path="/demo")
        return answer
    if not _signed_in():
        return Response(SIGN_IN_PAGE, 401, _PAGE_HEADERS, mimetype="text/html")
    return Response(PAGE, 200, _PAGE_HEADERS, mimetype="text/html")


@bp.post("/site/token")
def token() -> Response:
    """A context token of the signed-in administrator, as Jira's `AP.context.getToken()` gives its pages."""
    _require_sign_in()
    tenant = _door().tenant()
    return _json({"token": auth.context_token(tenant.client_key, tenant.shared_secret, ADMIN_ACCOUNT_ID)})


@bp.get("/site/state")
def state() -> Response:
    _require_sign_in()
    door = _door()
    return _json({
        "site": {"name": "Demo site", "clientKey": CLIENT_KEY},
        "administrator": {"accountId": ADMIN_ACCOUNT_ID, "displayName": USERS[ADMIN_ACCOUNT_ID]},
        "users": [{"accountId": k, "displayName": v} for k, v in USERS.items()],
        "categories": [{"id": k, "name": v} for k, v in CATEGORIES.items()],
        "assigneeTypes": list(ASSIGNEE_TYPES),
        "projects": [project.panel() for project in door.site.all()],
        "receiverUrl": door.receiver.url,
        "receiverAnswer": door.receiver.answer,
        "receiverAnswers": [{"status": k, "reason": v} for k, v in ANSWERS.items()],
        "fieldTypes": FIELD_TYPES,
    })


@bp.post("/site/projects/<project_id>")
def change_project(project_id: str) -> Response:
    """Change a project's Jira attributes, then tell the add-on as Jira does: `project_updated`, signed."""
    _require_sign_in()
    body = read_json()
    if not isinstance(body, dict) or not body:
        raise unprocessable("body", "must be an object of the attributes to change")
    door = _door()
    try:
        project = door.site.update(project_id, body)
    except SiteError as err:
        path, _, message = str(err).partition(": ")
        raise unprocessable(path, message) from None
    status, answer = _send_jira_event(door, "project_updated", project)
    return _json({"project": project.panel(), "addon": {"status": status, "body": answer}})


@bp.post("/site/field-changes")
def field_changes() -> Response:
    """Send Projectrak's field-change request for the administrator, signed with the site's shared secret."""
    _require_sign_in()
    body = read_json()
    if not isinstance(body, dict):
        raise unprocessable("body", "must be Projectrak's request: {project, changes}")
    status, answer = _send(_door(), "/events/projectrak/field-changes", body, ADMIN_ACCOUNT_ID)
    return _json({"addon": {"status": status, "body": answer}})


@bp.put("/site/receiver")
def receiver_answer() -> Response:
    """What the receiver answers from now on: `{"answer": 200 | 500 | 503 | 410}`."""
    _require_sign_in()
    body = read_json()
    answer = body.get("answer") if isinstance(body, dict) else None
    if answer not in ANSWERS or isinstance(answer, bool):
        raise unprocessable("answer", f"must be one of {', '.join(map(str, ANSWERS))}")
    _door().receiver.answer = answer
    return _json({"answer": answer})


@bp.get("/site/received")
def received() -> Response:
    _require_sign_in()
    after = request.args.get("after", "0")
    return _json({"items": _door().receiver.received(int(after) if after.isdigit() else 0)})


def _send_jira_event(door: DemoDoor, event: str, project: Project) -> tuple[int, Any]:
    body = {"timestamp": now_ms(), "webhookEvent": event, "project": project.webhook()}
    return _send(door, f"/events/jira/{event}", body, ADMIN_ACCOUNT_ID,
                 {"X-Atlassian-Webhook-Identifier": str(uuid.uuid4()), "User-Agent": "Atlassian Webhook HTTP Client"})


def _send(door: DemoDoor, path: str, body: Any, sub: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """POST to the add-on itself over HTTP, with a qsh-bound token of the demo site."""
    tenant = door.tenant()
    token = auth.sign_request(tenant.client_key, tenant.shared_secret, "POST", path, sub)
    base_url = door.runtime.settings.base_url.rstrip("/")
    try:
        answer = requests.post(base_url + path, data=json.dumps(body).encode(), timeout=ADDON_TIMEOUT_S,
                               headers={"Authorization": f"JWT {token}", "Content-Type": "application/json",
                                        **(headers or {})})
    except requests.RequestException as err:
        raise ApiError(502, "addon_unreachable", f"the demo site could not reach the add-on: {err}") from None
    try:
        data = answer.json() if answer.content else None
    except ValueError:
        data = answer.text
    return answer.status_code, data


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status, {"Cache-Control": "no-store"}, mimetype="application/json")
