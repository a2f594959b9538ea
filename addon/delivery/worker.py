"""The delivery worker: claims due deliveries under a lease, sends them, records each attempt, schedules retries.

One dispatcher thread claims work and hands each batch to the process's `Sender`, whose event loop keeps
up to `concurrency` attempts in flight (the slots); at most `per_webhook` deliveries of one webhook (a quarter)
and `per_tenant` of one tenant (half) are in flight in a process, so one hanging receiver holds up no other
webhook (and once its attempts went unanswered, only one at a time until it answers again), and one tenant's
backlog of slow receivers leaves half the slots free for the others' deliveries. The sender only sends: one recorder
thread writes the outcomes of all the attempts that finished meanwhile in one transaction (`recording.record_many`), so
the database sees one short write per batch rather than one per delivery, and sending never queues for the
database. A slot is free again as soon as its send ends, so sending goes on while outcomes are written; at
most `MAX_UNRECORDED` outcomes wait to be written before the dispatcher stops claiming (a delivery stays
leased until its outcome is committed).
The dispatcher sleeps until the next delivery is due or until a commit wakes it (an in-process signal, and
LISTEN/NOTIFY on PostgreSQL): no polling interval sits in the latency. A worker killed at any moment loses
nothing: its leased deliveries become due again when the lease ends.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import (
    Select,
    Update,
    bindparam,
    func,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from addon.db import transaction
from addon.delivery.recording import record, record_many
from addon.delivery.sender import SendResult
from addon.delivery.signing import signature_headers
from addon.models import (
    Delivery,
    DeliveryStatus,
    Event,
    Tenant,
    TenantState,
    UTCDateTime,
    Webhook,
    utcnow,
)
from addon.runtime import Runtime

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_IDLE_SLEEP_S = 5.0
MIN_SLEEP_S = 0.02
ACTIVE_TENANT_STATES = (TenantState.INSTALLED, TenantState.ENABLED)


def lease_duration(runtime: Runtime) -> dt.timedelta:
    """Longer than one attempt may take: OUTGOING_TIMEOUT_S + 60 s (the contract asks for more than + 30 s)."""
    return dt.timedelta(seconds=runtime.settings.outgoing_timeout_s + 60)


@dataclass(frozen=True)
class Job:
    """Everything one attempt needs, read at claim time (so a changed URL applies to pending retries).
    `schedule_start` is when the delivery's retry schedule began (the event's acceptance, or its redelivery):
    every attempt's offset is measured from it."""

    delivery_id: int
    tenant_id: int
    webhook_id: int
    message_id: str
    attempt: int
    url: str
    body: bytes
    secrets: tuple[str, ...]
    schedule_start: dt.datetime


def _live_secrets(secret: str, previous_secret: str | None, previous_expires_at: dt.datetime | None,
                  runtime: Runtime, now: dt.datetime) -> tuple[str, ...]:
    secrets = [runtime.box.open(secret)]
    if previous_secret and previous_expires_at and previous_expires_at > now:
        secrets.append(runtime.box.open(previous_secret))
    return tuple(secrets)


#: The planner setting of `_index_order_only`, per transaction there and per session on the dispatcher's connection.
_INDEX_ORDER_ONLY = "enable_bitmapscan = off"


def _index_order_only(connection: Connection) -> None:
    """On PostgreSQL, keep this transaction's plans from reading a webhook's deliveries through a bitmap.

    Each webhook's pick wants the first rows of the index `(webhook_id, status, next_attempt_at)` in its order.
    Without statistics on a fresh burst (before autovacuum analyzes it) the planner reckons a handful of rows per
    webhook and may prefer a bitmap scan of all of them plus a sort: 310 ms per claim with 1,000,000 waiting,
    against 1.3 ms. Bitmap scans never serve the claim. (Turning sorts off instead, as the claim in plain due
    order once did, prices the batch's own small sort so high that PostgreSQL compiles the statement with JIT
    and picks its joins at random: over a second.)
    """
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SET LOCAL {_INDEX_ORDER_ONLY}")


_deliveries = Delivery.__table__
_webhooks = Webhook.__table__
_tenants = Tenant.__table__
_events = Event.__table__


#: Which of the claim's exclusion lists a statement takes: (busy webhooks, busy tenants).
Busy = tuple[bool, bool]
_BUSY_VARIANTS: tuple[Busy, ...] = ((False, False), (True, False), (False, True), (True, True))


def _candidate_webhooks(query: Select, *, busy: Busy) -> Select:
    """`query` over the webhooks whose deliveries the claim may take: enabled, of an active tenant, and neither
    the webhook nor its tenant at its in-flight bound (`busy` and `busy_tenants`, expanding bound parameters)."""
    query = (query.select_from(_webhooks.join(_tenants, _tenants.c.id == _webhooks.c.tenant_id))
             .where(_webhooks.c.enabled.is_(True), _tenants.c.state.in_(ACTIVE_TENANT_STATES)))
    if busy[0]:
        query = query.where(_webhooks.c.id.not_in(bindparam("busy", expanding=True)))
    if busy[1]:
        query = query.where(_webhooks.c.tenant_id.not_in(bindparam("busy_tenants", expanding=True)))
    return query


def _tenant_rank(next_attempt_at, delivery_id):  # type: ignore[no-untyped-def]
    """A candidate's place among its tenant's candidates, oldest first: the claim keeps the first `per_tenant` of
    each tenant. It ranks only the candidates (at most `per_webhook` per webhook), never a tenant's whole backlog."""
    return func.row_number().over(partition_by=_webhooks.c.tenant_id,
                                  order_by=(next_attempt_at, delivery_id)).label("tenant_rank")


def _oldest_sendable(deliveries, *columns, due: bool) -> Select:  # type: ignore[no-untyped-def]
    """`columns` of one webhook's deliveries the claim could take, oldest first: pending and not leased (and due,
    with `due`). Correlated to the enclosing query's webhook, it reads the per-webhook index
    `(webhook_id, status, next_attempt_at)`: what another webhook has waiting costs nothing, however much it is
    (a hanging receiver's deliveries are the oldest, and a claim in plain due order walked over all of them)."""
    now = bindparam("now", type_=UTCDateTime())
    query = (select(*columns)
             .where(deliveries.c.webhook_id == _webhooks.c.id, deliveries.c.status == DeliveryStatus.PENDING,
                    or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until < now))
             .order_by(deliveries.c.next_attempt_at).correlate(_webhooks))
    if due:
        return query.where(deliveries.c.next_attempt_at <= now)
    return query.where(deliveries.c.next_attempt_at.is_not(None))


def _due_ids(busy: Busy) -> Select:
    """SQLite: the claim's choice, the oldest due deliveries of each candidate webhook (at most `per_webhook`
    each), of those at most `per_tenant` of each tenant, then the oldest `limit`. SQLite has no LATERAL; it runs
    the correlated `IN` once per webhook. Ties (an event's deliveries are due at the same moment) go by id, i.e. by
    event: ordered by time alone, a batch could be one webhook's share and the next's, most of it then surplus to
    the dispatcher's bound."""
    inner = _deliveries.alias("candidate")
    oldest = _oldest_sendable(inner, inner.c.id, due=True).limit(bindparam("per_webhook"))
    ranked = (_candidate_webhooks(select(_deliveries.c.id, _deliveries.c.next_attempt_at,
                                         _tenant_rank(_deliveries.c.next_attempt_at, _deliveries.c.id)), busy=busy)
              .join(_deliveries, _deliveries.c.id.in_(oldest)).subquery("ranked"))
    return (select(ranked.c.id).where(ranked.c.tenant_rank <= bindparam("per_tenant"))
            .order_by(ranked.c.next_attempt_at, ranked.c.id).limit(bindparam("limit")))


_JOB_COLUMNS = (_deliveries.c.id, _deliveries.c.tenant_id, _deliveries.c.webhook_id, _deliveries.c.message_id,
                _deliveries.c.attempt_count, _deliveries.c.next_attempt_at, _deliveries.c.schedule_started_at,
                _webhooks.c.url, _webhooks.c.secret, _webhooks.c.previous_secret,
                _webhooks.c.previous_secret_expires_at, _events.c.body)
_DUE_IDS = {busy: _due_ids(busy) for busy in _BUSY_VARIANTS}
_LEASE = (update(_deliveries).where(_deliveries.c.id.in_(bindparam("ids", expanding=True)))
          .values(lease_until=bindparam("lease", type_=UTCDateTime())))
_JOB_ROWS = (select(*_JOB_COLUMNS)
             .select_from(_deliveries.join(_webhooks, _webhooks.c.id == _deliveries.c.webhook_id)
                          .join(_events, _events.c.id == _deliveries.c.event_id))
             .where(_deliveries.c.id.in_(bindparam("ids", expanding=True))))


def _claim_in_one_statement(busy: Busy) -> Update:
    """PostgreSQL: choose (a LATERAL pick per candidate webhook, FOR UPDATE SKIP LOCKED, then at most `per_tenant`
    of each tenant), lease and read the jobs in one round trip (under `_index_order_only`). Rows a webhook's pick
    locked beyond the batch stay locked only until this commit."""
    oldest = (_oldest_sendable(_deliveries, _deliveries.c.id, _deliveries.c.next_attempt_at, due=True)
              .limit(bindparam("per_webhook")).with_for_update(skip_locked=True).lateral("candidate"))
    ranked = (_candidate_webhooks(select(oldest.c.id, oldest.c.next_attempt_at,
                                         _tenant_rank(oldest.c.next_attempt_at, oldest.c.id)), busy=busy)
              .join(oldest, true()).subquery("ranked"))
    picked = (select(ranked.c.id).where(ranked.c.tenant_rank <= bindparam("per_tenant"))
              .order_by(ranked.c.next_attempt_at, ranked.c.id).limit(bindparam("limit")).subquery("picked"))
    return (update(_deliveries)
            .where(_deliveries.c.id == picked.c.id, _webhooks.c.id == _deliveries.c.webhook_id,
                   _events.c.id == _deliveries.c.event_id)
            .values(lease_until=bindparam("lease", type_=UTCDateTime()))
            .returning(*_JOB_COLUMNS))


_CLAIM_PG = {busy: _claim_in_one_statement(busy) for busy in _BUSY_VARIANTS}


class DispatcherConnection:
    """On PostgreSQL, the dispatcher's own connection for its claims and `next_due_in` reads: in autocommit, with
    the planner guard (`_index_order_only`) set once for its session, and kept between claims. A claim is then one
    round trip (its statement is its own transaction), where a pooled connection took five: the pool's pre-ping,
    BEGIN, the guard, the statement and COMMIT. Dropped after an error (the next claim opens a fresh one) and
    never handed back to the pool, which would hand its session setting to others. On SQLite: None."""

    def __init__(self, runtime: Runtime) -> None:
        self._engine = runtime.engine
        self._connection: Connection | None = None

    def get(self) -> Connection | None:
        if self._engine.dialect.name != "postgresql":
            return None
        if self._connection is None:
            connection = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            try:
                connection.exec_driver_sql(f"SET {_INDEX_ORDER_ONLY}")
            except BaseException:
                self._discard(connection)
                raise
            self._connection = connection
        return self._connection

    def run(self, work: Callable[[Connection | None], T]) -> T:
        """`work` on this connection, and once more on a fresh one when the kept one turns out to be gone (closed
        while idle by the server, a proxy or a restart), as the pool's pre-ping would have found before lending
        it: no logged failure and no second's pause for that."""
        try:
            return work(self.get())
        except DBAPIError as err:
            if not err.connection_invalidated:
                raise
        self.drop()
        return work(self.get())

    def drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            self._discard(connection)

    @staticmethod
    def _discard(connection: Connection) -> None:
        try:
            connection.invalidate()  # closes the DBAPI connection instead of pooling it
            connection.close()
        except Exception:  # noqa: BLE001 - a lost connection may fail to close; it is gone either way
            log.debug("closing the dispatcher's connection failed", exc_info=True)


def _busy_params(params: dict, busy_webhooks: set[int] | None, busy_tenants: set[int] | None) -> Busy:
    busy = (bool(busy_webhooks), bool(busy_tenants))
    if busy[0]:
        params["busy"] = sorted(busy_webhooks or ())
    if busy[1]:
        params["busy_tenants"] = sorted(busy_tenants or ())
    return busy


def claim(runtime: Runtime, limit: int, busy_webhooks: set[int] | None = None,
          delivery_id: int | None = None, per_webhook: int | None = None,
          connection: Connection | None = None, *, per_tenant: int | None = None,
          busy_tenants: set[int] | None = None) -> list[Job]:
    """Lease up to `limit` due deliveries, oldest first, at most `per_webhook` of one webhook and `per_tenant` of
    one tenant, none of `busy_webhooks` or `busy_tenants` (or exactly `delivery_id`), and read what sending them
    needs. `connection`: the dispatcher's own (`DispatcherConnection`) on PostgreSQL; otherwise a pooled one in a
    transaction of its own."""
    if delivery_id is not None:
        return _claim_one(runtime, delivery_id)
    now = utcnow()
    params: dict = {"now": now, "limit": limit, "lease": now + lease_duration(runtime),
                    "per_webhook": min(limit, per_webhook or limit), "per_tenant": min(limit, per_tenant or limit)}
    busy = _busy_params(params, busy_webhooks, busy_tenants)
    if connection is not None:  # autocommit, guard set: the statement alone
        rows = connection.execute(_CLAIM_PG[busy], params).all()
    else:
        rows = _claim_in_a_transaction(runtime, busy, params)
    rows.sort(key=lambda r: (r.next_attempt_at, r.id))
    return [_job(runtime, r, now) for r in rows]


def _claim_in_a_transaction(runtime: Runtime, busy: Busy, params: dict) -> list:
    """The claim's rows on a pooled connection. A Core transaction, not a Session: the dispatcher claims for every
    event at a low rate, and the Session's own bookkeeping cost more than its three statements."""
    with runtime.engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            _index_order_only(connection)
            return list(connection.execute(_CLAIM_PG[busy], params).all())
        # SQLite: BEGIN IMMEDIATE already keeps other writers out; three statements cost no round trips
        ids = list(connection.execute(_DUE_IDS[busy], params).scalars())
        if not ids:
            return []
        connection.execute(_LEASE, {"ids": ids, "lease": params["lease"]})
        return list(connection.execute(_JOB_ROWS, {"ids": ids}).all())


def _job(runtime: Runtime, r, now: dt.datetime) -> Job:  # type: ignore[no-untyped-def]
    return Job(delivery_id=r.id, tenant_id=r.tenant_id, webhook_id=r.webhook_id, message_id=r.message_id,
               attempt=r.attempt_count + 1, url=r.url, body=r.body.encode("utf-8"),
               secrets=_live_secrets(r.secret, r.previous_secret, r.previous_secret_expires_at, runtime, now),
               schedule_start=r.schedule_started_at)


def _claim_one(runtime: Runtime, delivery_id: int) -> list[Job]:
    """A test delivery: exactly this one, even for a disabled webhook, unless another holds its lease."""
    now = utcnow()
    with transaction(runtime.sessions) as session:
        query = (select(Delivery.id).join(Webhook, Webhook.id == Delivery.webhook_id)
                 .where(Delivery.id == delivery_id, Delivery.status == DeliveryStatus.PENDING,
                        or_(Delivery.lease_until.is_(None), Delivery.lease_until < now),
                        Webhook.deleted_at.is_(None)))
        if session.get_bind().dialect.name == "postgresql":
            # Wait for a claim that holds the row (a short transaction), then look at its lease again: READ
            # COMMITTED re-checks the WHERE on the row as that claim left it. (SQLite: BEGIN IMMEDIATE.)
            query = query.with_for_update(of=Delivery)
        ids = list(session.scalars(query))
        if not ids:
            return []
        connection = session.connection()
        connection.execute(_LEASE, {"ids": ids, "lease": now + lease_duration(runtime)})
        rows = connection.execute(_JOB_ROWS, {"ids": ids}).all()
    return [_job(runtime, r, now) for r in rows]


def attempt_headers(job: Job) -> dict[str, str]:
    """The signature headers of an attempt of `job` made now; ValueError for a malformed secret."""
    return signature_headers(job.message_id, int(time.time()), job.body, list(job.secrets))


def send(runtime: Runtime, job: Job) -> SendResult:
    return runtime.get_sender().send(job.url, job.body, attempt_headers(job))


def send_now(runtime: Runtime, delivery_id: int) -> int | None:
    """Send one delivery at once, in the caller's thread, without retries (the admin page's test delivery)."""
    jobs = claim(runtime, 1, delivery_id=delivery_id)
    if not jobs:
        return None
    return record(runtime, jobs[0], send(runtime, jobs[0]), retry=False)


def release(runtime: Runtime, delivery_ids: list[int]) -> None:
    """Give back leases this process took but will not use now."""
    with runtime.engine.begin() as connection:
        connection.execute(update(_deliveries).where(_deliveries.c.id.in_(delivery_ids)).values(lease_until=None))


def _next_due(busy: Busy) -> Select:
    """The earliest `next_attempt_at` of a delivery the claim could take, due or not: the earliest of each
    candidate webhook's (see `_oldest_sendable`)."""
    earliest = _oldest_sendable(_deliveries, _deliveries.c.next_attempt_at, due=False).limit(1).scalar_subquery()
    return _candidate_webhooks(select(func.min(earliest)), busy=busy)


_NEXT_DUE = {busy: _next_due(busy) for busy in _BUSY_VARIANTS}


def next_due_in(runtime: Runtime, busy_webhooks: set[int], connection: Connection | None = None,
                busy_tenants: set[int] | None = None) -> float | None:
    """Seconds until the earliest sendable delivery is due; None when there is none. `connection` as in `claim`.

    One ordered index read per candidate webhook (`ORDER BY next_attempt_at LIMIT 1`), not an aggregate over
    every pending row: its cost does not grow with the backlog. A lease that ends (its holder died) is noticed by
    the dispatcher's next wake-up, at most `MAX_IDLE_SLEEP_S` later.
    """
    now = utcnow()
    params: dict = {"now": now}
    busy = _busy_params(params, busy_webhooks, busy_tenants)
    if connection is not None:
        due = connection.execute(_NEXT_DUE[busy], params).scalar()
    else:
        with runtime.engine.connect() as pooled:
            _index_order_only(pooled)
            due = pooled.execute(_NEXT_DUE[busy], params).scalar()
    if due is None:
        return None
    return max(0.0, (due - now).total_seconds())


#: Longest the dispatcher waits for more free slots before claiming again (see `_gather_slots`).
BATCH_WAIT_S = 0.005
#: Longest the recorder waits for more outcomes before writing a batch (see `_gather_outcomes`).
RECORD_WAIT_S = 0.01
#: Most attempt outcomes written in one transaction.
MAX_RECORD_BATCH = 256
#: Most outcomes waiting for the recorder (per concurrency slot) before the dispatcher stops claiming.
MAX_UNRECORDED_PER_SLOT = 4
#: Tries of one batch's transaction before its outcomes are written one by one.
RECORD_TRIES = 3


#: Deliveries one worker process sends at once (`addon worker --concurrency`). A slot is an attempt on the
#: sender's event loop, not a thread, so slots are cheap; claims and recordings come in batches of half the
#: slots, and bigger batches cost less per delivery: 64 sends ~6 % more than 32 (docs/benchmarks.md).
DEFAULT_CONCURRENCY = 64


def per_webhook_bound(concurrency: int) -> int:
    """Most deliveries of one webhook in flight in a process: a quarter of the slots, so that a hanging receiver
    holds up at most a quarter of the sending."""
    return max(1, concurrency // 4)


def per_tenant_bound(concurrency: int) -> int:
    """Most deliveries of one tenant in flight in a process: half the slots, always. The contract allows more to a
    tenant while no other has due deliveries, but a slot lent to it then is not free when another tenant's
    delivery arrives: that one would wait for one of the first tenant's sends to end (a slow receiver's whole
    timeout). Keeping the other half free is what lets it go out at the next claim."""
    return max(1, concurrency // 2)


class DeliveryWorker:
    """Dispatcher thread + the sender's loop (at most `concurrency` attempts) + recorder thread; `start()` then
    `stop()`."""

    def __init__(self, runtime: Runtime, concurrency: int = DEFAULT_CONCURRENCY,
                 per_webhook: int | None = None) -> None:
        self.runtime = runtime
        self.concurrency = max(1, concurrency)
        self.per_webhook = max(1, per_webhook if per_webhook is not None else per_webhook_bound(self.concurrency))
        self.per_tenant = per_tenant_bound(self.concurrency)
        self._in_flight: Counter[int] = Counter()
        self._in_flight_tenants: Counter[int] = Counter()
        self._in_flight_total = 0
        self._unanswered: set[int] = set()  # webhooks whose last attempt got no answer (see `_bound`)
        self._lock = threading.Lock()
        self._all_sent = threading.Condition(self._lock)  # notified when nothing is in flight
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="delivery-dispatcher", daemon=True)
        self._claims = DispatcherConnection(runtime)  # the dispatcher thread's alone
        self._outcomes: list[tuple[Job, SendResult]] = []
        self._outcomes_ready = threading.Condition()
        # Claims and recordings come in batches of half the slots (see `_gather_slots`, `_gather_outcomes`).
        self._half_slots = max(1, self.concurrency // 2)
        # Whether the last claim may have left claimable deliveries behind (see `_claim_batch`), and the webhooks
        # it left out because they were at their bound: their due deliveries become claimable when one of their
        # sends ends.
        self._more_due = True
        self._held_back: frozenset[int] = frozenset()
        self._held_back_tenants: frozenset[int] = frozenset()  # likewise, the tenants at their bound
        # When the earliest delivery not yet due becomes due (monotonic; None: none waits), as `next_due_in` last
        # read it; not read yet while `_next_due_known` is False.
        self._next_due_at: float | None = None
        self._next_due_known = False
        self._senders_done = False
        self._recorder = threading.Thread(target=self._record_loop, name="delivery-recorder", daemon=True)

    def start(self) -> DeliveryWorker:
        self._recorder.start()
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stopping.set()
        self.runtime.deliveries_committed.notify_here()
        self._thread.join(timeout)
        with self._all_sent:  # the attempts already started end within the sender's timeout
            self._all_sent.wait_for(lambda: self._in_flight_total == 0,
                                    self.runtime.settings.outgoing_timeout_s + timeout)
        with self._outcomes_ready:  # the sends that finished are recorded before the recorder ends
            self._senders_done = True
            self._outcomes_ready.notify_all()
        self._recorder.join(timeout)

    def _bound(self, webhook_id: int) -> int:
        """Most attempts of a webhook in flight (with `_lock` held). A webhook whose last attempt got no answer (a
        timeout, a refused or reset connection) gets one at a time until it answers again: a dead or hanging
        receiver then holds one slot and costs one new connection per timeout, not its whole share of both."""
        return 1 if webhook_id in self._unanswered else self.per_webhook

    def _busy_webhooks(self) -> set[int]:
        with self._lock:
            return {w for w, n in self._in_flight.items() if n >= self._bound(w)}

    def _busy_tenants(self) -> set[int]:
        with self._lock:
            return {t for t, n in self._in_flight_tenants.items() if n >= self.per_tenant}

    def _free_slots(self) -> int:
        with self._outcomes_ready:
            if len(self._outcomes) >= self.concurrency * MAX_UNRECORDED_PER_SLOT:
                return 0  # the recorder is behind (a slow database): wait for it
        with self._lock:
            return self.concurrency - self._in_flight_total

    def _run(self) -> None:
        try:
            self._dispatch()
        finally:
            self._claims.drop()

    def _dispatch(self) -> None:
        signal = self.runtime.deliveries_committed
        while not self._stopping.is_set():
            generation = signal.generation
            try:
                claimed = self._claim_batch()
            except Exception:  # noqa: BLE001 - a database hiccup must not kill the worker
                log.exception("claiming deliveries failed; retrying")
                self._claims.drop()
                self._stopping.wait(1.0)
                continue
            if claimed and self._more_due:
                self._gather_slots()
                continue
            # Nothing (or everything that was due) claimed: claiming again at once would find nothing. Wait for
            # the next commit's wake-up, or the next scheduled attempt.
            if claimed and self._next_due_known:
                # The next due time read before still holds: what was due is claimed, and a retry this process
                # schedules wakes it (`_record_loop`). Reading it again per event cost a query each time.
                due_in = None if self._next_due_at is None else max(0.0, self._next_due_at - time.monotonic())
            else:
                if self._free_slots() <= 0:
                    signal.wait(MAX_IDLE_SLEEP_S, seen_generation=generation)  # a finished send wakes us
                    continue
                try:
                    due_in = self._claims.run(functools.partial(next_due_in, self.runtime, self._busy_webhooks(),
                                                                busy_tenants=self._busy_tenants()))
                except Exception:  # noqa: BLE001
                    log.exception("reading the next due delivery failed")
                    self._claims.drop()
                    due_in = 1.0
                self._next_due_at = None if due_in is None else time.monotonic() + due_in
                self._next_due_known = True
            sleep = MAX_IDLE_SLEEP_S if due_in is None else min(due_in, MAX_IDLE_SLEEP_S)
            # Something due that we could not claim (another process holds it, or it just became due):
            # wait a moment for a wake-up rather than spin.
            signal.wait(max(sleep, MIN_SLEEP_S), seen_generation=generation)

    def _gather_slots(self) -> None:
        """After a claim, let sends finish for a moment (at most `BATCH_WAIT_S`) until half the slots are free,
        so that under load one claim fetches many deliveries rather than one claim per finished send: a claim
        costs about the same for 1 row as for 16."""
        signal = self.runtime.deliveries_committed
        deadline = time.monotonic() + BATCH_WAIT_S
        while not self._stopping.is_set():
            generation = signal.generation
            with self._lock:
                if self.concurrency - self._in_flight_total >= self._half_slots or self._in_flight_total == 0:
                    return
            left = deadline - time.monotonic()
            if left <= 0:
                return
            signal.wait(left, seen_generation=generation)

    def _claim_batch(self) -> int:
        slots = self._free_slots()
        if slots <= 0:
            return 0
        busy, busy_tenants = self._busy_webhooks(), self._busy_tenants()
        jobs = self._claims.run(lambda connection: claim(
            self.runtime, slots, busy, per_webhook=self.per_webhook, connection=connection,
            per_tenant=self.per_tenant, busy_tenants=busy_tenants))
        claimed_per_webhook = Counter(job.webhook_id for job in jobs)
        claimed_per_tenant = Counter(job.tenant_id for job in jobs)
        # Less than asked, from webhooks and tenants that were not cut to their bound by the claim: nothing else
        # was due but the deliveries of those left out (`busy`, `busy_tenants`). Then only a finished send of one
        # of those wakes the dispatcher (see `_release_slots`), which at a low rate saved one empty claim and one
        # `next_due_in` per finished send, also while a hanging receiver's webhook stays at its bound.
        self._more_due = (len(jobs) >= slots or any(n >= self.per_webhook for n in claimed_per_webhook.values())
                          or any(n >= self.per_tenant for n in claimed_per_tenant.values()))
        self._held_back, self._held_back_tenants = frozenset(busy), frozenset(busy_tenants)
        admitted, surplus = [], []
        with self._lock:
            for job in jobs:
                if (self._in_flight[job.webhook_id] >= self._bound(job.webhook_id)
                        or self._in_flight_tenants[job.tenant_id] >= self.per_tenant):
                    surplus.append(job.delivery_id)
                    continue
                self._in_flight[job.webhook_id] += 1
                self._in_flight_tenants[job.tenant_id] += 1
                self._in_flight_total += 1
                admitted.append(job)
        if surplus:
            self._more_due = True
            release(self.runtime, surplus)
        self._start_sending(admitted)
        return len(admitted)

    def _start_sending(self, jobs: list[Job]) -> None:
        """Sign each job and hand the batch to the sender's loop in one call."""
        attempts, signed, unsendable = [], [], []
        for job in jobs:
            try:
                headers = attempt_headers(job)
            except Exception:  # noqa: BLE001 - the lease brings it back
                log.exception("delivery could not be signed tenant=%s delivery=%s", job.tenant_id, job.delivery_id)
                unsendable.append(job)
                continue
            attempts.append((job.url, job.body, headers, functools.partial(self._sent, job)))
            signed.append(job)
        if unsendable:
            self._release_slots(unsendable)
        if attempts:
            try:
                self.runtime.get_sender().submit(attempts)
            except Exception:  # noqa: BLE001 - the sender is closing: the lease brings them back
                log.exception("handing %s deliveries to the sender failed", len(attempts))
                self._release_slots(signed)

    def _sent(self, job: Job, result: SendResult) -> None:
        """On the sender's loop, when an attempt ends: hand the outcome to the recorder and free the slot."""
        with self._lock:
            if result.http_code is None:
                self._unanswered.add(job.webhook_id)
            else:
                self._unanswered.discard(job.webhook_id)
        with self._outcomes_ready:
            self._outcomes.append((job, result))
            # The recorder waits for the first outcome, then gathers up to half the slots' (`_gather_outcomes`):
            # waking it for every other one would cost a thread switch each time for nothing.
            if len(self._outcomes) == 1 or len(self._outcomes) >= self._half_slots:
                self._outcomes_ready.notify()
        self._release_slots([job])

    def _release_slots(self, jobs: list[Job]) -> None:
        with self._lock:
            for job in jobs:
                self._in_flight[job.webhook_id] -= 1
                if self._in_flight[job.webhook_id] <= 0:
                    del self._in_flight[job.webhook_id]
                self._in_flight_tenants[job.tenant_id] -= 1
                if self._in_flight_tenants[job.tenant_id] <= 0:
                    del self._in_flight_tenants[job.tenant_id]
                self._in_flight_total -= 1
            # Wake the dispatcher only when it would claim (see `_gather_slots`) and may find something (see
            # `_claim_batch`): a wake-up per finished send costs the busy process a thread switch each time for
            # nothing.
            idle = self._in_flight_total == 0
            more = self._more_due or any(job.webhook_id in self._held_back or job.tenant_id in self._held_back_tenants
                                         for job in jobs)
            claimable = more and (idle or self.concurrency - self._in_flight_total >= self._half_slots)
            if idle:
                self._all_sent.notify_all()
        if idle:  # nothing more is coming: a gathering recorder writes what it has
            with self._outcomes_ready:
                self._outcomes_ready.notify()
        if claimable:
            self.runtime.deliveries_committed.notify_here()

    def _record_loop(self) -> None:
        """Write every outcome that arrived while the previous batch was being written, in one transaction."""
        while True:
            with self._outcomes_ready:
                while not self._outcomes and not self._senders_done:
                    self._outcomes_ready.wait()
                if not self._outcomes:
                    return  # stopping, and every finished send is recorded
                self._gather_outcomes()
                batch = self._outcomes[:MAX_RECORD_BATCH]
                del self._outcomes[:MAX_RECORD_BATCH]
            self._record(batch)
            # The dispatcher may have waited for the recorder, or may sleep past a retry just scheduled.
            if len(batch) >= self.concurrency or not all(result.ok for _job, result in batch):
                self.runtime.deliveries_committed.notify_here()

    def _gather_outcomes(self) -> None:
        """With `_outcomes_ready` held and some outcomes waiting: while sends are still in flight, wait at most
        `RECORD_WAIT_S` for half the slots' outcomes, so that under load one transaction writes many attempts
        (a transaction costs about the same for 2 attempts as for 16). Only the recording waits: the slots are
        already free, and the deliveries stay leased until their outcomes are committed."""
        deadline = time.monotonic() + RECORD_WAIT_S
        while len(self._outcomes) < self._half_slots and not self._senders_done and not self._stopping.is_set():
            with self._lock:
                if self._in_flight_total == 0:
                    return
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._outcomes_ready.wait(left)

    def _record(self, batch: list[tuple[Job, SendResult]]) -> None:
        for attempt in range(1, RECORD_TRIES + 1):
            try:
                record_many(self.runtime, batch)
                return
            except Exception:  # noqa: BLE001 - a database hiccup must not lose the outcomes
                log.exception("recording %s delivery attempts failed (try %s of %s)", len(batch), attempt,
                              RECORD_TRIES)
                if attempt < RECORD_TRIES:
                    self._stopping.wait(0.5 * attempt)
        for job, result in batch:  # one by one, so one bad outcome cannot hold back the others
            try:
                record(self.runtime, job, result)
            except Exception:  # noqa: BLE001 - the lease brings it back
                log.exception("recording failed tenant=%s delivery=%s", job.tenant_id, job.delivery_id)
