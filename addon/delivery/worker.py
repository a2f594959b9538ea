"""The delivery worker: claims due deliveries under a lease, sends them, records each attempt, schedules retries.

One dispatcher thread claims work and hands it to a bounded pool of sender threads; at most `per_webhook`
deliveries of one webhook are in flight in a process, so one hanging receiver holds up no other webhook.
The dispatcher sleeps until the next delivery is due or until a commit wakes it (an in-process signal, and
LISTEN/NOTIFY on PostgreSQL): no polling interval sits in the latency. A worker killed at any moment loses
nothing: its leased deliveries become due again when the lease ends.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy import Select, func, select, update
from sqlalchemy.orm import Session

from addon.db import transaction
from addon.delivery.retry import FAILING_DISABLE_AFTER, next_attempt_delay
from addon.delivery.sender import SendResult
from addon.delivery.signing import signature_headers
from addon.models import Attempt, Delivery, DeliveryStatus, Event, Tenant, TenantState, Webhook, utcnow
from addon.runtime import Runtime

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 500
MAX_IDLE_SLEEP_S = 5.0
MIN_SLEEP_S = 0.02
ACTIVE_TENANT_STATES = (TenantState.INSTALLED, TenantState.ENABLED)


def lease_duration(runtime: Runtime) -> dt.timedelta:
    """Longer than one attempt may take (OUTGOING_TIMEOUT_S) plus 30 s, as the contract asks."""
    return dt.timedelta(seconds=runtime.settings.outgoing_timeout_s + 60)


@dataclass(frozen=True)
class Job:
    """Everything one attempt needs, read at claim time (so a changed URL applies to pending retries)."""

    delivery_id: int
    tenant_id: int
    webhook_id: int
    message_id: str
    attempt: int
    url: str
    body: bytes
    secrets: tuple[str, ...]


def _live_secrets(webhook: Webhook, runtime: Runtime, now: dt.datetime) -> tuple[str, ...]:
    secrets = [runtime.box.open(webhook.secret)]
    if webhook.previous_secret and webhook.previous_secret_expires_at and webhook.previous_secret_expires_at > now:
        secrets.append(runtime.box.open(webhook.previous_secret))
    return tuple(secrets)


def _sendable(query: Select, now: dt.datetime, busy_webhooks: set[int] | None) -> Select:
    """Pending, not leased, of an enabled webhook of an active tenant, and not of a webhook at its bound."""
    query = (
        query.join(Webhook, Webhook.id == Delivery.webhook_id)
        .join(Tenant, Tenant.id == Delivery.tenant_id)
        .where(Delivery.status == DeliveryStatus.PENDING,
               (Delivery.lease_until.is_(None)) | (Delivery.lease_until < now),
               Webhook.enabled.is_(True),
               Tenant.state.in_(ACTIVE_TENANT_STATES))
    )
    if busy_webhooks:
        query = query.where(Delivery.webhook_id.not_in(busy_webhooks))
    return query


def claim(runtime: Runtime, limit: int, busy_webhooks: set[int] | None = None,
          delivery_id: int | None = None) -> list[Job]:
    """Lease up to `limit` due deliveries (or exactly `delivery_id`) and read what sending them needs."""
    now = utcnow()
    with transaction(runtime.sessions) as session:
        if delivery_id is not None:  # a test delivery: sent even to a disabled webhook
            query = (select(Delivery.id).join(Webhook, Webhook.id == Delivery.webhook_id)
                     .where(Delivery.id == delivery_id, Delivery.status == DeliveryStatus.PENDING,
                            Webhook.deleted_at.is_(None)))
        else:
            query = _sendable(select(Delivery.id), now, busy_webhooks).where(Delivery.next_attempt_at <= now)
        query = query.order_by(Delivery.next_attempt_at).limit(limit)
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(of=Delivery, skip_locked=True)
        ids = list(session.scalars(query))
        if not ids:
            return []
        session.execute(update(Delivery).where(Delivery.id.in_(ids)).values(lease_until=now + lease_duration(runtime)))
        rows = session.execute(
            select(Delivery, Webhook, Event.body)
            .join(Webhook, Webhook.id == Delivery.webhook_id)
            .join(Event, Event.id == Delivery.event_id)
            .where(Delivery.id.in_(ids))
        ).all()
        return [
            Job(delivery_id=d.id, tenant_id=d.tenant_id, webhook_id=w.id, message_id=d.message_id,
                attempt=d.attempt_count + 1, url=w.url, body=body.encode("utf-8"),
                secrets=_live_secrets(w, runtime, now))
            for d, w, body in rows
        ]


def send(runtime: Runtime, job: Job) -> SendResult:
    headers = signature_headers(job.message_id, int(time.time()), job.body, list(job.secrets))
    return runtime.get_sender().send(job.url, job.body, headers)


def _cancel_pending(session: Session, webhook_id: int, now: dt.datetime) -> None:
    session.execute(
        update(Delivery)
        .where(Delivery.webhook_id == webhook_id, Delivery.status == DeliveryStatus.PENDING)
        .values(status=DeliveryStatus.CANCELLED, finished_at=now, lease_until=None)
    )


def _disable(session: Session, webhook: Webhook, reason: str, now: dt.datetime) -> None:
    webhook.enabled = False
    webhook.disabled_reason = reason
    _cancel_pending(session, webhook.id, now)
    log.warning("webhook disabled tenant=%s webhook=%s reason=%s", webhook.tenant_id, webhook.id, reason)


def record(runtime: Runtime, job: Job, result: SendResult, *, retry: bool = True) -> int:
    """Store the attempt, update the webhook's status, and schedule the next attempt or finish. Returns the
    attempt id."""
    now = utcnow()
    delay = next_attempt_delay(job.attempt, result) if retry else None
    with transaction(runtime.sessions) as session:
        attempt = Attempt(
            tenant_id=job.tenant_id, delivery_id=job.delivery_id, webhook_id=job.webhook_id, attempt=job.attempt,
            at=now, status="OK" if result.ok else "ERROR", http_code=result.http_code,
            duration_ms=result.duration_ms, error=(result.error or None) and result.error[:MAX_ERROR_CHARS],
            response_body_start=result.response_body_start,
        )
        session.add(attempt)
        delivery = session.get(Delivery, job.delivery_id)
        if delivery is not None:
            delivery.attempt_count = job.attempt
            delivery.lease_until = None
            if delivery.status == DeliveryStatus.PENDING:
                if result.ok:
                    delivery.status, delivery.finished_at = DeliveryStatus.SUCCEEDED, now
                elif delay is None:
                    delivery.status, delivery.finished_at = DeliveryStatus.FAILED, now
                else:
                    delivery.next_attempt_at = now + dt.timedelta(seconds=delay)
        webhook = session.get(Webhook, job.webhook_id)
        if webhook is not None:
            webhook.last_execution_at = now
            webhook.last_status = attempt.status
            webhook.last_status_code = result.http_code
            webhook.last_error = attempt.error
            if result.ok:
                webhook.failing_since = None
            else:
                webhook.failing_since = webhook.failing_since or now
                if webhook.enabled and result.gone:
                    _disable(session, webhook, "gone", now)
                elif webhook.enabled and now - webhook.failing_since >= FAILING_DISABLE_AFTER:
                    _disable(session, webhook, "failing", now)
        session.flush()
        attempt_id = attempt.id
    log.info("delivery attempt tenant=%s webhook=%s delivery=%s attempt=%s status=%s code=%s ms=%s%s",
             job.tenant_id, job.webhook_id, job.delivery_id, job.attempt, attempt.status, result.http_code,
             result.duration_ms, f" retry_in={delay:.1f}s" if delay is not None and not result.ok else "")
    return attempt_id


def send_now(runtime: Runtime, delivery_id: int) -> int | None:
    """Send one delivery at once, in the caller's thread, without retries (the admin page's test delivery)."""
    jobs = claim(runtime, 1, delivery_id=delivery_id)
    if not jobs:
        return None
    return record(runtime, jobs[0], send(runtime, jobs[0]), retry=False)


def release(runtime: Runtime, delivery_ids: list[int]) -> None:
    """Give back leases this process took but will not use now."""
    with transaction(runtime.sessions) as session:
        session.execute(update(Delivery).where(Delivery.id.in_(delivery_ids)).values(lease_until=None))


def next_due_in(runtime: Runtime, busy_webhooks: set[int]) -> float | None:
    """Seconds until the earliest sendable delivery is due or a lease ends; None when there is none."""
    now = utcnow()
    with runtime.sessions() as session:
        due = session.scalar(_sendable(select(func.min(Delivery.next_attempt_at)), now, busy_webhooks))
        lease_end = session.scalar(
            select(func.min(Delivery.lease_until))
            .where(Delivery.status == DeliveryStatus.PENDING, Delivery.lease_until >= now)
        )
    candidates = [t for t in (due, lease_end) if t is not None]
    if not candidates:
        return None
    return max(0.0, (min(candidates) - now).total_seconds())


class DeliveryWorker:
    """Dispatcher thread + bounded sender pool; `start()` then `stop()`."""

    def __init__(self, runtime: Runtime, concurrency: int = 16, per_webhook: int = 4) -> None:
        self.runtime = runtime
        self.concurrency = max(1, concurrency)
        self.per_webhook = max(1, per_webhook)
        self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="delivery")
        self._in_flight: Counter[int] = Counter()
        self._in_flight_total = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="delivery-dispatcher", daemon=True)

    def start(self) -> DeliveryWorker:
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stopping.set()
        self.runtime.deliveries_committed.notify()
        self._thread.join(timeout)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _busy_webhooks(self) -> set[int]:
        with self._lock:
            return {w for w, n in self._in_flight.items() if n >= self.per_webhook}

    def _free_slots(self) -> int:
        with self._lock:
            return self.concurrency - self._in_flight_total

    def _run(self) -> None:
        signal = self.runtime.deliveries_committed
        while not self._stopping.is_set():
            generation = signal.generation
            try:
                claimed = self._claim_batch()
            except Exception:  # noqa: BLE001 - a database hiccup must not kill the worker
                log.exception("claiming deliveries failed; retrying")
                self._stopping.wait(1.0)
                continue
            if claimed:
                continue
            if self._free_slots() <= 0:
                signal.wait(MAX_IDLE_SLEEP_S, seen_generation=generation)  # a finished send wakes us
                continue
            try:
                due_in = next_due_in(self.runtime, self._busy_webhooks())
            except Exception:  # noqa: BLE001
                log.exception("reading the next due delivery failed")
                due_in = 1.0
            sleep = MAX_IDLE_SLEEP_S if due_in is None else min(due_in, MAX_IDLE_SLEEP_S)
            # Something due that we could not claim (another process holds it, or it just became due):
            # wait a moment for a wake-up rather than spin.
            signal.wait(max(sleep, MIN_SLEEP_S), seen_generation=generation)

    def _claim_batch(self) -> int:
        slots = self._free_slots()
        if slots <= 0:
            return 0
        jobs = claim(self.runtime, slots, self._busy_webhooks())
        admitted, surplus = 0, []
        for job in jobs:
            with self._lock:
                if self._in_flight[job.webhook_id] >= self.per_webhook:
                    surplus.append(job.delivery_id)
                    continue
                self._in_flight[job.webhook_id] += 1
                self._in_flight_total += 1
            admitted += 1
            self._pool.submit(self._process, job)
        if surplus:
            release(self.runtime, surplus)
        return admitted

    def _process(self, job: Job) -> None:
        try:
            record(self.runtime, job, send(self.runtime, job))
        except Exception:  # noqa: BLE001 - the lease brings it back
            log.exception("delivery failed unexpectedly tenant=%s delivery=%s", job.tenant_id, job.delivery_id)
        finally:
            with self._lock:
                self._in_flight[job.webhook_id] -= 1
                if self._in_flight[job.webhook_id] <= 0:
                    del self._in_flight[job.webhook_id]
                self._in_flight_total -= 1
            self.runtime.deliveries_committed.notify()
