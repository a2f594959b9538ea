"""The outgoing body of CONTRACT §6.1, built in one place for both event sources."""

from __future__ import annotations

import time
from typing import Any

from addon.intake.projects import ProjectInfo

EVENT_UPDATED = "updated"


def now_ms() -> int:
    """The current time in epoch milliseconds (the default `timestamp` of a change)."""
    return time.time_ns() // 1_000_000


def event_body(*, user: str | None, timestamp: int, project: ProjectInfo, fields: list[dict[str, Any]]
               ) -> dict[str, Any]:
    """`{"data": {event, user, timestamp, project: {id, key, name}, fields}}`; `project.id` is a JSON number."""
    return {
        "data": {
            "event": EVENT_UPDATED,
            "user": user,
            "timestamp": timestamp,
            "project": {"id": int(project.id), "key": project.key, "name": project.name},
            "fields": fields,
        }
    }
