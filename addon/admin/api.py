"""The admin JSON API (CONTRACT §7): Jira administrators only, each tenant sees only its own webhooks."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy import func, null, select, update
from sqlalchemy.orm import Session

from addon.admin import filters, headers
from addon.admin.paging import newest_first
from addon.admin.permissions import admin_required
from addon.admin.serialize import LISTED_BODY_CHARS, attempt_json, iso, webhook_json
from addon.admin.test_slots import test_slots
from addon.delivery import outcomes
from addon.delivery.worker import send_now
from addon.doors import current_caller
from addon.intake import snapshots
from addon.outbox.claim import lease_duration
from addon.outbox.store import enqueue_event, notify_workers
from addon.process.runtime import current_runtime
from addon.sending.addresses import UrlRejected, check_url_for_saving
from addon.sending.signing import generate_secret
from addon.storage.engine import transaction
from addon.storage.models import (
    MAX_WEBHOOKS_PER_TENANT,
    Attempt,
    Delivery,
    DeliveryStatus,
    Event,
    Tenant,
    Webhook,
    WebhookKind,
    utcnow,
)
from addon.web.errors import ApiError
from addon.web.json_body import read_json, unprocessable

bp = Blueprint("admin_api", __name__, url_prefix="/api")

MAX_NAME_LENGTH = 255
TESTS_PER_MINUTE = 10
#: Tests of one tenant in progress at once (CONTRACT §7), over every web process.
TESTS_AT_ONCE_PER_TENANT = 2
#: Seconds a test refused for want of a free thread is told to wait.
TESTS_BUSY_RETRY_AFTER_S = 10
SECRET_ROTATION_GRACE = dt.timedelta(hours=24)
DEFAULT_PAGE, MAX_PAGE = 20, 200
_FIELDS = {"name", "url", "enabled", "headers", "filter", "ordered"}
#: Ids are 64-bit signed integers on both databases: a larger one names no row (404), and is never sent to the
#: database (SQLite's driver and PostgreSQL would both fail on it). A negative one matches no route.
MAX_ID = 2**63 - 1


@bp.after_request
def _no_store(response):
    response.headers["Cache-Control"] = "no-store"
    return response


def _tenant_id() -> int:
    return current_caller().tenant_id


def _get_webhook(session: Session, webhook_id: int, *, lock: bool = False) -> Webhook:
    """The tenant's webhook, or 404. With `lock`, its row stays locked until the transaction ends (FOR NO KEY
    UPDATE on PostgreSQL, the lock recording an attempt takes too; SQLite's BEGIN IMMEDIATE serialises anyway)."""
    webhook = None
    if webhook_id <= MAX_ID:
        webhook = session.get(Webhook, webhook_id, with_for_update={"key_share": True} if lock else None,
                              populate_existing=lock)
    if (webhook is None or webhook.tenant_id != _tenant_id() or webhook.deleted_at is not None
            or webhook.kind != WebhookKind.WEBHOOK):
        raise ApiError(404, "not_found", f"webhook {webhook_id} does not exist")
    return webhook


def _validated_fields(body: Any, *, creating: bool) -> dict[str, Any]:
    """Check the request document; the URL policy (which may resolve DNS) runs before any transaction."""
    if not isinstance(body, dict):
        raise unprocessable("body", "must be a JSON object")
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise unprocessable(unknown[0], "is not a field of a webhook (name, url, enabled, headers, filter, ordered)")
    fields: dict[str, Any] = {}
    if "name" in body or creating:
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise unprocessable("name", "is required: a non-empty string")
        if len(name.strip()) > MAX_NAME_LENGTH:
            raise unprocessable("name", f"must be at most {MAX_NAME_LENGTH} characters")
        fields["name"] = name.strip()
    if "url" in body or creating:
        fields["url"] = checked_url("url", body.get("url"))
    if "enabled" in body:
        if not isinstance(body["enabled"], bool):
            raise unprocessable("enabled", "must be true or false")
        fields["enabled"] = body["enabled"]
    if "ordered" in body:
        if not isinstance(body["ordered"], bool):
            raise unprocessable("ordered", "must be true or false")
        fields["ordered"] = body["ordered"]
    if "filter" in body:  # checked here, its projects resolved through Jira (still outside any transaction)
        caller = current_caller()
        fields["filter"] = filters.resolved(filters.checked(body["filter"]), current_runtime().jira_for(caller.tenant),
                                            caller.tenant.client_key)
    return fields


def checked_url(name: str, url: Any) -> str:
    """A URL field as §6.3 lets one be saved (the form that is sent): 422 when it is no string, 400 with the
    address policy's code (`invalid_url`, `private_address`) when it may not be sent to. May resolve DNS: call it
    before any transaction."""
    if not isinstance(url, str) or not url.strip():
        raise unprocessable(name, "is required: an https:// URL")
    runtime = current_runtime()
    try:
        return check_url_for_saving(url.strip(), runtime.settings.allow_private_networks,
                                    local_targets=runtime.local_targets)
    except UrlRejected as err:
        raise ApiError(400, err.code, f"{name}: {err.message}") from None


@bp.get("/webhooks")
@admin_required
def list_webhooks():
    with transaction(current_runtime().sessions) as session:
        webhooks = session.scalars(
            select(Webhook).where(Webhook.tenant_id == _tenant_id(), Webhook.deleted_at.is_(None),
                                  Webhook.kind == WebhookKind.WEBHOOK).order_by(Webhook.id)
        )
        return jsonify([webhook_json(w) for w in webhooks])


@bp.post("/webhooks")
@admin_required
def create_webhook():
    body = read_json()
    fields = _validated_fields(body, creating=True)
    runtime = current_runtime()
    secret = generate_secret()
    with transaction(runtime.sessions) as session:
        # Concurrent creations take turns on the tenant's row, so the count below cannot go stale before the
        # insert (PostgreSQL's READ COMMITTED would let each see 49 and all insert).
        session.execute(select(Tenant.id).where(Tenant.id == _tenant_id()).with_for_update(key_share=True))
        count = session.scalar(
            select(func.count()).select_from(Webhook)
            .where(Webhook.tenant_id == _tenant_id(), Webhook.deleted_at.is_(None),
                   Webhook.kind == WebhookKind.WEBHOOK)
        )
        if count >= MAX_WEBHOOKS_PER_TENANT:
            raise ApiError(422, "too_many_webhooks", f"a site may have at most {MAX_WEBHOOKS_PER_TENANT} webhooks")
        enabled = fields.get("enabled", True)
        webhook = Webhook(tenant_id=_tenant_id(), name=fields["name"], url=fields["url"], enabled=enabled,
                          disabled_reason=None if enabled else "manual", secret=runtime.box.seal(secret),
                          ordered=fields.get("ordered", False),
                          headers=headers.validated(body["headers"], None, runtime.box) if "headers" in body else None)
        session.add(webhook)
        session.flush()
        if "filter" in fields:
            filters.apply(session, webhook, fields["filter"])
        answer = webhook_json(webhook) | {"secret": secret}
    return jsonify(answer), 201


@bp.get("/webhooks/<int:webhook_id>")
@admin_required
def get_webhook(webhook_id: int):
    with transaction(current_runtime().sessions) as session:
        return jsonify(webhook_json(_get_webhook(session, webhook_id)))


@bp.patch("/webhooks/<int:webhook_id>")
@admin_required
def update_webhook(webhook_id: int):
    body = read_json()
    with transaction(current_runtime().sessions) as session:
        _get_webhook(session, webhook_id)  # 404 before validating (and resolving) anything
    fields = _validated_fields(body, creating=False)
    with transaction(current_runtime().sessions) as session:
        webhook = _get_webhook(session, webhook_id, lock="headers" in body)
        if fields or "headers" in body:
            outcomes.webhook_changed(webhook)  # a changed webhook's alert leaves the page
        if "headers" in body:  # replaces them all; a name given with null keeps its stored value
            webhook.headers = headers.validated(body["headers"], webhook.headers, current_runtime().box)
        if "name" in fields:
            webhook.name = fields["name"]
        if "url" in fields:
            webhook.url = fields["url"]  # pending retries read the URL at send time
        if "ordered" in fields:  # the claim reads it each time: pending deliveries follow the new setting
            webhook.ordered = fields["ordered"]
            outcomes.line_up(session, webhook)
        if "filter" in fields:  # it replaces the whole filter; pending deliveries keep what they were given
            filters.apply(session, webhook, fields["filter"])
        if "enabled" in fields and fields["enabled"] != webhook.enabled:
            if fields["enabled"]:
                outcomes.enable_webhook(webhook)
            else:
                outcomes.disable_webhook(session, webhook, "manual")
        return jsonify(webhook_json(webhook))


@bp.delete("/webhooks/<int:webhook_id>")
@admin_required
def delete_webhook(webhook_id: int):
    with transaction(current_runtime().sessions) as session:
        webhook = _get_webhook(session, webhook_id)
        outcomes.delete_webhook(session, webhook)
    return "", 204


@bp.post("/webhooks/<int:webhook_id>/rotate-secret")
@admin_required
def rotate_secret(webhook_id: int):
    """A new signing secret. The old one keeps signing beside it for 24 h, so receivers can switch over, unless the
    body says `{"keep_old": false}` (a leaked secret stops signing at once)."""
    keep_old = rotation_keeps_old_secret()
    with transaction(current_runtime().sessions) as session:
        return jsonify(rotate(_get_webhook(session, webhook_id), keep_old))


def rotate(webhook: Webhook, keep_old: bool) -> dict[str, Any]:
    """A new signing secret for `webhook` (locked or not: the last rotation wins); the answer that shows it."""
    secret = generate_secret()
    if keep_old:
        webhook.previous_secret = webhook.secret
        webhook.previous_secret_expires_at = utcnow() + SECRET_ROTATION_GRACE
    else:
        webhook.previous_secret = webhook.previous_secret_expires_at = None
    webhook.secret = current_runtime().box.seal(secret)
    return {"secret": secret, "old_secret_expires_at": iso(webhook.previous_secret_expires_at)}


def rotation_keeps_old_secret() -> bool:
    """The rotation's optional body: nothing, or `{"keep_old": true|false}`."""
    if not request.get_data(cache=True).strip():
        return True
    body = read_json()
    if not isinstance(body, dict):
        raise unprocessable("body", "must be an object (or empty)")
    unknown = sorted(set(body) - {"keep_old"})
    if unknown:
        raise unprocessable(unknown[0], "is not a field of a secret rotation (only keep_old)")
    keep_old = body.get("keep_old", True)
    if not isinstance(keep_old, bool):
        raise unprocessable("keep_old", "must be true or false")
    return keep_old


def _tests_in_progress(session: Session, now: dt.datetime) -> int:
    """The tenant's test deliveries being sent now, by any web process: pending and never due (a test's
    delivery, see `test_webhook`), made within a lease (a test whose process died stops counting after it).
    Read through the per-webhook index (webhook_id, status, next_attempt_at, id) of the tenant's webhooks."""
    return session.scalars(
        select(func.count()).select_from(Delivery)
        .join(Webhook, Webhook.id == Delivery.webhook_id).join(Event, Event.id == Delivery.event_id)
        .where(Webhook.tenant_id == _tenant_id(), Delivery.status == DeliveryStatus.PENDING,
               Delivery.next_attempt_at.is_(None), Event.source == "test",
               Delivery.created_at >= now - lease_duration(current_runtime()))
    ).one()


@bp.post("/webhooks/<int:webhook_id>/test")
@admin_required
def test_webhook(webhook_id: int):  # a view: Flask types its answer loosely
    """Send a test delivery in this request. At most 10 a minute per webhook and 2 at once per tenant (429), and
    at most a quarter of this process's threads (`test_slots`; 503 with Retry-After when none is free)."""
    slots = test_slots(current_app)
    taken: list[bool] = []

    def take_slot() -> None:
        if not slots.try_take():
            raise ApiError(503, "tests_busy", "this server is sending as many test deliveries as it may at once; "
                           "try again shortly", {"Retry-After": str(TESTS_BUSY_RETRY_AFTER_S)})
        taken.append(True)

    try:
        return _test_webhook(webhook_id, take_slot)
    finally:
        if taken:
            slots.give_back()


def _test_webhook(webhook_id: int, take_slot: Callable[[], None]):
    runtime = current_runtime()
    now = utcnow()
    since = now - dt.timedelta(minutes=1)
    with transaction(runtime.sessions) as session:
        # The tenant's row first (the order the lifecycle takes them in), then the webhook's: concurrent tests of
        # a tenant count one after another, across processes (SQLite's BEGIN IMMEDIATE serialises anyway).
        session.execute(select(Tenant.id).where(Tenant.id == _tenant_id()).with_for_update(key_share=True))
        webhook = _get_webhook(session, webhook_id, lock=True)
        recent = session.scalars(
            select(func.count()).select_from(Delivery).join(Event, Event.id == Delivery.event_id)
            .where(Delivery.webhook_id == webhook.id, Event.source == "test", Event.created_at >= since)
        ).one()
        if recent >= TESTS_PER_MINUTE:
            raise ApiError(429, "rate_limited", f"at most {TESTS_PER_MINUTE} test deliveries a minute per webhook",
                           {"Retry-After": "60"})
        if _tests_in_progress(session, now) >= TESTS_AT_ONCE_PER_TENANT:
            raise ApiError(429, "tests_in_progress",
                           f"at most {TESTS_AT_ONCE_PER_TENANT} test deliveries at once per site; try again when one "
                           "has answered", {"Retry-After": str(int(runtime.settings.outgoing_timeout_s) + 1)})
        take_slot()  # last: a refused test holds no place
        body: dict[str, Any] = {"data": {
            "event": "test", "user": current_caller().account_id, "timestamp": int(time.time() * 1000),
            "project": snapshots.first_project(session, _tenant_id()), "fields": []}}
        event_id, _ = enqueue_event(session, tenant_id=_tenant_id(), source="test", body=body,
                                    webhook_ids=[webhook.id], include_disabled=True)
        # Never due: no worker's claim takes it (it would send it a second time, and retry it); this request sends
        # it once, below, and records it without a retry.
        session.execute(update(Delivery).where(Delivery.event_id == event_id).values(next_attempt_at=None))
        delivery_id = session.scalars(select(Delivery.id).where(Delivery.event_id == event_id)).one()
    attempt_id = send_now(runtime, delivery_id)
    if attempt_id is None:  # cancelled meanwhile: the webhook was disabled or deleted
        raise ApiError(409, "test_cancelled", f"test delivery {delivery_id} was cancelled before it was sent")
    with transaction(runtime.sessions) as session:
        attempt = session.get_one(Attempt, attempt_id)
        delivery = session.get_one(Delivery, delivery_id)
        event = session.get_one(Event, delivery.event_id)
        return jsonify(attempt_json(attempt, delivery.message_id, event.body, sequence=delivery.sequence))


def _int_arg(name: str, default: int | None, low: int, high: int | None = None) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "invalid_parameter", f"{name} must be an integer") from None
    if value < low or (high is not None and value > high):
        raise ApiError(400, "invalid_parameter", f"{name} must be between {low} and {high or 'any'}")
    return value


def _bool_arg(name: str, default: bool) -> bool:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true"):
        return True
    if raw.lower() in ("0", "false"):
        return False
    raise ApiError(400, "invalid_parameter", f"{name} must be 1 or 0 (true or false)")


#: A listed body's first characters and one more, cut by the database (`substr` counts characters on both), so
#: that a big body is never read into the web process for a list: the extra character tells it was cut.
_SENT_BODY = func.coalesce(Delivery.body, Event.body)  # a delivery's own body (a field filter's), else its event's
_LISTED_BODY = func.substr(_SENT_BODY, 1, LISTED_BODY_CHARS + 1)


@bp.get("/webhooks/<int:webhook_id>/deliveries")
@admin_required
def list_deliveries(webhook_id: int):
    limit = _int_arg("limit", DEFAULT_PAGE, 1, MAX_PAGE) or DEFAULT_PAGE
    before = _int_arg("before", None, 1, MAX_ID)
    bodies = _bool_arg("bodies", True)  # the page's chart asks without: it needs none
    with transaction(current_runtime().sessions) as session:
        webhook = _get_webhook(session, webhook_id)
        body = _LISTED_BODY if bodies else null()
        # By webhook alone (it is the caller's tenant's, and so are its attempts; see `delivery_log.delivery_log`),
        # through the index (webhook_id, id) at any depth (`addon.admin.paging`).
        page_of_webhook, newest = newest_first(Attempt.webhook_id, Attempt.id, webhook.id, before)
        query = (
            select(Attempt, Delivery.message_id, body, Delivery.sequence)
            .join(Delivery, Delivery.id == Attempt.delivery_id)
            .join(Event, Event.id == Delivery.event_id)
            .where(page_of_webhook)
            .order_by(*newest)
            .limit(limit + 1)
        )
        rows = session.execute(query).all()
        items = [_listed(a, message_id, start, bodies, sequence) for a, message_id, start, sequence in rows[:limit]]
        next_cursor = items[-1]["id"] if len(rows) > limit else None
        return jsonify({"items": items, "next": next_cursor})


def _listed(attempt: Attempt, message_id: str, start: str | None, bodies: bool, sequence: int) -> dict[str, Any]:
    if not bodies:
        return attempt_json(attempt, message_id, None, None, response_body=False, sequence=sequence)
    text = start or ""  # the event's body: never null, but typed as a nullable column's start
    return attempt_json(attempt, message_id, text[:LISTED_BODY_CHARS], len(text) > LISTED_BODY_CHARS,
                        sequence=sequence)


@bp.get("/attempts/<int:attempt_id>")
@admin_required
def get_attempt(attempt_id: int):
    """One attempt with its whole request body: what a list item cut."""
    with transaction(current_runtime().sessions) as session:
        row = None
        if attempt_id <= MAX_ID:
            row = session.execute(
                select(Attempt, Delivery.message_id, _SENT_BODY, Delivery.sequence)
                .join(Delivery, Delivery.id == Attempt.delivery_id)
                .join(Event, Event.id == Delivery.event_id)
                .where(Attempt.id == attempt_id, Attempt.tenant_id == _tenant_id())
            ).first()
        if row is None:
            raise ApiError(404, "not_found", f"attempt {attempt_id} does not exist")
        attempt, message_id, body, sequence = row
        return jsonify(attempt_json(attempt, message_id, body, sequence=sequence))


@bp.post("/webhooks/<int:webhook_id>/recover")
@admin_required
def recover(webhook_id: int):
    """Resend what failed since a time (CONTRACT §10.4)."""
    since = _recovery_since(read_json())
    runtime = current_runtime()
    with transaction(runtime.sessions) as session:
        webhook = _get_webhook(session, webhook_id, lock=True)
        if not webhook.enabled:
            raise ApiError(409, "webhook_disabled", "enable the webhook before recovering its deliveries")
        queued, remaining = outcomes.recover_deliveries(session, webhook.id, since)
        if queued:
            outcomes.line_up(session, webhook)
            notify_workers(session)
    if queued:
        runtime.deliveries_committed.notify()
    return jsonify({"queued": queued, "remaining": remaining}), 202


def _recovery_since(body: Any) -> dt.datetime:
    if not isinstance(body, dict):
        raise unprocessable("body", "must be a JSON object")
    unknown = sorted(set(body) - {"since"})
    if unknown:
        raise unprocessable(unknown[0], "is not a field of a recovery (only since)")
    raw = body.get("since")
    if not isinstance(raw, str):
        raise unprocessable("since", "is required: an ISO 8601 time, e.g. 2026-01-31T08:00:00Z")
    try:
        since = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise unprocessable("since", f"is not an ISO 8601 time: {raw[:40]!r}") from None
    if since.tzinfo is None:
        raise unprocessable("since", "needs a time zone (Z or an offset)")
    return since.astimezone(dt.UTC)


@bp.post("/deliveries/<int:delivery_id>/redeliver")
@admin_required
def redeliver(delivery_id: int):
    runtime = current_runtime()
    with transaction(runtime.sessions) as session:
        delivery = session.get(Delivery, delivery_id) if delivery_id <= MAX_ID else None
        if delivery is None or delivery.tenant_id != _tenant_id():
            raise ApiError(404, "not_found", f"delivery {delivery_id} does not exist")
        # Lock order as in the worker's recording: the webhook's row, then the delivery's (read again, locked).
        webhook = _get_webhook(session, delivery.webhook_id, lock=True)
        if not webhook.enabled:
            raise ApiError(409, "webhook_disabled", "enable the webhook before redelivering to it")
        delivery = session.get_one(Delivery, delivery_id, with_for_update=True, populate_existing=True)
        now = utcnow()
        if delivery.lease_until is not None and delivery.lease_until > now:
            # Being sent right now: restarting it would send it a second time alongside.
            raise ApiError(409, "delivery_in_flight",
                           f"delivery {delivery_id} is being sent right now; redeliver it once that attempt ends")
        outcomes.restart_delivery(delivery, now)
        outcomes.line_up(session, webhook)
        notify_workers(session)
        answer = {"delivery_id": delivery.id, "webhook_id_header": delivery.message_id, "status": "queued"}
    runtime.deliveries_committed.notify()
    return jsonify(answer), 202
