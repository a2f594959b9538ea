"""A webhook's `filter` (CONTRACT §10.1): checked, its projects resolved through the tenant's Jira when saved, stored,
and shown.

`{"projects": [id or key, …] | null, "fields": [field id, …] | null}`; `null` (or an absent key, or no `filter` at
all) means everything. Stored as two JSON columns of the webhook: projects as `[{id, key, name}]` (as Jira named
them when saved; `id` a string, as events store it), fields as `[id, …]`. Applied by `addon.outbox.filters`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from addon.doors import JiraApi, JiraError, JiraNotFound, JiraUnstorable
from addon.intake.projects import ProjectDirectory, ProjectInfo, directory
from addon.storage.models import Tenant, Webhook
from addon.web.errors import ApiError
from addon.web.json_body import unprocessable

log = logging.getLogger(__name__)

#: At most this many projects, and this many fields, in one filter: a page of checkboxes, not a data set.
MAX_PROJECTS = 100
MAX_FIELDS = 100
#: The longest project key Jira allows is 255 characters in its REST API (10 by default).
MAX_KEY_CHARS = 255
#: Field and project ids are 64-bit signed integers.
MAX_ID = 2**63 - 1
_KEYS = {"projects", "fields"}


@dataclass(frozen=True)
class FilterInput:
    """A checked `filter`, projects not yet resolved: each an id (digits) or a key, with where it stood."""

    projects: list[tuple[str, str]] | None
    fields: list[int] | None


@dataclass(frozen=True)
class StoredFilter:
    """A filter as the webhook's columns store it."""

    projects: str | None
    fields: str | None


def checked(given: Any) -> FilterInput:
    """The shape of a request's `filter`, or 422 naming what is wrong."""
    if given is None:
        return FilterInput(None, None)
    if not isinstance(given, dict):
        raise unprocessable("filter", "must be an object {projects, fields} or null")
    unknown = sorted(set(given) - _KEYS)
    if unknown:
        raise unprocessable(f"filter.{unknown[0]}", "is not a part of a filter (projects, fields)")
    return FilterInput(_checked_projects(given.get("projects")), _checked_fields(given.get("fields")))


def _checked_projects(given: Any) -> list[tuple[str, str]] | None:
    if given is None:
        return None
    if not isinstance(given, list):
        raise unprocessable("filter.projects", "must be a list of project ids or keys, or null (every project)")
    if not given:
        raise unprocessable("filter.projects", "must list at least one project, or be null (every project)")
    if len(given) > MAX_PROJECTS:
        raise unprocessable("filter.projects", f"at most {MAX_PROJECTS} projects")
    projects: list[tuple[str, str]] = []
    for index, item in enumerate(given):
        where = f"filter.projects[{index}]"
        if isinstance(item, int) and not isinstance(item, bool):
            if not 0 < item <= MAX_ID:
                raise unprocessable(where, "is not a project id (a positive integer)")
            projects.append((where, str(item)))
        elif isinstance(item, str):
            value = item.strip()
            if not value:
                raise unprocessable(where, "must be a project id or key, not an empty string")
            if len(value) > MAX_KEY_CHARS or not value.isascii() or not value.replace("_", "").isalnum():
                raise unprocessable(where, "is not a project key (letters, digits and _) or id")
            if value.isdigit() and not 0 < int(value) <= MAX_ID:
                raise unprocessable(where, "is not a project id (a positive integer)")
            projects.append((where, value))
        else:
            raise unprocessable(where, "must be a project id (a number) or key (a string)")
    return projects


def _checked_fields(given: Any) -> list[int] | None:
    if given is None:
        return None
    if not isinstance(given, list):
        raise unprocessable("filter.fields", "must be a list of field ids, or null (every field)")
    if not given:
        raise unprocessable("filter.fields", "must list at least one field, or be null (every field)")
    if len(given) > MAX_FIELDS:
        raise unprocessable("filter.fields", f"at most {MAX_FIELDS} fields")
    fields: list[int] = []
    for index, item in enumerate(given):
        if not isinstance(item, int) or isinstance(item, bool) or not -MAX_ID <= item <= MAX_ID or item == 0:
            raise unprocessable(f"filter.fields[{index}]", "must be a field id (a non-zero integer)")
        if item not in fields:
            fields.append(item)
    return fields


def resolved(given: FilterInput, jira: JiraApi, client_key: str, projects: ProjectDirectory = directory
             ) -> StoredFilter:
    """The filter to store, its projects resolved through Jira (the project cache first): an unknown one is 422
    naming it, a Jira that cannot be reached 503. Call outside any transaction."""
    stored_projects = None
    if given.projects is not None:
        found: dict[str, ProjectInfo] = {}
        for where, id_or_key in given.projects:
            try:
                info = projects.project(jira, client_key, id_or_key)
            except JiraNotFound:
                raise unprocessable(where, f"Jira knows no project {id_or_key}") from None
            except JiraUnstorable as err:
                raise unprocessable(where, str(err)) from None
            except JiraError as err:
                log.warning("jira unavailable while resolving a filter's projects: %s", err)
                raise ApiError(503, "jira_unavailable", "Jira could not be reached; try again later",
                               {"Retry-After": "30"}) from None
            found.setdefault(info.id, info)  # an id and a key of one project count once
        stored_projects = json.dumps([{"id": p.id, "key": p.key, "name": p.name} for p in found.values()])
    stored_fields = None if given.fields is None else json.dumps(given.fields)
    return StoredFilter(stored_projects, stored_fields)


def apply(session: Session, webhook: Webhook, stored: StoredFilter) -> None:
    """Set the webhook's filter and grow its tenant's `filters_version` in the caller's transaction, so no intake
    applies the filter it remembered from before (`addon.outbox.filters`)."""
    if (webhook.filter_projects, webhook.filter_fields) == (stored.projects, stored.fields):
        return
    webhook.filter_projects, webhook.filter_fields = stored.projects, stored.fields
    session.execute(update(Tenant).where(Tenant.id == webhook.tenant_id)
                    .values(filters_version=Tenant.filters_version + 1)
                    .execution_options(synchronize_session=False))


def shown(webhook: Webhook) -> dict[str, Any]:
    """The filter as answers show it: projects as `{id, key, name}` (id a number, as in events), fields' ids."""
    projects = None
    if webhook.filter_projects is not None:
        projects = [{"id": int(project["id"]), "key": project["key"], "name": project["name"]}
                    for project in json.loads(webhook.filter_projects)]
    fields = None if webhook.filter_fields is None else json.loads(webhook.filter_fields)
    return {"projects": projects, "fields": fields}
