"""Where accountIds stand in what the add-on stores, and how one is erased from there.

An outgoing event's body (§6.1, stored once per event and sent by each of its deliveries) holds accountIds in
exactly these places: `data.user` (a string or null), and in `data.fields[]` whose `type` is `"user"` (`value.current`
and `value.previous`, each a string or null) or `"multi_user"` (each a list of strings). Nothing else in a body is
an accountId. A project snapshot holds the project lead (attribute -5). A Jira event waiting in the inbox (kept 7
days after it is processed) holds its acting user (a column) and, in its stored body, the project as Jira sent it,
whose `projectLead` (or `lead`) object names the lead by `accountId` (and `displayName`). The placeholder `unknown`
is never an account.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any

UNKNOWN = "unknown"
"""Atlassian's placeholder for a user it cannot name: never reported (§11)."""

_SIDES = ("current", "previous")


def is_account(value: Any) -> bool:
    return isinstance(value, str) and value != "" and value != UNKNOWN


def accounts_in_body(body: Any) -> Iterator[str]:
    """Every accountId an outgoing event's body holds (with repeats), in body order."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict):
        return
    if is_account(data.get("user")):
        yield data["user"]
    fields = data.get("fields")
    for field in fields if isinstance(fields, list) else ():
        if not isinstance(field, dict) or not isinstance(field.get("value"), dict):
            continue
        value, kind = field["value"], field.get("type")
        for side in _SIDES:
            if kind == "user" and is_account(value.get(side)):
                yield value[side]
            elif kind == "multi_user" and isinstance(value.get(side), list):
                yield from (item for item in value[side] if is_account(item))


def erase_from_body(body: Any, closed: Collection[str]) -> int:
    """Erase the closed accounts from a body in place: `user` and single-user values become null, the ids leave
    multi-user lists. Returns how many occurrences went."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict):
        return 0
    erased = 0
    if isinstance(data.get("user"), str) and data["user"] in closed:
        data["user"] = None
        erased += 1
    fields = data.get("fields")
    for field in fields if isinstance(fields, list) else ():
        if not isinstance(field, dict) or not isinstance(field.get("value"), dict):
            continue
        value, kind = field["value"], field.get("type")
        for side in _SIDES:
            current = value.get(side)
            if kind == "user" and isinstance(current, str) and current in closed:
                value[side] = None
                erased += 1
            elif kind == "multi_user" and isinstance(current, list):
                kept = [item for item in current if not (isinstance(item, str) and item in closed)]
                erased += len(current) - len(kept)
                value[side] = kept
    return erased


_LEAD_KEYS = ("projectLead", "lead")


def accounts_in_inbox_body(body: Any) -> Iterator[str]:
    """The project lead's accountId in a stored Jira event (`{"timestamp", "project"}`)."""
    project = body.get("project") if isinstance(body, dict) else None
    if not isinstance(project, dict):
        return
    for key in _LEAD_KEYS:
        lead = project.get(key)
        if isinstance(lead, dict) and is_account(lead.get("accountId")):
            yield lead["accountId"]


def erase_from_inbox_body(body: Any, closed: Collection[str]) -> int:
    """A closed lead's whole object (its accountId and name) becomes null, as a snapshot's lead does."""
    project = body.get("project") if isinstance(body, dict) else None
    if not isinstance(project, dict):
        return 0
    erased = 0
    for key in _LEAD_KEYS:
        lead = project.get(key)
        if isinstance(lead, dict) and isinstance(lead.get("accountId"), str) and lead["accountId"] in closed:
            project[key] = None
            erased += 1
    return erased
