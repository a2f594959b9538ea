"""The Forge door's own routes (CONTRACT §9.4): the app's lifecycle events and Jira's project events.

Both take Forge's body flat or wrapped in `payload` (Atlassian's documents show both), authenticate the FIT before
reading it, and answer `204` once what must be kept is stored, well within Forge's 5 s.

Project events are stored in the same inbox as Connect's Jira webhooks, under Connect's event names, so ordering
per project, processing and retries are the same code. Forge sends no event identifier: the de-duplication key is
the SHA-256 of the event's canonical JSON without `retryContext`. A retry (a body with `retryContext`) whose key was
seen in the last 7 days is dropped; so is a first delivery whose key was seen in the last `FIRST_DELIVERY_WINDOW`
(a retry may overtake the attempt that timed out). Two genuine events with identical bodies further apart than
that are both kept; closer together, the second is dropped, which loses nothing when Forge's body carries the
project's attributes (the same body is the same state), and is the one case documented in docs/forge.md.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from typing import Any

from flask import Blueprint, request

from addon.doors import Caller
from addon.intake import jira_events
from addon.intake.fields import ChangeError
from addon.intake.outgoing import now_ms
from addon.intake.routes import accept_jira_event
from addon.process.runtime import current_runtime
from addon.web.json_body import read_json, unprocessable

log = logging.getLogger(__name__)
bp = Blueprint("forge", __name__, url_prefix="/forge")

FIRST_DELIVERY_WINDOW = dt.timedelta(minutes=15)
"""Longer than Forge's whole retry schedule (4 retries about 60 s apart, 5 s timeouts)."""

INSTALLED = "avi:forge:installed:app"
UPGRADED = "avi:forge:upgraded:app"

#: Forge's project events, as Connect names the same change (`addon.intake.jira_events`).
PROJECT_EVENTS = {
    "avi:jira:created:project": jira_events.PROJECT_CREATED,
    "avi:jira:updated:project": jira_events.PROJECT_UPDATED,
    "avi:jira:deleted:project": jira_events.PROJECT_DELETED,
    "avi:jira:softdeleted:project": jira_events.PROJECT_SOFT_DELETED,
    "avi:jira:restored:project": jira_events.PROJECT_RESTORED_DELETED,
    "avi:jira:archived:project": jira_events.PROJECT_ARCHIVED,
    "avi:jira:unarchived:project": jira_events.PROJECT_RESTORED_ARCHIVED,
}


def _door() -> Any:
    from addon.forge.door import DOOR  # the door module imports this one for its blueprint

    return current_runtime().door(DOOR)


def _caller() -> Caller:
    """The FIT checked first (401 before anything is read or written), then the installation's tenant."""
    door = _door()
    invocation = door.verify(request)
    return Caller(tenant=door.admit(request, invocation), account_id=invocation.principal, door=door.name)


def _event_body() -> dict[str, Any]:
    body = read_json()
    if isinstance(body, dict) and isinstance(body.get("payload"), dict):
        body = body["payload"]
    if not isinstance(body, dict):
        raise unprocessable("body", "must be a JSON object (Forge's event, flat or under payload)")
    return body


def _event_type(body: dict[str, Any]) -> str:
    event_type = body.get("eventType")
    if not isinstance(event_type, str) or not event_type:
        raise unprocessable("eventType", "must be a non-empty string")
    return event_type


def _shown(value: str) -> str:
    return value if len(value) <= 100 else value[:97] + "..."


@bp.post("/lifecycle")
def lifecycle():
    caller = _caller()
    event_type = _event_type(_event_body())
    runtime = current_runtime()
    if event_type == INSTALLED:
        log.info("forge app installed tenant=%s", caller.tenant_id)
        for hook in runtime.on_installed:
            hook(caller.tenant_id)
    elif event_type == UPGRADED:
        log.info("forge app upgraded tenant=%s", caller.tenant_id)  # the token is all it changes (kept above)
    else:
        log.info("forge lifecycle event ignored tenant=%s event=%s", caller.tenant_id, _shown(event_type))
    return "", 204


def dedupe_key(body: dict[str, Any]) -> str:
    """The event's identity across Forge's retries: its canonical JSON without `retryContext`."""
    canonical = json.dumps({k: v for k, v in body.items() if k != "retryContext"}, sort_keys=True,
                           separators=(",", ":"), ensure_ascii=False, default=str)
    return "forge:" + hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


@bp.post("/events/jira")
def jira_event():
    received_ms = now_ms()
    caller = _caller()
    body = _event_body()
    event_type = _event_type(body)
    event = PROJECT_EVENTS.get(event_type)
    if event is None:
        log.info("forge event of an unknown type acknowledged tenant=%s event=%s", caller.tenant_id,
                 _shown(event_type))
        return "", 204
    if caller.tenant.is_disabled:
        return "", 204
    user = body.get("atlassianId")
    user = user if isinstance(user, str) and user else None
    try:
        webhook = jira_events.parse_webhook(event, {"timestamp": body.get("timestamp"),
                                                    "project": body.get("project")}, received_ms)
    except ChangeError as err:
        raise unprocessable(err.path, err.message) from None
    retried = isinstance(body.get("retryContext"), dict)
    seen_for = jira_events.SEEN_FOR if retried else FIRST_DELIVERY_WINDOW
    if not accept_jira_event(caller, webhook, dedupe_key(body), user, seen_for=seen_for):
        log.info("repeated forge event dropped tenant=%s event=%s project=%s", caller.tenant_id, event,
                 webhook.project_id)
        return "", 204
    log.info("forge jira event accepted tenant=%s event=%s project=%s", caller.tenant_id, event, webhook.project_id)
    return "", 204
