"""Periodic housekeeping on APScheduler: prune old attempts (30 days), spent install tokens, and Jira inbox rows
and identifiers (7 days); cancel test deliveries whose request died before sending them; forget uninstalled
tenants after 30 days, and the fields the intake has not seen for 30 days; disable webhooks that have only failed
for 5 days and tell those failing for 24 hours; report the stored accountIds to Atlassian (each tenant daily,
`addon.privacy.report`). Every job is idempotent, so several processes on one PostgreSQL database may run them side
by side."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Select, and_, delete, or_, select

from addon.delivery.operational import FAILING_ALERT_AFTER
from addon.delivery.outcomes import (
    cancel_abandoned_tests,
    cancel_tenant_deliveries,
    disable_webhook,
    tell_if_failing,
)
from addon.delivery.retry import FAILING_DISABLE_AFTER
from addon.intake import seen_fields
from addon.intake.inbox import prune as prune_jira_inbox
from addon.privacy.report import LOOK_EVERY
from addon.privacy.report import housekeeping_job as report_personal_data
from addon.process.runtime import Runtime
from addon.storage.engine import rowcount, transaction
from addon.storage.models import (
    Attempt,
    Delivery,
    DeliveryStatus,
    Door,
    Event,
    PrivacyCycle,
    ReportedAccount,
    SeenField,
    Tenant,
    TenantState,
    UsedInstallToken,
    Webhook,
    WebhookKind,
    utcnow,
)

log = logging.getLogger(__name__)

ATTEMPT_RETENTION = dt.timedelta(days=30)
UNINSTALLED_RETENTION = dt.timedelta(days=30)
ABANDONED_TEST_AFTER = dt.timedelta(hours=1)


#: Rows one pruning transaction deletes at most: a pass over millions of rows is many short transactions, each
#: holding its row locks and its snapshot for milliseconds and writing its WAL in small pieces.
PRUNE_BATCH = 2_000


def prune_attempts(runtime: Runtime, batch: int = PRUNE_BATCH) -> None:
    """Attempts older than 30 days go; so do finished deliveries and events with nothing left to show. In batches
    of `batch` rows, each batch a transaction of its own, oldest first (indexes on the times: no table scan)."""
    cutoff = utcnow() - ATTEMPT_RETENTION
    attempts = _delete_in_batches(runtime, Attempt, select(Attempt.id).where(Attempt.at < cutoff)
                                  .order_by(Attempt.at).limit(batch), batch)
    finished = (select(Delivery.id).where(Delivery.finished_at < cutoff, Delivery.status != DeliveryStatus.PENDING)
                .order_by(Delivery.finished_at).limit(batch))
    deliveries = _delete_in_batches(runtime, Delivery, finished, batch)
    events = _prune_orphan_events(runtime, cutoff, batch)
    if attempts or deliveries or events:
        log.info("pruned attempts=%s deliveries=%s events=%s", attempts, deliveries, events)


def _delete_in_batches(runtime: Runtime, model: type[Attempt] | type[Delivery], ids: Select, batch: int) -> int:
    """Delete the rows `ids` picks (at most `batch`, every one of them to go), a transaction per batch, until a
    batch comes short."""
    total = 0
    while True:
        with transaction(runtime.sessions) as session:
            deleted = rowcount(session.execute(delete(model).where(model.id.in_(ids.scalar_subquery()))))
        total += deleted
        if deleted < batch:
            return total


def _prune_orphan_events(runtime: Runtime, cutoff: dt.datetime, batch: int) -> int:
    """Events older than `cutoff` with no delivery left, walked oldest first by (created_at, id) in batches: an
    old event that still has a delivery (redelivered lately) is passed over, not read again by every batch."""
    total, after = 0, None
    while True:
        with transaction(runtime.sessions) as session:
            query = select(Event.id, Event.created_at).where(Event.created_at < cutoff)
            if after is not None:
                query = query.where(or_(Event.created_at > after[1],
                                        and_(Event.created_at == after[1], Event.id > after[0])))
            rows = session.execute(query.order_by(Event.created_at, Event.id).limit(batch)).all()
            if not rows:
                return total
            orphans = ~select(Delivery.id).where(Delivery.event_id == Event.id).exists()
            total += rowcount(session.execute(
                delete(Event).where(Event.id.in_([row.id for row in rows]), orphans)))
        if len(rows) < batch:
            return total
        after = (rows[-1].id, rows[-1].created_at)


def cancel_abandoned_test_deliveries(runtime: Runtime) -> None:
    """A test delivery is never due (the request that created it sends it); if that request's process died before
    sending it, it would stay pending for ever. After an hour without a live lease it is cancelled."""
    now = utcnow()
    with transaction(runtime.sessions) as session:
        cancelled = cancel_abandoned_tests(session, now - ABANDONED_TEST_AFTER, now)
    if cancelled:
        log.info("abandoned test deliveries cancelled count=%s", cancelled)


def prune_used_install_tokens(runtime: Runtime) -> None:
    with transaction(runtime.sessions) as session:
        session.execute(delete(UsedInstallToken).where(UsedInstallToken.expires_at < utcnow()))


def forget_uninstalled_tenants(runtime: Runtime) -> None:
    """A tenant uninstalled more than 30 days ago is deleted with everything it owns (cascade)."""
    cutoff = utcnow() - UNINSTALLED_RETENTION
    with transaction(runtime.sessions) as session:
        gone = session.scalars(
            select(Tenant.id).where(Tenant.state == TenantState.UNINSTALLED, Tenant.uninstalled_at < cutoff)
        ).all()
        for tenant_id in gone:
            for model in (Attempt, Delivery, Event, Webhook, ReportedAccount, PrivacyCycle, SeenField):
                session.execute(delete(model).where(model.tenant_id == tenant_id))
            session.execute(delete(Tenant).where(Tenant.id == tenant_id))
            log.info("tenant data deleted 30 days after uninstall tenant=%s", tenant_id)


FORGE_UNINSTALL_AFTER = dt.timedelta(days=7)


def infer_forge_uninstalls(runtime: Runtime) -> None:
    """Forge tells a remote of no uninstall (CONTRACT §9.4): a Forge tenant whose Jira has refused the app's token
    (401/403) for 7 days running, and that has sent no request in that time, is uninstalled (pending deliveries
    cancelled, data kept 30 days); its next valid request revives it."""
    now = utcnow()
    cutoff = now - FORGE_UNINSTALL_AFTER
    with transaction(runtime.sessions) as session:
        gone = session.scalars(
            select(Tenant).where(Tenant.door == Door.FORGE, Tenant.state != TenantState.UNINSTALLED,
                                 Tenant.jira_refused_since < cutoff, Tenant.last_request_at < cutoff)
        ).all()
        for tenant in gone:
            tenant.state = TenantState.UNINSTALLED
            tenant.uninstalled_at = now
            cancel_tenant_deliveries(session, tenant.id)
            log.info("forge tenant inferred uninstalled (Jira refuses its token for 7 days) tenant=%s", tenant.id)


def prune_seen_fields(runtime: Runtime) -> None:
    """Fields no intake sent for 30 days are no longer offered by `GET /api/fields`; their rows go."""
    forgotten = seen_fields.prune(runtime.sessions)
    if forgotten:
        log.info("fields not seen for 30 days forgotten count=%s", forgotten)


def disable_failing_webhooks(runtime: Runtime) -> None:
    """Webhooks with only failed attempts for 5 days are disabled even when no new attempt is due (the operational
    webhook is never disabled: nobody would be told), and those failing for 24 hours are told once
    (`outcomes.tell_if_failing`). Rows are locked, in id order, as recording an attempt locks them, so two
    processes' passes, or a pass and a recording, never tell the same transition twice."""
    now = utcnow()
    told = False
    with transaction(runtime.sessions) as session:
        failing = session.scalars(
            select(Webhook).where(Webhook.enabled.is_(True), Webhook.kind == WebhookKind.WEBHOOK,
                                  Webhook.failing_since < now - FAILING_ALERT_AFTER,
                                  or_(Webhook.failing_since < now - FAILING_DISABLE_AFTER,
                                      Webhook.alert_state.is_(None), Webhook.alert_state == "disabled"))
            .order_by(Webhook.id).with_for_update(key_share=True)
        ).all()
        for webhook in failing:
            if webhook.failing_since is not None and now - webhook.failing_since >= FAILING_DISABLE_AFTER:
                told = disable_webhook(session, webhook, "failing", now) or told
            else:
                told = tell_if_failing(session, webhook, now) or told
    if told:
        runtime.deliveries_committed.notify()


JOBS: tuple[tuple[Callable[[Runtime], None], dt.timedelta], ...] = (
    (prune_attempts, dt.timedelta(hours=1)),
    (prune_used_install_tokens, dt.timedelta(hours=1)),
    (cancel_abandoned_test_deliveries, dt.timedelta(hours=1)),
    (prune_jira_inbox, dt.timedelta(hours=1)),
    (prune_seen_fields, dt.timedelta(hours=6)),
    (forget_uninstalled_tenants, dt.timedelta(hours=6)),
    (infer_forge_uninstalls, dt.timedelta(hours=24)),
    (disable_failing_webhooks, dt.timedelta(minutes=10)),
    (report_personal_data, LOOK_EVERY),
)


def start_housekeeping(runtime: Runtime) -> Callable[[], None]:
    """Start the scheduler; returns its stop function. The first runs come one minute after start."""
    scheduler = BackgroundScheduler(timezone=dt.UTC, job_defaults={"coalesce": True, "max_instances": 1})
    first = utcnow() + dt.timedelta(minutes=1)
    for job, every in JOBS:
        scheduler.add_job(job, "interval", args=[runtime], seconds=every.total_seconds(), next_run_time=first,
                          id=job.__name__)
    scheduler.start()
    return lambda: scheduler.shutdown(wait=False)
