"""Intake: Projectrak field changes (CONTRACT §5.1) and Jira project webhooks (§5.2).

Jira is only called outside transactions; a refused request stores nothing.

A valid field-change request with nothing to send (no changes, only Formula fields, or values that did not change
once normalised) is still checked in full, its project included, and answered `202 {"event_id": null,
"deliveries": 0}`: accepted, but no event exists (so none is stored, delivered or listed), unlike an event stored for
a site without webhooks (`{"event_id": <id>, "deliveries": 0}`).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
from typing import Any

from flask import Blueprint, Response, request

from addon.doors import Caller, JiraError, JiraNotFound, JiraUnstorable, Purpose, caller_required, current_caller
from addon.intake import jira_events, seen_fields
from addon.intake.fields import ChangeError, build_fields
from addon.intake.inbox import schedule_install_snapshot
from addon.intake.outgoing import event_body, now_ms
from addon.intake.projectrak import parse_request
from addon.intake.projects import JiraValueContext, ProjectInfo, directory
from addon.outbox.store import store_event
from addon.process.runtime import Runtime, current_runtime
from addon.web.errors import ApiError
from addon.web.json_body import read_json, unprocessable

log = logging.getLogger(__name__)
bp = Blueprint("changes", __name__)


def init_runtime(runtime: Runtime) -> None:
    """Take a snapshot of every project after a signed install (once per runtime, however often this is called)."""
    if not any(isinstance(hook, functools.partial) and hook.func is schedule_install_snapshot
               for hook in runtime.on_installed):
        runtime.on_installed.append(functools.partial(schedule_install_snapshot, runtime))


#: Seconds a sender is asked to wait when Jira cannot be reached.
JIRA_RETRY_AFTER_S = "30"


def _jira_unavailable() -> ApiError:
    return ApiError(503, "jira_unavailable", "Jira could not be reached; try again later",
                    {"Retry-After": JIRA_RETRY_AFTER_S})


def _refuse_disabled(caller: Caller) -> None:
    if caller.tenant.is_disabled:
        raise ApiError(403, "tenant_disabled", "the add-on is disabled on this Jira site")


def _resolve(runtime: Runtime, caller: Caller, changes: Any, project_ref: tuple[str, str]
             ) -> tuple[list[dict[str, Any]], ProjectInfo]:
    """The outgoing fields and the event's project, asking Jira (through the cache) what the request lacks."""
    jira, client_key = runtime.jira_for(caller.tenant), caller.tenant.client_key
    path, id_or_key = project_ref
    try:
        fields = build_fields(changes, JiraValueContext(jira, client_key))
        project = directory.project(jira, client_key, id_or_key)
    except ChangeError as err:
        raise unprocessable(err.path, err.message) from None
    except JiraNotFound:
        raise unprocessable(path, "Jira knows no such project") from None
    except JiraUnstorable as err:  # asking again gets the same answer: a 503 would be retried for ever
        raise unprocessable(path, str(err)) from None
    except JiraError as err:
        log.warning("jira unavailable during intake tenant=%s: %s", caller.tenant_id, err)
        raise _jira_unavailable() from None
    return fields, project


def _accepted(event_id: int | None, deliveries: int) -> Response:
    """The 202 answer, made directly (Flask's `jsonify` costs several times more, on every accepted change)."""
    return Response(json.dumps({"event_id": event_id, "deliveries": deliveries}), 202, mimetype="application/json")


@bp.post("/events/projectrak/field-changes")
@caller_required(Purpose.INTAKE)  # the door refuses a request that names no acting user
def projectrak_field_changes():
    received_ms = now_ms()
    caller = current_caller()
    _refuse_disabled(caller)
    try:
        parsed = parse_request(read_json())
    except ChangeError as err:
        raise unprocessable(err.path, err.message) from None
    runtime = current_runtime()
    fields, project = _resolve(runtime, caller, parsed.changes, (parsed.project.path, parsed.project.value))
    if not fields:
        return _accepted(None, 0)  # nothing to send: no event (see the module's notes)
    timestamp = received_ms if parsed.timestamp is None else parsed.timestamp
    body = event_body(user=caller.account_id, timestamp=timestamp, project=project, fields=fields)
    event_id, deliveries = store_event(runtime.engine, tenant=caller.tenant, source="projectrak", body=body,
                                       project_id=project.id, notify_origin=runtime.deliveries_committed.origin)
    runtime.deliveries_committed.notify()
    seen_fields.record(runtime.engine, runtime.sessions, caller.tenant_id, fields)
    log.info("projectrak change accepted tenant=%s event=%s project=%s fields=%s deliveries=%s", caller.tenant_id,
             event_id, project.id, len(fields), deliveries)
    return _accepted(event_id, deliveries)


@bp.post(f"/events/jira/<any({', '.join(jira_events.JIRA_EVENTS)}):event>")
@caller_required(Purpose.JIRA_CALLBACK)
def jira_webhook(event: str):
    received_ms = now_ms()
    caller = current_caller()
    _refuse_disabled(caller)
    try:
        webhook = jira_events.parse_webhook(event, read_json(), received_ms)
    except ChangeError as err:
        raise unprocessable(err.path, err.message) from None
    identifier = jira_events.normalize_identifier(request.headers.get(jira_events.IDENTIFIER_HEADER))
    if not accept_jira_event(caller, webhook, identifier, caller.account_id):
        log.info("duplicate jira webhook dropped tenant=%s event=%s project=%s", caller.tenant_id, event,
                 webhook.project_id)
        return "", 204
    log.info("jira webhook accepted tenant=%s event=%s project=%s", caller.tenant_id, event, webhook.project_id)
    return "", 204


def accept_jira_event(caller: Caller, webhook: jira_events.JiraWebhook, identifier: str | None, user: str | None,
                      *, seen_for: dt.timedelta = jira_events.SEEN_FOR) -> bool:
    """Store a project event of either door in the Jira inbox and wake its processor; False when the tenant has
    seen `identifier` within `seen_for` (nothing stored). A project that changed or went is forgotten by the
    project directory, so the next lookup asks Jira."""
    runtime = current_runtime()
    if not jira_events.accept(runtime.sessions, caller.tenant_id, webhook, identifier, user, seen_for=seen_for):
        return False
    if webhook.event == jira_events.PROJECT_UPDATED or webhook.event in jira_events.FORGETTING_EVENTS:
        directory.forget(caller.tenant.client_key, webhook.project_id)
    runtime.jira_events_committed.notify()
    return True
