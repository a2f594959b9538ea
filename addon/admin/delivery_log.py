"""`GET /api/webhooks/{id}/delivery-log`: the admin page's delivery log, one item per delivery (its event, project,
state and next attempt) with its attempts nested, newest delivery first.

The attempts list of CONTRACT §7 (`/deliveries`) stays as it is; this view groups the same attempts by delivery so an
administrator sees what happened to each change ("retrying at 21:58", "gave up") and which attempts a redelivery
made. The request body (the event's) is given once per delivery and, as in the attempts list, only its first
2,048 characters, cut by the database: `GET /api/attempts/{id}` has it whole.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from flask import Blueprint, jsonify, request
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from addon.admin.api import MAX_ID, _get_webhook, _int_arg
from addon.admin.paging import newest_first
from addon.admin.permissions import admin_required
from addon.admin.serialize import LISTED_BODY_CHARS, iso
from addon.process.runtime import current_runtime
from addon.storage.engine import transaction
from addon.storage.models import Attempt, Delivery, DeliveryStatus, Event
from addon.web.errors import ApiError

bp = Blueprint("admin_delivery_log", __name__, url_prefix="/api")

DEFAULT_PAGE, MAX_PAGE = 20, 100
#: The body's first characters and one more (which tells it was cut), never the whole of a big body: the delivery's
#: own body (a field filter's subset), else its event's.
_BODY_START = func.substr(func.coalesce(Delivery.body, Event.body), 1, LISTED_BODY_CHARS + 1)
_DECODER = json.JSONDecoder()

#: What the page shows for each delivery: the outbox's status, told apart by whether an attempt failed.
STATE_DELIVERED, STATE_QUEUED, STATE_RETRYING, STATE_GAVE_UP, STATE_CANCELLED = (
    "delivered", "queued", "retrying", "gave_up", "cancelled")


def _failed_only() -> bool:
    raw = request.args.get("failed", "")
    if raw in ("", "0", "false"):
        return False
    if raw in ("1", "true"):
        return True
    raise ApiError(400, "invalid_parameter", "failed must be true or false")


def _leading_value(body_start: str, key: str) -> Any:
    """The value of the first `"key":` in a body's start. An event body (CONTRACT §6.1) begins with `event`, `user`,
    `timestamp` and `project`, so a cut body still holds them whole; inside a JSON string a quote is always escaped,
    so the first match is the key itself."""
    at = body_start.find(f'"{key}":')
    if at < 0:
        return None
    rest = body_start[at + len(key) + 3:].lstrip()
    try:
        return _DECODER.raw_decode(rest)[0]
    except ValueError:
        return None


def _event_fields(body_start: str) -> tuple[str | None, dict[str, Any] | None]:
    event, project = _leading_value(body_start, "event"), _leading_value(body_start, "project")
    return event if isinstance(event, str) else None, project if isinstance(project, dict) else None


def _state(delivery: Delivery, last_attempt: Attempt | None) -> str:
    if delivery.status == DeliveryStatus.SUCCEEDED:
        return STATE_DELIVERED
    if delivery.status == DeliveryStatus.FAILED:
        return STATE_GAVE_UP
    if delivery.status == DeliveryStatus.CANCELLED:
        return STATE_CANCELLED
    # Pending: a redelivery starts its count again at 0, so only attempts of the running schedule say "retrying".
    return STATE_RETRYING if delivery.attempt_count > 0 and last_attempt is not None else STATE_QUEUED


def _attempt_item(attempt: Attempt, redelivery: bool) -> dict[str, Any]:
    return {"id": attempt.id, "attempt": attempt.attempt, "at": iso(attempt.at), "status": attempt.status,
            "http_code": attempt.http_code, "duration_ms": attempt.duration_ms, "error": attempt.error,
            "response_body_start": attempt.response_body_start, "redelivery": redelivery}


def _delivery_item(delivery: Delivery, body_start: str, attempts: list[Attempt]) -> dict[str, Any]:
    """`attempts` oldest first. Each redelivery starts the numbering again at 1: the attempts from the second
    run on are marked as a redelivery's, and so is the delivery while its latest run is one."""
    items, runs = [], 0
    for attempt in attempts:
        if attempt.attempt == 1 or runs == 0:
            runs += 1
        items.append(_attempt_item(attempt, runs > 1))
    # Queued again and not sent yet: the schedule restarted after the last attempt.
    queued_again = bool(attempts) and delivery.schedule_started_at > attempts[-1].at
    event_name, project = _event_fields(body_start)
    return {
        "delivery_id": delivery.id,
        "webhook_id_header": delivery.message_id,
        "sequence": delivery.sequence,  # its Projectrak-Sequence (CONTRACT §10.2); 0 for a test
        "event": event_name,
        "project": project,
        "created_at": iso(delivery.created_at),
        "state": _state(delivery, attempts[-1] if attempts else None),
        "next_attempt_at": iso(delivery.next_attempt_at) if delivery.status == DeliveryStatus.PENDING else None,
        "redelivered": runs > 1 or queued_again,
        "request_body": body_start[:LISTED_BODY_CHARS],
        "request_body_truncated": len(body_start) > LISTED_BODY_CHARS,
        "attempts": list(reversed(items)),  # newest first, as the log reads
    }


def delivery_log(session: Session, webhook_id: int, limit: int, before: int | None,
                 failed_only: bool) -> dict[str, Any]:
    """A page of `webhook_id`'s log, newest delivery first, keyset-paged by id (`before`; `addon.admin.paging`).
    The webhook is the caller's tenant's (the route checked it), and so are its deliveries: a second condition on
    `tenant_id` would let a generic plan (psycopg prepares a statement on its fifth run) pair two bitmap scans and
    sort the webhook's every delivery, seconds for a busy one."""
    page_of_webhook, newest = newest_first(Delivery.webhook_id, Delivery.id, webhook_id, before)
    query = (select(Delivery, _BODY_START).join(Event, Event.id == Delivery.event_id)
             .where(page_of_webhook).order_by(*newest).limit(limit + 1))
    if failed_only:
        query = query.where(or_(Delivery.status == DeliveryStatus.FAILED,
                                and_(Delivery.status.in_([DeliveryStatus.PENDING, DeliveryStatus.CANCELLED]),
                                     Delivery.attempt_count > 0)))
    rows = session.execute(query).all()
    page = rows[:limit]
    attempts: dict[int, list[Attempt]] = {delivery.id: [] for delivery, _ in page}
    if attempts:
        for attempt in session.scalars(select(Attempt).where(Attempt.delivery_id.in_(list(attempts)))
                                       .order_by(Attempt.id)):
            attempts[attempt.delivery_id].append(attempt)
    items = [_delivery_item(delivery, body_start, attempts[delivery.id]) for delivery, body_start in page]
    return {"items": items, "next": page[-1][0].id if len(rows) > limit else None,
            "now": iso(dt.datetime.now(dt.UTC))}


@bp.get("/webhooks/<int:webhook_id>/delivery-log")
@admin_required
def get_delivery_log(webhook_id: int):  # a view: Flask types its answer loosely
    limit = _int_arg("limit", DEFAULT_PAGE, 1, MAX_PAGE) or DEFAULT_PAGE
    before = _int_arg("before", None, 1, MAX_ID)
    failed_only = _failed_only()
    with transaction(current_runtime().sessions) as session:
        webhook = _get_webhook(session, webhook_id)
        return jsonify(delivery_log(session, webhook.id, limit, before, failed_only))
