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
from typing import Any, TypeGuard

UNKNOWN = "unknown"
"""Atlassian's placeholder for a user it cannot name: never reported (§11)."""

_SIDES = ("current", "previous")


def is_account(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and value != "" and value != UNKNOWN


def _account_places(body: Any) -> Iterator[tuple[dict[str, Any], str, bool]]:
    """Every place of an outgoing event's body that may hold accountIds (the ones this module's docstring names),
    in body order: (the object, its key, whether the key holds a list of them)."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict):
        return
    yield data, "user", False
    fields = data.get("fields")
    for field in fields if isinstance(fields, list) else ():
        if not isinstance(field, dict) or not isinstance(field.get("value"), dict):
            continue
        kind = field.get("type")
        if kind in ("user", "multi_user"):
            for side in _SIDES:
                yield field["value"], side, kind == "multi_user"


def accounts_in_body(body: Any) -> Iterator[str]:
    """Every accountId an outgoing event's body holds (with repeats), in body order."""
    for place, key, many in _account_places(body):
        value = place.get(key)
        if many:
            if isinstance(value, list):
                yield from (item for item in value if is_account(item))
        elif is_account(value):
            yield value


def erase_from_body(body: Any, closed: Collection[str]) -> int:
    """Erase the closed accounts from a body in place: `user` and single-user values become null, the ids leave
    multi-user lists. Returns how many occurrences went."""
    erased = 0
    for place, key, many in _account_places(body):
        value = place.get(key)
        if many:
            if isinstance(value, list):
                kept = [item for item in value if not (isinstance(item, str) and item in closed)]
                erased += len(value) - len(kept)
                place[key] = kept
        elif isinstance(value, str) and value in closed:
            place[key] = None
            erased += 1
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
