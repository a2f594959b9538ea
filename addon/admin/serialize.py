"""The JSON shapes of the admin API (CONTRACT §7). Secrets never appear here."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from addon.admin import filters
from addon.storage.models import Attempt, Webhook


def iso(value: dt.datetime | None) -> str | None:
    """UTC ISO 8601 with a `Z`, millisecond precision."""
    if value is None:
        return None
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def webhook_json(webhook: Webhook) -> dict[str, Any]:
    shape = {
        "id": webhook.id,
        "name": webhook.name,
        "url": webhook.url,
        "enabled": webhook.enabled,
        "disabled_reason": webhook.disabled_reason,
        "created_at": iso(webhook.created_at),
        "last_execution_at": iso(webhook.last_execution_at),
        "last_status": webhook.last_status,
        "last_status_code": webhook.last_status_code,
        "last_error": webhook.last_error,
        "ordered": webhook.ordered,
    }
    # A filter (CONTRACT §10.1) as `{projects, fields}`; a webhook without one has no key, so the shape is §7's own.
    if webhook.filter_projects is not None or webhook.filter_fields is not None:
        shape["filter"] = filters.shown(webhook)
    # Custom headers' names, each value null: values are never shown again (CONTRACT §10.3). A webhook without any
    # has no key, so the shape is §7's own.
    if webhook.headers:
        shape["headers"] = dict.fromkeys(json.loads(webhook.headers))
    # CONTRACT §10.5: disabled by the add-on, or failing for 24 hours, until it succeeds again or is changed. A
    # webhook without an alert has no key, so the shape is §7's own.
    if webhook.alert_state is not None and webhook.alert_shown:
        shape["alert"] = {"state": webhook.alert_state, "reason": webhook.alert_reason,
                          "since": iso(webhook.alert_since)}
    # While a rotation's grace lasts, receivers may still verify with the old secret: the page says until when.
    # Outside it the key is absent, so the shape is the contract's own.
    old_secret_expires_at = _live(webhook.previous_secret_expires_at)
    if old_secret_expires_at is not None:
        shape["old_secret_expires_at"] = iso(old_secret_expires_at)
    return shape


def _live(expires_at: dt.datetime | None) -> dt.datetime | None:
    return expires_at if expires_at is not None and expires_at > dt.datetime.now(dt.UTC) else None


#: Characters of a request body in a list item (CONTRACT §7): a page of 200 items stays small however big the
#: events; `GET /api/attempts/{id}` gives the whole body.
LISTED_BODY_CHARS = 2048


def attempt_json(attempt: Attempt, message_id: str, request_body: str | None,
                 truncated: bool | None = False, *, response_body: bool = True, sequence: int = 0) -> dict[str, Any]:
    """An attempt as the API shows it. `request_body` is the whole body or its start (`truncated` says which; both
    None when the list was asked without bodies, as is the response's start without `response_body`)."""
    return {
        "id": attempt.id,
        "delivery_id": attempt.delivery_id,
        "webhook_id_header": message_id,
        "attempt": attempt.attempt,
        "at": iso(attempt.at),
        "status": attempt.status,
        "http_code": attempt.http_code,
        "duration_ms": attempt.duration_ms,
        "error": attempt.error,
        "request_body": request_body,
        "request_body_truncated": truncated,
        "response_body_start": attempt.response_body_start if response_body else None,
        "sequence": sequence,  # the delivery's Projectrak-Sequence (CONTRACT §10.2); 0 for a test
    }
