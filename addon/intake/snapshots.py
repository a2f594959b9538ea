"""Recorded Jira attributes of projects (`ProjectSnapshot`), read and written inside the caller's transaction."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from addon.intake.jira_attributes import KEY, NAME, Attributes, dump_snapshot, load_snapshot
from addon.storage.models import ProjectSnapshot, utcnow

log = logging.getLogger(__name__)


def load(session: Session, tenant_id: int, project_id: str) -> Attributes | None:
    """The recorded state of a project, or None when there is none (or it cannot be read)."""
    text = session.scalar(select(ProjectSnapshot.attributes).where(ProjectSnapshot.tenant_id == tenant_id,
                                                                   ProjectSnapshot.project_id == project_id))
    if text is None:
        return None
    try:
        return load_snapshot(text)
    except ValueError:
        log.warning("unreadable project snapshot ignored tenant=%s project=%s", tenant_id, project_id)
        return None


def record(session: Session, tenant_id: int, project_id: str, attributes: Mapping[int, str | None]) -> None:
    """Insert or replace a project's recorded state (an upsert, so concurrent writers never collide)."""
    now = utcnow()
    values = {"tenant_id": tenant_id, "project_id": project_id, "attributes": dump_snapshot(attributes),
              "updated_at": now}
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(ProjectSnapshot).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=[ProjectSnapshot.tenant_id, ProjectSnapshot.project_id],
        set_={"attributes": statement.excluded.attributes, "updated_at": statement.excluded.updated_at},
    )
    session.execute(statement)


def forget(session: Session, tenant_id: int, project_id: str) -> None:
    session.execute(delete(ProjectSnapshot).where(ProjectSnapshot.tenant_id == tenant_id,
                                                  ProjectSnapshot.project_id == project_id))


def first_project(session: Session, tenant_id: int) -> dict[str, Any] | None:
    """The tenant's first project (lowest id) as recorded by the install snapshot, as a test delivery names it:
    `{"id", "key", "name"}`; None when nothing is recorded."""
    snapshots = session.scalars(select(ProjectSnapshot).where(ProjectSnapshot.tenant_id == tenant_id)).all()
    if not snapshots:
        return None
    first = min(snapshots, key=lambda s: (len(s.project_id), s.project_id))
    attributes = load_snapshot(first.attributes)
    return {"id": int(first.project_id), "key": attributes.get(KEY), "name": attributes.get(NAME)}
