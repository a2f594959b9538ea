"""The Projectrak field-change request (CONTRACT §5.1): its shape, checked before anything is asked of Jira.

Decisions where the contract is silent:

* Unknown top-level members are ignored (Projectrak may add some).
* `project` is `{"id": …}` or `{"key": …}`; when both are given the id wins and the key is not checked.
  An id is a positive integer or a string of digits; a key is `[A-Za-z][A-Za-z0-9_]*` (at most 255 characters).
* `timestamp` is optional (`null` counts as absent); when given it is an integer number of epoch milliseconds
  (not a boolean, not a fraction) between 0 and the end of year 9999.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from addon.intake.fields import ChangeError

MAX_TIMESTAMP_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
_MAX_PROJECT_ID = 2**63 - 1
_PROJECT_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,254}")
_DIGITS = re.compile(r"[0-9]{1,19}")


@dataclass(frozen=True)
class ProjectRef:
    """How the request names its project: `value` is an id (digits) or a key; `path` is where it was given."""

    path: str
    value: str


@dataclass(frozen=True)
class FieldChangeRequest:
    project: ProjectRef
    timestamp: int | None
    changes: Any
    """Still raw: `build_fields` checks and normalises it."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def project_id_of(value: Any) -> str | None:
    """A positive project id from a JSON number or a numeric string, as canonical digits; None otherwise."""
    if _is_int(value):
        number = value
    elif isinstance(value, str) and _DIGITS.fullmatch(value):
        number = int(value)
    else:
        return None
    return str(number) if 0 < number <= _MAX_PROJECT_ID else None


def _project_ref(raw: Any) -> ProjectRef:
    if not isinstance(raw, dict):
        raise ChangeError("project", "expected an object with id or key")
    if raw.get("id") is not None:
        project_id = project_id_of(raw["id"])
        if project_id is None:
            raise ChangeError("project.id", "expected a positive project id (a number or a string of digits)")
        return ProjectRef("project.id", project_id)
    if raw.get("key") is not None:
        key = raw["key"]
        if not isinstance(key, str) or not _PROJECT_KEY.fullmatch(key):
            raise ChangeError("project.key", "expected a project key")
        return ProjectRef("project.key", key)
    raise ChangeError("project", "expected an object with id or key")


def parse_timestamp(raw: Any, path: str = "timestamp") -> int:
    """Epoch milliseconds: a non-negative JSON integer (not a boolean) up to the end of year 9999."""
    if not _is_int(raw):
        raise ChangeError(path, "expected an integer number of epoch milliseconds")
    if not 0 <= raw <= MAX_TIMESTAMP_MS:
        raise ChangeError(path, "epoch milliseconds out of range")
    return raw


def parse_request(body: Any) -> FieldChangeRequest:
    """The request's parts, or `ChangeError` naming the first part that does not fit."""
    if not isinstance(body, dict):
        raise ChangeError("body", "expected a JSON object")
    if "project" not in body:
        raise ChangeError("project", "required")
    project = _project_ref(body["project"])
    raw_timestamp = body.get("timestamp")
    timestamp = None if raw_timestamp is None else parse_timestamp(raw_timestamp)
    if "changes" not in body:
        raise ChangeError("changes", "required")
    return FieldChangeRequest(project, timestamp, body["changes"])
