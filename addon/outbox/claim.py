"""Claiming due deliveries under a lease, and what sending one needs (`Job`).

A claim leases up to a batch of the oldest due deliveries, at most `per_webhook` of one webhook and none of the
webhooks already at their in-flight bound, and reads each one's URL, body and live secrets at claim time (so a
changed URL applies to pending retries). On PostgreSQL the choice, the lease and the read are one statement
(`FOR UPDATE SKIP LOCKED` in a LATERAL pick per webhook) on the dispatcher's own connection; on SQLite three
statements in one `BEGIN IMMEDIATE` transaction. A worker killed at any moment loses nothing: its leased
deliveries become due again when the lease ends.

An ordered webhook (CONTRACT §10.2) is picked differently: its deliveries of one project form a line, and only a
line's head (its pending delivery with the lowest `Projectrak-Sequence`) may be taken, and only when due and not
leased; a head being sent, or waiting for its retry, holds its line and nothing else. The pick reads the head of
each of the tenant's lines (`project_sequences`) with one probe of the partial index `ix_deliveries_line`, so its
cost grows with the tenant's projects, never with how many deliveries wait behind a head (walking the due index
instead, a held line's million deliveries would be read by every claim). A crashed worker's head keeps its place:
its lease runs out and the same head is taken again.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import (
    CTE,
    ColumnElement,
    Select,
    Update,
    bindparam,
    case,
    func,
    literal_column,
    or_,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.selectable import LateralFromClause

from addon.process.runtime import Runtime
from addon.storage.engine import transaction
from addon.storage.models import (
    Delivery,
    DeliveryStatus,
    Event,
    ProjectSequence,
    Tenant,
    TenantState,
    UTCDateTime,
    Webhook,
    table_of,
    utcnow,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

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
    headers: tuple[tuple[str, str], ...] = ()  # the webhook's custom headers (CONTRACT §10.3), opened
    sequence: int = 0  # `Projectrak-Sequence` (CONTRACT §10.2): the event's number in its project
    ordered: bool = False  # of an ordered webhook: its outcome may release the next delivery of its line


def _custom_headers(stored: str | None, runtime: Runtime) -> tuple[tuple[str, str], ...]:
    """A webhook's custom headers as stored (`{name: sealed value}`), opened."""
    return tuple((name, runtime.box.open(value)) for name, value in json.loads(stored).items()) if stored else ()


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

    Each webhook's pick wants the first rows of the index `(webhook_id, status, next_attempt_at, id)` in its order.
    Without statistics on a fresh burst (before autovacuum analyzes it) the planner reckons a handful of rows per
    webhook and may prefer a bitmap scan of all of them plus a sort: 310 ms per claim with 1,000,000 waiting,
    against 1.3 ms. Bitmap scans never serve the claim. (Turning sorts off instead, as the claim in plain due
    order once did, prices the batch's own small sort so high that PostgreSQL compiles the statement with JIT
    and picks its joins at random: over a second.)
    """
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SET LOCAL {_INDEX_ORDER_ONLY}")


_deliveries = table_of(Delivery)
_webhooks = table_of(Webhook)
_tenants = table_of(Tenant)
_events = table_of(Event)
_lines = table_of(ProjectSequence)
#: `status = 'pending'` written as a literal: the partial line index is used only where the planner can see that
#: the query's condition is the index's own (a bound parameter, in a prepared statement's generic plan, is not).
_PENDING_LITERAL: ColumnElement[str] = literal_column(f"'{DeliveryStatus.PENDING.value}'")


#: Which of the claim's exclusion lists a statement takes: (busy webhooks, busy tenants).
Busy = tuple[bool, bool]
_BUSY_VARIANTS: tuple[Busy, ...] = ((False, False), (True, False), (False, True), (True, True))


def _webhooks_with_pending() -> CTE:
    """The ids of the webhooks that have a pending delivery, one index probe each: a loose scan of the partial
    index `ix_deliveries_line` (led by `webhook_id`, pending rows only), each step the smallest id above
    the last. The claim then looks at these webhooks only, not at every enabled one: 100,000 enabled webhooks
    of which 100 have work cost what 100 webhooks cost (docs/benchmarks.md, Scale)."""
    first, after = _deliveries.alias("pending_first"), _deliveries.alias("pending_next")
    pending = (select(func.min(first.c.webhook_id).label("webhook_id")).where(first.c.status == _PENDING_LITERAL)
               .cte("pending_webhooks", recursive=True))
    following = (select(func.min(after.c.webhook_id))
                 .where(after.c.status == _PENDING_LITERAL, after.c.webhook_id > pending.c.webhook_id)
                 .scalar_subquery())
    return pending.union_all(select(following).where(pending.c.webhook_id.is_not(None)))


_PENDING_WEBHOOKS = _webhooks_with_pending()


def _candidate_webhooks(query: Select, *, busy: Busy, ordered: bool | None = None) -> Select:
    """`query` over the webhooks whose deliveries the claim may take: with a pending delivery
    (`_webhooks_with_pending`), enabled, of an active tenant, and neither the webhook nor its tenant at its
    in-flight bound (`busy` and `busy_tenants`, expanding bound parameters); with `ordered`, only the ordered
    webhooks (True) or only the others (False)."""
    query = (query.select_from(_webhooks.join(_tenants, _tenants.c.id == _webhooks.c.tenant_id)
                               .join(_PENDING_WEBHOOKS, _PENDING_WEBHOOKS.c.webhook_id == _webhooks.c.id))
             .where(_webhooks.c.enabled.is_(True), _tenants.c.state.in_(ACTIVE_TENANT_STATES)))
    if ordered is not None:
        query = query.where(_webhooks.c.ordered.is_(ordered))
    if busy[0]:
        query = query.where(_webhooks.c.id.not_in(bindparam("busy", expanding=True)))
    if busy[1]:
        query = query.where(_webhooks.c.tenant_id.not_in(bindparam("busy_tenants", expanding=True)))
    return query


def _tenant_rank(tenant_id, next_attempt_at, delivery_id):
    """A candidate's place among its tenant's candidates, oldest first: the claim keeps the first `per_tenant` of
    each tenant. It ranks only the candidates (at most `per_webhook` per webhook), never a tenant's whole backlog."""
    return func.row_number().over(partition_by=tenant_id,
                                  order_by=(next_attempt_at, delivery_id)).label("tenant_rank")


def _oldest_sendable(deliveries, *columns, due: bool) -> Select:
    """`columns` of one webhook's deliveries the claim could take, oldest first: pending and not leased (and due,
    with `due`). Correlated to the enclosing query's webhook, it reads the per-webhook index
    `(webhook_id, status, next_attempt_at, id)`: what another webhook has waiting costs nothing, however much it is
    (a hanging receiver's deliveries are the oldest, and a claim in plain due order walked over all of them)."""
    now = bindparam("now", type_=UTCDateTime())
    query = (select(*columns)
             .where(deliveries.c.webhook_id == _webhooks.c.id, deliveries.c.status == DeliveryStatus.PENDING,
                    or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until < now))
             .order_by(deliveries.c.next_attempt_at, deliveries.c.id).correlate(_webhooks))
    if due:
        return query.where(deliveries.c.next_attempt_at <= now)
    return query.where(deliveries.c.next_attempt_at.is_not(None))


def _not_leased(deliveries) -> ColumnElement[bool]:
    return or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until < bindparam("now", type_=UTCDateTime()))


def _line_head(line) -> Select:
    """The id of the head of the enclosing query's webhook's line of `line`'s project: its pending delivery with
    the lowest sequence (then id), leased or not, due or not. One probe of `ix_deliveries_line`."""
    head = _deliveries.alias("head")
    return (select(head.c.id)
            .where(head.c.webhook_id == _webhooks.c.id, head.c.project_id == line.c.project_id,
                   head.c.status == _PENDING_LITERAL)
            .order_by(head.c.sequence, head.c.id).limit(1).correlate_except(head))


def _ordered_sendable_pg() -> LateralFromClause:
    """PostgreSQL: an ordered webhook's line heads the claim could take, as `_oldest_sendable` for the others:
    due and not leased, oldest first, at most `per_webhook`, locked with SKIP LOCKED. The heads are chosen first
    and locked after, so a head another claim holds is skipped, never replaced by the one behind it."""
    line = _lines.alias("line")
    head = _line_head(line).lateral("line_head")
    return (select(_deliveries.c.id, _deliveries.c.next_attempt_at)
            .select_from(line.join(head, true()).join(_deliveries, _deliveries.c.id == head.c.id))
            .where(line.c.tenant_id == _webhooks.c.tenant_id, _deliveries.c.status == DeliveryStatus.PENDING,
                   _not_leased(_deliveries), _deliveries.c.next_attempt_at <= bindparam("now", type_=UTCDateTime()))
            .order_by(_deliveries.c.next_attempt_at, _deliveries.c.id).limit(bindparam("per_webhook"))
            .with_for_update(skip_locked=True, of=_deliveries).correlate(_webhooks).lateral("candidate"))


def _ordered_head_ids() -> Select:
    """SQLite: the ids of the heads of the enclosing query's (ordered) webhook's lines, one per project of its
    tenant (NULL for a line with nothing pending)."""
    line = _lines.alias("line")
    return (select(_line_head(line).scalar_subquery()).where(line.c.tenant_id == _webhooks.c.tenant_id)
            .correlate_except(line))


def _due_ids(busy: Busy) -> Select:
    """SQLite: the claim's choice, the oldest due deliveries of each candidate webhook (at most `per_webhook`
    each), of those at most `per_tenant` of each tenant, then the oldest `limit`. SQLite has no LATERAL; it runs
    the correlated `IN` once per webhook. Ties (an event's deliveries are due at the same moment) go by id, i.e. by
    event: ordered by time alone, a batch could be one webhook's share and the next's, most of it then surplus to
    the dispatcher's bound."""
    inner = _deliveries.alias("candidate")
    oldest = _oldest_sendable(inner, inner.c.id, due=True).limit(bindparam("per_webhook"))
    heads = (select(inner.c.id)
             .where(inner.c.id.in_(_ordered_head_ids()), inner.c.status == DeliveryStatus.PENDING, _not_leased(inner),
                    inner.c.next_attempt_at <= bindparam("now", type_=UTCDateTime()))
             .order_by(inner.c.next_attempt_at, inner.c.id).limit(bindparam("per_webhook")).correlate(_webhooks))
    columns = (_webhooks.c.tenant_id, _deliveries.c.id, _deliveries.c.next_attempt_at)
    candidates = union_all(
        _candidate_webhooks(select(*columns), busy=busy, ordered=False).join(_deliveries, _deliveries.c.id.in_(oldest)),
        _candidate_webhooks(select(*columns), busy=busy, ordered=True).join(_deliveries, _deliveries.c.id.in_(heads)),
    ).subquery("candidates")
    ranked = select(candidates.c.id, candidates.c.next_attempt_at,
                    _tenant_rank(candidates.c.tenant_id, candidates.c.next_attempt_at, candidates.c.id)
                    ).subquery("ranked")
    return (select(ranked.c.id).where(ranked.c.tenant_rank <= bindparam("per_tenant"))
            .order_by(ranked.c.next_attempt_at, ranked.c.id).limit(bindparam("limit")))


_JOB_COLUMNS = (_deliveries.c.id, _deliveries.c.tenant_id, _deliveries.c.webhook_id, _deliveries.c.message_id,
                _deliveries.c.attempt_count, _deliveries.c.next_attempt_at, _deliveries.c.schedule_started_at,
                _webhooks.c.url, _webhooks.c.secret, _webhooks.c.previous_secret,
                _webhooks.c.previous_secret_expires_at, _webhooks.c.headers,
                # a delivery's own body (a field filter's subset), else its event's
                func.coalesce(_deliveries.c.body, _events.c.body).label("body"), _deliveries.c.sequence,
                _webhooks.c.ordered)
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
    heads = _ordered_sendable_pg()
    candidates = union_all(
        _candidate_webhooks(select(_webhooks.c.tenant_id, oldest.c.id, oldest.c.next_attempt_at), busy=busy,
                            ordered=False).join(oldest, true()),
        _candidate_webhooks(select(_webhooks.c.tenant_id, heads.c.id, heads.c.next_attempt_at), busy=busy,
                            ordered=True).join(heads, true()),
    ).subquery("candidates")
    ranked = select(candidates.c.id, candidates.c.next_attempt_at,
                    _tenant_rank(candidates.c.tenant_id, candidates.c.next_attempt_at, candidates.c.id)
                    ).subquery("ranked")
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
        rows = list(connection.execute(_CLAIM_PG[busy], params).all())
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


def _job(runtime: Runtime, r, now: dt.datetime) -> Job:
    return Job(delivery_id=r.id, tenant_id=r.tenant_id, webhook_id=r.webhook_id, message_id=r.message_id,
               attempt=r.attempt_count + 1, url=r.url, body=r.body.encode("utf-8"),
               secrets=_live_secrets(r.secret, r.previous_secret, r.previous_secret_expires_at, runtime, now),
               schedule_start=r.schedule_started_at, headers=_custom_headers(r.headers, runtime), sequence=r.sequence,
               ordered=r.ordered)


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


def release(runtime: Runtime, delivery_ids: list[int]) -> None:
    """Give back leases this process took but will not use now."""
    with runtime.engine.begin() as connection:
        connection.execute(update(_deliveries).where(_deliveries.c.id.in_(delivery_ids)).values(lease_until=None))


def _next_due(busy: Busy) -> Select:
    """The earliest `next_attempt_at` of a delivery the claim could take, due or not: the earliest of each
    candidate webhook's (see `_oldest_sendable`); of an ordered webhook, the earliest of its line heads that are
    not leased (a delivery behind a head is never next, however long due)."""
    earliest = _oldest_sendable(_deliveries, _deliveries.c.next_attempt_at, due=False).limit(1).scalar_subquery()
    line, head = _lines.alias("line"), _deliveries.alias("waiting_head")
    earliest_head = (select(func.min(head.c.next_attempt_at))
                     .select_from(line.join(head, head.c.id == _line_head(line).scalar_subquery()))
                     .where(line.c.tenant_id == _webhooks.c.tenant_id, _not_leased(head),
                            head.c.next_attempt_at.is_not(None))
                     .correlate(_webhooks).scalar_subquery())
    return _candidate_webhooks(select(func.min(case((_webhooks.c.ordered, earliest_head), else_=earliest))),
                               busy=busy)


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
