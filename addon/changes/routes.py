"""Intake: Projectrak field changes (CONTRACT §5.1) and Jira project webhooks (§5.2).

Jira is only called outside transactions; a refused request stores nothing.

A valid field-change request with nothing to send (no changes, only Formula fields, or values that did not change
once normalised) is still checked in full, its project included, and answered `202 {"event_id": null,
"deliveries": 0}`: accepted, but no event exists (so none is stored, delivered or listed), unlike an event stored for
a site without webhooks (`{"event_id": <id>, "deliveries": 0}`).
"""

from __future__ import annotations

import functools
import json
import logging
from typing import Any

from flask import Blueprint, Response, g, request

from addon.changes import jira_events
from addon.changes.fields import ChangeError, build_fields
from addon.changes.inbox import schedule_install_snapshot
from addon.changes.outgoing import event_body, now_ms
from addon.changes.projectrak import parse_request
from addon.changes.projects import JiraValueContext, ProjectInfo, directory
from addon.connect.auth import JIRA_RETRY_AFTER_S, AuthContext, jwt_required, unauthorized
from addon.connect.jira import JiraError, JiraNotFound, JiraUnstorable
from addon.delivery.outbox import store_event
from addon.errors import ApiError
from addon.request_json import read_json, unprocessable
from addon.runtime import Runtime, current_runtime

log = logging.getLogger(__name__)
bp = Blueprint("changes", __name__)


def init_runtime(runtime: Runtime) -> None:
    """Take a snapshot of every project after a signed install (once per runtime, however often this is called)."""
    if not any(isinstance(hook, functools.partial) and hook.func is schedule_install_snapshot
               for hook in runtime.on_installed):
        runtime.on_installed.append(functools.partial(schedule_install_snapshot, runtime))


def _jira_unavailable() -> ApiError:
    return ApiError(503, "jira_unavailable", "Jira could not be reached; try again later",
                    {"Retry-After": JIRA_RETRY_AFTER_S})


def _refuse_disabled(auth: AuthContext) -> None:
    if auth.tenant.is_disabled:
        raise ApiError(403, "tenant_disabled", "the add-on is disabled on this Jira site")


def _resolve(runtime: Runtime, auth: AuthContext, changes: Any, project_ref: tuple[str, str]
             ) -> tuple[list[dict[str, Any]], ProjectInfo]:
    """The outgoing fields and the event's project, asking Jira (through the cache) what the request lacks."""
    credentials = auth.tenant.credentials
    path, id_or_key = project_ref
    try:
        fields = build_fields(changes, JiraValueContext(runtime.jira, credentials))
        project = directory.project(runtime.jira, credentials, id_or_key)
    except ChangeError as err:
        raise unprocessable(err.path, err.message) from None
    except JiraNotFound:
        raise unprocessable(path, "Jira knows no such project") from None
    except JiraUnstorable as err:  # asking again gets the same answer: a 503 would be retried for ever
        raise unprocessable(path, str(err)) from None
    except JiraError as err:
        log.warning("jira unavailable during intake tenant=%s: %s", auth.tenant.id, err)
        raise _jira_unavailable() from None
    return fields, project


def _accepted(event_id: int | None, deliveries: int) -> Response:
    """The 202 answer, made directly (Flask's `jsonify` costs several times more, on every accepted change)."""
    return Response(json.dumps({"event_id": event_id, "deliveries": deliveries}), 202, mimetype="application/json")


@bp.post("/events/projectrak/field-changes")
@jwt_required(allow_context=False, cached_tenant=True)
def projectrak_field_changes():  # type: ignore[no-untyped-def]
    received_ms = now_ms()
    auth: AuthContext = g.auth
    if auth.account_id is None:
        raise unauthorized("the token must name the acting user in its sub claim")
    _refuse_disabled(auth)
    try:
        parsed = parse_request(read_json())
    except ChangeError as err:
        raise unprocessable(err.path, err.message) from None
    runtime = current_runtime()
    fields, project = _resolve(runtime, auth, parsed.changes, (parsed.project.path, parsed.project.value))
    if not fields:
        return _accepted(None, 0)  # nothing to send: no event (see the module's notes)
    timestamp = received_ms if parsed.timestamp is None else parsed.timestamp
    body = event_body(user=auth.account_id, timestamp=timestamp, project=project, fields=fields)
    event_id, deliveries = store_event(runtime.engine, tenant=auth.tenant, source="projectrak", body=body,
                                       project_id=project.id, notify_origin=runtime.deliveries_committed.origin)
    runtime.deliveries_committed.notify()
    log.info("projectrak change accepted tenant=%s event=%s project=%s fields=%s deliveries=%s", auth.tenant.id,
             event_id, project.id, len(fields), deliveries)
    return _accepted(event_id, deliveries)


@bp.post(f"/events/jira/<any({', '.join(jira_events.JIRA_EVENTS)}):event>")
@jwt_required(allow_context=False)
def jira_webhook(event: str):  # type: ignore[no-untyped-def]
    received_ms = now_ms()
    auth: AuthContext = g.auth
    _refuse_disabled(auth)
    try:
        webhook = jira_events.parse_webhook(event, read_json(), received_ms)
    except ChangeError as err:
        raise unprocessable(err.path, err.message) from None
    runtime = current_runtime()
    identifier = jira_events.normalize_identifier(request.headers.get(jira_events.IDENTIFIER_HEADER))
    if not jira_events.accept(runtime.sessions, auth.tenant.id, webhook, identifier, auth.account_id):
        log.info("duplicate jira webhook dropped tenant=%s event=%s project=%s", auth.tenant.id, event,
                 webhook.project_id)
        return "", 204
    if event == jira_events.PROJECT_UPDATED or event in jira_events.FORGETTING_EVENTS:
        directory.forget(auth.tenant.client_key, webhook.project_id)  # the next lookup asks Jira
    runtime.jira_events_committed.notify()
    log.info("jira webhook accepted tenant=%s event=%s project=%s", auth.tenant.id, event, webhook.project_id)
    return "", 204
