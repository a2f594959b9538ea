"""Outcomes: the only code that changes a delivery's or a webhook's state.

Recording attempts: each attempt's row, its delivery's next step (finished, or its next attempt scheduled), and
its webhook's last execution and status, which may disable the webhook (a 410, or 5 days of failures). The
transitions administrators are told of (CONTRACT §10.5: disabled by the add-on, failing for 24 hours, recovered)
are decided here too, each once, and told through `addon.delivery.operational`.

`record` writes one attempt in a transaction of its own (the admin page's test delivery, and the worker's
fallback); `record_many` writes a batch of outcomes in one transaction, as the worker's recorder thread does.
Cancelling, disabling, enabling and deleting are here too, called by the admin API, a door's lifecycle and
housekeeping, so each rule is written once.
"""

from __future__ import annotations

import datetime as dt
import logging
import re

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    DateTime,
    Integer,
    String,
    Text,
    Update,
    bindparam,
    case,
    func,
    insert,
    select,
    type_coerce,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session
from sqlalchemy.sql.selectable import TableValuedAlias
from sqlalchemy.types import TypeEngine

from addon.delivery import operational
from addon.delivery.retry import FAILING_DISABLE_AFTER, next_attempt_at
from addon.outbox.claim import Job
from addon.outbox.store import ensure_lines
from addon.process.metrics import count_attempt
from addon.process.runtime import Runtime
from addon.sending.client import SendResult
from addon.storage.engine import rowcount, transaction
from addon.storage.models import (
    NO_PROJECT,
    Attempt,
    Delivery,
    DeliveryStatus,
    Event,
    Webhook,
    WebhookKind,
    table_of,
    utcnow,
)

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 500
MAX_BODY_CHARS = 2048

_UNSTORABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
"""Control characters but tab and newline (C0, DEL, C1), and lone surrogates: PostgreSQL refuses NUL in text and
neither database can encode a surrogate, so one of them in what a receiver sent failed the attempt's recording
(and the delivery, never recorded, was sent again when its lease ran out)."""


def cleaned(text: str | None, limit: int) -> str | None:
    """What a receiver sent (a body's start, an error text quoting it), in a form any database stores: at most
    `limit` characters, unstorable characters replaced by U+FFFD."""
    return None if text is None else _UNSTORABLE.sub("\ufffd", text[:limit])

_deliveries = table_of(Delivery)
_webhooks = table_of(Webhook)
_attempts = table_of(Attempt)
_PENDING = _deliveries.c.status == DeliveryStatus.PENDING


def _cancel(session: Session, which: ColumnElement[bool], now: dt.datetime) -> int:
    """Cancel the pending deliveries `which` selects: finished now, their lease dropped. Returns how many."""
    return rowcount(session.execute(
        update(Delivery)
        .where(which, Delivery.status == DeliveryStatus.PENDING)
        .values(status=DeliveryStatus.CANCELLED, finished_at=now, lease_until=None)
    ))


def cancel_webhook_deliveries(session: Session, webhook_id: int, now: dt.datetime | None = None) -> int:
    """A disabled or deleted webhook sends nothing more: its pending deliveries are cancelled."""
    return _cancel(session, Delivery.webhook_id == webhook_id, now or utcnow())


def cancel_tenant_deliveries(session: Session, tenant_id: int, now: dt.datetime | None = None) -> int:
    """An uninstalled tenant's pending deliveries are cancelled (a disabled one's only pause)."""
    return _cancel(session, Delivery.tenant_id == tenant_id, now or utcnow())


def cancel_abandoned_tests(session: Session, older_than: dt.datetime, now: dt.datetime | None = None) -> int:
    """Test deliveries are never due (the request that made one sends it): one whose request died before sending
    it, older than `older_than` and without a live lease, is cancelled rather than left pending for ever."""
    now = now or utcnow()
    abandoned = (Delivery.next_attempt_at.is_(None) & (Delivery.schedule_started_at < older_than)
                 & (Delivery.lease_until.is_(None) | (Delivery.lease_until < now)))
    return _cancel(session, abandoned, now)


def disable_webhook(session: Session, webhook: Webhook, reason: str, now: dt.datetime | None = None) -> bool:
    """Disable a webhook (`reason`: "manual", "gone" or "failing") and cancel its pending deliveries. The caller
    holds the webhook's row lock first where attempts may be recorded at the same time (see `record`).

    Disabled by the add-on (not "manual"): the page shows it at the top and the operational webhook is told, once
    (a disabled webhook is never disabled again before it is enabled). Returns whether a notice was queued (the
    caller wakes the workers after its commit)."""
    now = now or utcnow()
    webhook.enabled = False
    webhook.disabled_reason = reason
    cancel_webhook_deliveries(session, webhook.id, now)
    if reason == "manual":
        return False
    log.warning("webhook disabled tenant=%s webhook=%s reason=%s", webhook.tenant_id, webhook.id, reason)
    _set_alert(webhook, "disabled", reason, now)
    return operational.tell(session, webhook, operational.DISABLED, reason)


def tell_if_failing(session: Session, webhook: Webhook, now: dt.datetime) -> bool:
    """A webhook with only failed attempts for 24 hours is "failing": shown on the page and told once per failing
    streak (its streak starts again only after a success or an enabling, so later looks tell nothing new). The
    caller holds the webhook's row lock. Returns whether a notice was queued."""
    if not (webhook.kind == WebhookKind.WEBHOOK and webhook.enabled and webhook.failing_since is not None
            and now - webhook.failing_since >= operational.FAILING_ALERT_AFTER
            and webhook.alert_state in _FAILING_NOT_TOLD):
        return False
    _set_alert(webhook, "failing", "failing", webhook.failing_since)
    log.warning("webhook failing for 24 hours tenant=%s webhook=%s", webhook.tenant_id, webhook.id)
    return operational.tell(session, webhook, operational.FAILING, "failing")


#: The alert states in which an enabled webhook's failing streak has not been told: none, or a disabling told
#: before the webhook was enabled again (`enable_webhook` starts a new streak).
_FAILING_NOT_TOLD = (None, "disabled")


def _set_alert(webhook: Webhook, state: str, reason: str, since: dt.datetime) -> None:
    webhook.alert_state, webhook.alert_reason, webhook.alert_since, webhook.alert_shown = state, reason, since, True


def _recovered(session: Session, webhook: Webhook) -> bool:
    """A success after a disabling or a failing streak that was told: the operational webhook hears it once, and
    the page's alert goes. Returns whether a notice was queued."""
    reason = webhook.alert_reason
    webhook.alert_state = webhook.alert_reason = webhook.alert_since = None
    webhook.alert_shown = False
    log.info("webhook recovered tenant=%s webhook=%s", webhook.tenant_id, webhook.id)
    return operational.tell(session, webhook, operational.RECOVERED, reason)


def webhook_changed(webhook: Webhook) -> None:
    """An administrator changed the webhook: the page stops showing its alert (its recovery is still told)."""
    webhook.alert_shown = False


def enable_webhook(webhook: Webhook) -> None:
    """Enable a webhook: it starts afresh, with no failing streak."""
    webhook.enabled = True
    webhook.disabled_reason = None
    webhook.failing_since = None


#: A delivery's line: its event's project (`NO_PROJECT` for none), as the intake gives it.
_EVENTS_PROJECT = func.coalesce(Event.project_id, NO_PROJECT)


def line_up(session: Session, webhook: Webhook) -> None:
    """Put an ordered webhook's pending deliveries that have no line (stored before lines existed, by an older
    add-on: migration 0008 writes no row) in their event's project's line, and give each such project its counter
    row: the claim takes an ordered webhook's deliveries only as the heads of its tenant's lines. Called when a
    webhook is made ordered and when deliveries of an ordered one are queued again; on a webhook whose deliveries
    all came after the upgrade it finds none, through the line index."""
    if not webhook.ordered:
        return
    projects: set[str] = set(session.scalars(  # never null: set just above from a coalesce
        update(Delivery)
        .where(Delivery.webhook_id == webhook.id, Delivery.status == DeliveryStatus.PENDING,
               Delivery.project_id.is_(None))
        .values(project_id=select(_EVENTS_PROJECT).where(Event.id == Delivery.event_id).scalar_subquery())
        .returning(type_coerce(Delivery.project_id, String()))))
    ensure_lines(session.connection(), webhook.tenant_id, projects)


def restart_delivery(delivery: Delivery, now: dt.datetime) -> None:
    """Redeliver: the retry schedule starts again (attempts 1..8 from now); the attempts made stay in the log."""
    delivery.status = DeliveryStatus.PENDING
    delivery.attempt_count = 0
    delivery.next_attempt_at = now
    delivery.schedule_started_at = now
    delivery.finished_at = None
    delivery.lease_until = None


#: Most deliveries one recovery queues again (CONTRACT §10.4); the answer says how many are left.
MAX_RECOVERED = 10_000


def recover_deliveries(session: Session, webhook_id: int, since: dt.datetime, now: dt.datetime | None = None
                       ) -> tuple[int, int]:
    """Queue again, oldest first, a webhook's deliveries accepted since `since` that did not succeed (given up,
    ended on a final error, or cancelled): each keeps its `webhook-id` and starts a fresh retry schedule. At most
    `MAX_RECOVERED`; returns how many were queued and how many are left. The caller holds the webhook's row lock."""
    now = now or utcnow()
    ended = (Delivery.webhook_id == webhook_id, Delivery.created_at >= since,
             Delivery.status.in_([DeliveryStatus.FAILED, DeliveryStatus.CANCELLED]),
             Delivery.next_attempt_at.is_not(None))  # test deliveries (never scheduled) are not recovered
    ids = list(session.scalars(select(Delivery.id).where(*ended).order_by(Delivery.created_at, Delivery.id)
                               .limit(MAX_RECOVERED)))
    for start in range(0, len(ids), 1000):
        # The same next attempt time for all: the claim takes a webhook's due deliveries by time, then id (oldest).
        session.execute(update(Delivery).where(Delivery.id.in_(ids[start:start + 1000])).values(
            status=DeliveryStatus.PENDING, attempt_count=0, next_attempt_at=now, schedule_started_at=now,
            finished_at=None, lease_until=None))
    remaining = session.scalar(select(func.count()).select_from(Delivery).where(*ended)) or 0
    return len(ids), remaining


def delete_webhook(session: Session, webhook: Webhook, now: dt.datetime | None = None) -> None:
    """Delete a webhook (its row stays, for its history, until the tenant is forgotten) and cancel what it had
    pending."""
    now = now or utcnow()
    webhook.deleted_at = now
    webhook.enabled = False
    cancel_webhook_deliveries(session, webhook.id, now)


def record(runtime: Runtime, job: Job, result: SendResult, *, retry: bool = True) -> int:
    """Store the attempt, update the webhook's status, and schedule the next attempt or finish. Returns the
    attempt id."""
    now = utcnow()
    next_at = (next_attempt_at(job.attempt, result, schedule_start=job.schedule_start, now=now)
               if retry else None)
    with transaction(runtime.sessions) as session:
        # Lock order: the webhook row before any delivery row, as disabling a webhook (here, in the admin API and
        # in housekeeping) does. Otherwise two attempts of one webhook, one of them disabling it, deadlock on
        # PostgreSQL: each holds its own delivery row and the disabling one waits for the other's to cancel it.
        # FOR NO KEY UPDATE is the lock the update of the webhook's status takes anyway.
        webhook = session.get(Webhook, job.webhook_id, with_for_update={"key_share": True})
        attempt = Attempt(
            tenant_id=job.tenant_id, delivery_id=job.delivery_id, webhook_id=job.webhook_id, attempt=job.attempt,
            at=now, status="OK" if result.ok else "ERROR", http_code=result.http_code,
            duration_ms=result.duration_ms, error=_error_text(result),
            response_body_start=cleaned(result.response_body_start, MAX_BODY_CHARS),
        )
        session.add(attempt)
        delivery = session.get(Delivery, job.delivery_id)
        if delivery is not None:
            delivery.attempt_count = job.attempt
            delivery.lease_until = None
            if delivery.status == DeliveryStatus.PENDING:
                if result.ok:
                    delivery.status, delivery.finished_at = DeliveryStatus.SUCCEEDED, now
                elif next_at is None:
                    delivery.status, delivery.finished_at = DeliveryStatus.FAILED, now
                else:
                    delivery.next_attempt_at = next_at
        told = webhook is not None and _webhook_saw(session, webhook, result, attempt.error, now)
        session.flush()
        attempt_id = attempt.id
    if told:
        runtime.deliveries_committed.notify()
    _log_attempt(job, result, next_at, now)
    count_attempt(result.ok, next_at is None, result.duration_ms, test=not retry)
    return attempt_id


def _error_text(result: SendResult) -> str | None:
    return cleaned(result.error or None, MAX_ERROR_CHARS)


def _webhook_saw(session: Session, webhook: Webhook, result: SendResult, error: str | None,
                 now: dt.datetime) -> bool:
    """A webhook's last execution and status after one attempt; disables it on a 410 or 5 days of failures, and
    tells the transitions (disabled, failing for 24 hours, recovered). The operational webhook is never disabled
    nor told about: nobody would hear of it. Returns whether a notice was queued."""
    webhook.last_execution_at = now
    webhook.last_status = "OK" if result.ok else "ERROR"
    webhook.last_status_code = result.http_code
    webhook.last_error = error
    if result.ok:
        webhook.failing_since = None
        return webhook.alert_state is not None and _recovered(session, webhook)
    webhook.failing_since = webhook.failing_since or now
    if webhook.kind != WebhookKind.WEBHOOK or not webhook.enabled:
        return False
    if result.gone:
        return disable_webhook(session, webhook, "gone", now)
    if now - webhook.failing_since >= FAILING_DISABLE_AFTER:
        return disable_webhook(session, webhook, "failing", now)
    return tell_if_failing(session, webhook, now)


def _log_attempt(job: Job, result: SendResult, next_at: dt.datetime | None, now: dt.datetime) -> None:
    log.info("delivery attempt tenant=%s webhook=%s delivery=%s attempt=%s status=%s code=%s ms=%s%s",
             job.tenant_id, job.webhook_id, job.delivery_id, job.attempt, "OK" if result.ok else "ERROR",
             result.http_code, result.duration_ms,
             f" retry_in={(next_at - now).total_seconds():.1f}s" if next_at is not None and not result.ok else "")


def _finishing(delivery_id: ColumnElement, attempt: ColumnElement, status: ColumnElement,
               now: ColumnElement) -> Update:
    """A finished attempt: the delivery ends (success or final failure) unless something else ended it meanwhile."""
    return (update(_deliveries).where(_deliveries.c.id == delivery_id)
            .values(attempt_count=attempt, lease_until=None,
                    status=case((_PENDING, status), else_=_deliveries.c.status),
                    finished_at=case((_PENDING, now), else_=_deliveries.c.finished_at)))


def _retrying(delivery_id: ColumnElement, attempt: ColumnElement, next_at: ColumnElement) -> Update:
    """A failed attempt to retry: the next attempt is scheduled unless the delivery was ended meanwhile."""
    return (update(_deliveries).where(_deliveries.c.id == delivery_id)
            .values(attempt_count=attempt, lease_until=None,
                    next_attempt_at=case((_PENDING, next_at), else_=_deliveries.c.next_attempt_at)))


# Their executemany forms (one row's values per execution).
_FINISH = _finishing(bindparam("d_id"), bindparam("d_attempt"), bindparam("d_status"), bindparam("d_now"))
_RETRY = _retrying(bindparam("d_id"), bindparam("d_attempt"), bindparam("d_next"))
# The webhooks of a batch, locked in id order (see `record_many`), with whether a recovery would be told.
_LOCK_WEBHOOKS = (select(_webhooks.c.id, _webhooks.c.alert_state.is_not(None))
                  .where(_webhooks.c.id.in_(bindparam("ids", expanding=True)))
                  .order_by(_webhooks.c.id).with_for_update(key_share=True))
# The last execution of a webhook whose attempts in the batch all succeeded.
_WEBHOOK_OK = (
    update(_webhooks).where(_webhooks.c.id == bindparam("w_id"))
    .values(last_execution_at=bindparam("w_now"), last_status="OK", last_status_code=bindparam("w_code"),
            last_error=None, failing_since=None)
)


# PostgreSQL: a batch's rows as one array parameter per column, unnested into rows by the statement itself.
def _unnest(name: str, **columns: TypeEngine) -> TableValuedAlias:
    """`unnest(:name_a, :name_b, …) AS name(a, b, …)`, one array parameter per column (see `_arrays`)."""
    arrays = (bindparam(f"{name}_{column}", type_=ARRAY(type_)) for column, type_ in columns.items())
    return func.unnest(*arrays).table_valued(*columns).render_derived(name=name)


_NEW_ATTEMPTS = _unnest("new_attempts", tenant_id=BigInteger(), delivery_id=BigInteger(), webhook_id=BigInteger(),
                        attempt=Integer(), status=String(), http_code=Integer(), duration_ms=Integer(),
                        error=Text(), response_body_start=Text())
_INSERT_ATTEMPTS_PG = insert(_attempts).from_select(
    [*_NEW_ATTEMPTS.c.keys(), "at"], select(*_NEW_ATTEMPTS.c, bindparam("now", type_=DateTime(timezone=True))))
_FINISHED = _unnest("finished", id=BigInteger(), attempt=Integer(), status=String())
_FINISH_PG = _finishing(_FINISHED.c.id, _FINISHED.c.attempt, _FINISHED.c.status,
                        bindparam("now", type_=DateTime(timezone=True)))
_RETRIED = _unnest("retried", id=BigInteger(), attempt=Integer(), next_at=DateTime(timezone=True))
_RETRY_PG = _retrying(_RETRIED.c.id, _RETRIED.c.attempt, _RETRIED.c.next_at)


def _arrays(name: str, rows: list[dict], **keys: str) -> dict[str, list]:
    """The parameters of `_unnest(name, …)` from an executemany's rows: for each column, the values of its key."""
    return {f"{name}_{column}": [row[key] for row in rows] for column, key in keys.items()}


def _attempt_rows(outcomes: list[tuple[Job, SendResult]], now: dt.datetime) -> list[dict]:
    return [{"tenant_id": job.tenant_id, "delivery_id": job.delivery_id, "webhook_id": job.webhook_id,
             "attempt": job.attempt, "at": now, "status": "OK" if result.ok else "ERROR",
             "http_code": result.http_code, "duration_ms": result.duration_ms, "error": _error_text(result),
             "response_body_start": cleaned(result.response_body_start, MAX_BODY_CHARS)}
            for job, result in outcomes]


def _write_rows_postgresql(connection: Connection, attempts: list[dict], finish: list[dict], retry: list[dict],
                           now: dt.datetime) -> None:
    """The batch's attempts and deliveries in (at most) three statements whatever its size, each column's values
    bound once as an array. An executemany binds and runs its statement once per row, work that SQLAlchemy and
    psycopg do in the worker's own process, under the GIL its sending needs: one PostgreSQL worker drains about a
    fifth more deliveries per second this way (docs/benchmarks.md)."""
    connection.execute(_INSERT_ATTEMPTS_PG, {
        "now": now, **_arrays("new_attempts", attempts, **{column: column for column in _NEW_ATTEMPTS.c.keys()})})
    if finish:
        connection.execute(_FINISH_PG, {
            "now": now, **_arrays("finished", finish, id="d_id", attempt="d_attempt", status="d_status")})
    if retry:
        connection.execute(_RETRY_PG, _arrays("retried", retry, id="d_id", attempt="d_attempt", next_at="d_next"))


def _write_rows(connection: Connection, attempts: list[dict], finish: list[dict], retry: list[dict],
                now: dt.datetime) -> None:
    """SQLite: the same as executemanys, which the driver runs in the process at little cost per row."""
    connection.execute(insert(_attempts), attempts)
    if finish:
        connection.execute(_FINISH, finish)
    if retry:
        connection.execute(_RETRY, retry)


def record_many(runtime: Runtime, outcomes: list[tuple[Job, SendResult]]) -> None:
    """`record` for many attempts in one transaction, with the same effects as recording them one by one in
    this order: attempts and deliveries in a few multi-row statements, webhooks whose attempts all succeeded in
    one statement each, and webhooks with a failure through `_webhook_saw` (which may disable them)."""
    if not outcomes:
        return
    now = utcnow()
    next_ats = [next_attempt_at(job.attempt, result, schedule_start=job.schedule_start, now=now)
                for job, result in outcomes]
    finish, retry = [], []
    for (job, result), next_at in zip(outcomes, next_ats, strict=True):
        if result.ok or next_at is None:
            status = DeliveryStatus.SUCCEEDED if result.ok else DeliveryStatus.FAILED
            finish.append({"d_id": job.delivery_id, "d_attempt": job.attempt, "d_status": status.value,
                           "d_now": now})
        else:
            retry.append({"d_id": job.delivery_id, "d_attempt": job.attempt, "d_next": next_at})
    by_webhook: dict[int, list[SendResult]] = {}
    for job, result in outcomes:
        by_webhook.setdefault(job.webhook_id, []).append(result)
    # A Core transaction; a Session joins it only for webhooks with a failed attempt (`_webhook_saw`).
    with runtime.engine.begin() as connection:
        # Lock order as in `record`: the webhook rows (in id order, so two recorders cannot deadlock on each
        # other) before any delivery row.
        alerted = {webhook_id: bool(has_alert) for webhook_id, has_alert in
                   connection.execute(_LOCK_WEBHOOKS, {"ids": sorted(by_webhook)})}
        write_rows = _write_rows_postgresql if connection.dialect.name == "postgresql" else _write_rows
        write_rows(connection, _attempt_rows(outcomes, now), finish, retry, now)
        # Webhooks whose attempts all succeeded and that have nothing to tell: their status in one statement.
        plain = {webhook_id for webhook_id, results in by_webhook.items()
                 if webhook_id in alerted and not alerted[webhook_id] and all(r.ok for r in results)}
        all_ok = [{"w_id": webhook_id, "w_now": now, "w_code": by_webhook[webhook_id][-1].http_code}
                  for webhook_id in sorted(plain)]
        if all_ok:
            connection.execute(_WEBHOOK_OK, all_ok)
        others = [(webhook_id, results) for webhook_id, results in sorted(by_webhook.items())
                  if webhook_id in alerted and webhook_id not in plain]
        told = False
        if others:
            with Session(bind=connection) as session:  # joins the connection's transaction, never ends it
                for webhook_id, results in others:
                    webhook = session.get(Webhook, webhook_id)  # already locked above
                    assert webhook is not None
                    for result in results:
                        told = _webhook_saw(session, webhook, result, _error_text(result), now) or told
                session.flush()
    if told:
        runtime.deliveries_committed.notify()
    for (job, result), next_at in zip(outcomes, next_ats, strict=True):
        _log_attempt(job, result, next_at, now)
        count_attempt(result.ok, next_at is None, result.duration_ms)
