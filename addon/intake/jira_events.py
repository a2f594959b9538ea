"""Receiving Jira's project webhooks (CONTRACT §5.2): the body's shape, de-duplication, and the inbox row.

The request only stores the event (and its `X-Atlassian-Webhook-Identifier`, in the same transaction) and
answers at once; `addon.intake.inbox` compares it with the recorded state afterwards.

Decisions where the contract is silent:

* The body must be an object whose `project` is an object with an `id` (a positive number or a string of
  digits); `timestamp`, when present and not null, must be epoch milliseconds (else `422`); when absent the
  time of receipt is used. The path, not the body's `webhookEvent`, names the event.
* A request without an identifier is accepted and not de-duplicated. Identifiers longer than 255 characters
  are stored as their SHA-256.
* Only `timestamp` and `project` of the body are kept.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from addon.intake.fields import ChangeError
from addon.intake.projectrak import parse_timestamp, project_id_of
from addon.storage.engine import transaction
from addon.storage.models import JiraInboxEvent, SeenJiraWebhook, utcnow

PROJECT_CREATED = "project_created"
PROJECT_UPDATED = "project_updated"
PROJECT_DELETED = "project_deleted"
PROJECT_SOFT_DELETED = "project_soft_deleted"
PROJECT_RESTORED_DELETED = "project_restored_deleted"
PROJECT_ARCHIVED = "project_archived"
PROJECT_RESTORED_ARCHIVED = "project_restored_archived"

JIRA_EVENTS: tuple[str, ...] = (PROJECT_CREATED, PROJECT_UPDATED, PROJECT_DELETED, PROJECT_SOFT_DELETED,
                                PROJECT_RESTORED_DELETED, PROJECT_ARCHIVED, PROJECT_RESTORED_ARCHIVED)
RECORDING_EVENTS = frozenset({PROJECT_CREATED, PROJECT_RESTORED_DELETED, PROJECT_RESTORED_ARCHIVED})
FORGETTING_EVENTS = frozenset({PROJECT_DELETED, PROJECT_SOFT_DELETED, PROJECT_ARCHIVED})

IDENTIFIER_HEADER = "X-Atlassian-Webhook-Identifier"
SEEN_FOR = dt.timedelta(days=7)
_MAX_IDENTIFIER = 255


@dataclass(frozen=True)
class JiraWebhook:
    event: str
    project_id: str
    timestamp: int
    project: dict[str, Any]

    def inbox_body(self) -> str:
        return json.dumps({"timestamp": self.timestamp, "project": self.project}, separators=(",", ":"),
                          ensure_ascii=False, default=float)  # a JSON number with a fraction is read as a Decimal


def parse_webhook(event: str, body: Any, received_ms: int) -> JiraWebhook:
    """The parts of a Jira project webhook the add-on uses, or `ChangeError` naming what does not fit."""
    if not isinstance(body, dict):
        raise ChangeError("body", "expected a JSON object")
    project = body.get("project")
    if not isinstance(project, dict):
        raise ChangeError("project", "expected an object")
    project_id = project_id_of(project.get("id"))
    if project_id is None:
        raise ChangeError("project.id", "expected a positive project id (a number or a string of digits)")
    raw_timestamp = body.get("timestamp")
    timestamp = received_ms if raw_timestamp is None else parse_timestamp(raw_timestamp)
    return JiraWebhook(event, project_id, timestamp, project)


def normalize_identifier(raw: str | None) -> str | None:
    if raw is None or not raw.strip():
        return None
    identifier = raw.strip()
    if len(identifier) > _MAX_IDENTIFIER:
        identifier = "sha256:" + hashlib.sha256(identifier.encode()).hexdigest()
    return identifier


def _already_seen(session: Session, tenant_id: int, identifier: str) -> SeenJiraWebhook | None:
    return session.scalar(select(SeenJiraWebhook).where(SeenJiraWebhook.tenant_id == tenant_id,
                                                        SeenJiraWebhook.identifier == identifier))


def _store(session: Session, tenant_id: int, webhook: JiraWebhook, identifier: str | None,
           user: str | None, seen_for: dt.timedelta) -> bool:
    now = utcnow()
    if identifier is not None:
        seen = _already_seen(session, tenant_id, identifier)
        if seen is not None and seen.seen_at >= now - seen_for:
            return False
        if seen is not None:  # expired but not yet pruned: it counts as new again
            seen.seen_at = now
        else:
            session.add(SeenJiraWebhook(tenant_id=tenant_id, identifier=identifier, seen_at=now))
    session.add(JiraInboxEvent(tenant_id=tenant_id, event=webhook.event, project_id=webhook.project_id,
                               body=webhook.inbox_body(), user_account_id=user, received_at=now, attempts=0))
    return True


def accept(sessions: sessionmaker[Session], tenant_id: int, webhook: JiraWebhook, identifier: str | None,
           user: str | None, *, seen_for: dt.timedelta = SEEN_FOR) -> bool:
    """Store the event unless its identifier was seen in the last `seen_for` (at most `SEEN_FOR`, for which
    identifiers are kept); False for a duplicate (acknowledged and dropped).

    Two deliveries of one identifier racing each other meet at the unique constraint: the loser's
    IntegrityError is a duplicate once the winner's row is visible.
    """
    try:
        with transaction(sessions) as session:
            return _store(session, tenant_id, webhook, identifier, user, seen_for)
    except IntegrityError:
        if identifier is None:
            raise
        with transaction(sessions) as session:
            if _already_seen(session, tenant_id, identifier) is None:
                raise
        return False
