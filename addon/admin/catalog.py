"""What the page offers to pick a webhook's filter from (CONTRACT §10.1): `GET /api/fields`, the fields this tenant
has sent in the last 30 days and the Jira attributes, and `GET /api/projects?query=`, the tenant's projects as its
Jira finds them by name or key."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, jsonify, request
from sqlalchemy import select

from addon.admin.permissions import admin_required
from addon.admin.serialize import iso
from addon.doors import JiraError, current_caller
from addon.intake import seen_fields
from addon.intake.jira_attributes import ATTRIBUTES
from addon.intake.projects import directory, project_info
from addon.process.runtime import current_runtime
from addon.storage.engine import transaction
from addon.storage.models import SeenField, utcnow
from addon.web.errors import ApiError
from addon.web.json_body import unprocessable, unstorable_at

log = logging.getLogger(__name__)
bp = Blueprint("admin_catalog", __name__, url_prefix="/api")

#: Projects in one answer of `GET /api/projects` (Jira's page), and the longest query passed on.
PROJECTS_PAGE = 50
MAX_QUERY_CHARS = 255


@bp.get("/fields")
@admin_required
def list_fields():
    """The Jira attributes (ids -1…-9, `last_seen_at` null: every project has them), then the fields seen in the
    last 30 days, by name."""
    since = utcnow() - seen_fields.WINDOW
    with transaction(current_runtime().sessions) as session:
        seen = session.scalars(select(SeenField).where(SeenField.tenant_id == current_caller().tenant_id,
                                                       SeenField.last_seen_at >= since)
                               .order_by(SeenField.name, SeenField.field_id)).all()
        answer = [{"id": a.id, "name": a.name, "type": a.type, "last_seen_at": None} for a in ATTRIBUTES]
        answer += [{"id": f.field_id, "name": f.name, "type": f.type, "last_seen_at": iso(f.last_seen_at)}
                   for f in seen]
    return jsonify(answer)


@bp.get("/projects")
@admin_required
def search_projects():
    """`[{id, key, name}]`: the tenant's projects whose name or key holds `query` (every project, first page, when
    empty), as Jira's `GET /rest/api/3/project/search` finds them."""
    query = request.args.get("query", "").strip()
    if len(query) > MAX_QUERY_CHARS:
        raise ApiError(400, "invalid_parameter", f"query must be at most {MAX_QUERY_CHARS} characters")
    if unstorable_at(query) is not None:
        raise unprocessable("query", "holds a NUL or a lone surrogate")
    caller = current_caller()
    params: dict[str, Any] = {"maxResults": PROJECTS_PAGE, "orderBy": "name"}
    if query:
        params["query"] = query
    try:
        page = current_runtime().jira_for(caller.tenant).get("/rest/api/3/project/search", params=params)
    except JiraError as err:
        log.warning("jira unavailable while searching projects tenant=%s: %s", caller.tenant_id, err)
        raise ApiError(503, "jira_unavailable", "Jira could not be reached; try again later",
                       {"Retry-After": "30"}) from None
    values = page.get("values", []) if isinstance(page, Mapping) else []
    answer = []
    for project in values:
        # A project whose key or name no database could store (a NUL, a lone surrogate) is not offered.
        usable = isinstance(project, Mapping) and unstorable_at([project.get("key"), project.get("name")]) is None
        info = project_info(project) if usable else None
        if info is not None:
            directory.remember(caller.tenant.client_key, info)  # saving a filter with it then asks Jira nothing
            answer.append({"id": int(info.id), "key": info.key, "name": info.name})
    return jsonify(answer)
