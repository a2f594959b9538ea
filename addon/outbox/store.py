"""The outbox: an accepted event becomes one delivery row per enabled webhook, in the caller's transaction
(`enqueue_event`) or, for the intake's field changes, in one of its own run by the driver (`store_event`)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import (
    CTE,
    BigInteger,
    ColumnElement,
    FromClause,
    Insert,
    Select,
    String,
    Text,
    bindparam,
    cast,
    column,
    func,
    insert,
    literal,
    literal_column,
    select,
    table,
    true,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from addon.outbox.filters import filter_cache, load_filters, targets_of, unfiltered
from addon.sending.signing import new_message_id
from addon.storage.driver import DriverStatement, driver_one_statement, driver_sqlite_statement
from addon.storage.models import (
    NO_PROJECT,
    Delivery,
    DeliveryStatus,
    Event,
    ProjectSequence,
    Tenant,
    UTCDateTime,
    Webhook,
    WebhookKind,
    table_of,
    utcnow,
)
from addon.storage.tenants import TenantChanged, TenantView, tenant_key_column, tenant_secret_column

# PostgreSQL channel that wakes `addon worker` processes; the in-process Wakeup covers the same process.
NOTIFY_CHANNEL = "addon_deliveries"


def encode_body(body: dict[str, Any]) -> str:
    """The exact bytes a receiver gets: compact JSON, key order kept, UTF-8 as is."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


_events = table_of(Event)
_webhooks = table_of(Webhook)
_deliveries = table_of(Delivery)
_tenants = table_of(Tenant)
_sequences = table_of(ProjectSequence)
_INSERT_EVENT = (insert(_events).values(tenant_id=bindparam("tenant_id"), source=bindparam("source"),
                                        project_id=bindparam("project_id"), body=bindparam("body"),
                                        created_at=bindparam("now", type_=UTCDateTime()),
                                        message_id=bindparam("message_id"), sequence=bindparam("sequence"))
                 .returning(_events.c.id))


def _bump_sequence(dialect: str, row: Select | None = None) -> Insert:
    """Add one to the tenant's project's `Projectrak-Sequence` (its first event gets 1) and answer the new number:
    an upsert whose row lock, held until the transaction commits, makes one project's events take their numbers in
    the order they are committed. `row`: the (tenant id, project key, 1) to insert, by default the parameters'."""
    make = postgresql.insert if dialect == "postgresql" else sqlite.insert
    if row is None:
        row = select(bindparam("tenant_id", type_=_sequences.c.tenant_id.type),
                     bindparam("project_key", type_=String()), literal(1))
    statement = make(_sequences).from_select(["tenant_id", "project_id", "last_sequence"], row)
    return (statement.on_conflict_do_update(index_elements=[_sequences.c.tenant_id, _sequences.c.project_id],
                                            set_={"last_sequence": _sequences.c.last_sequence + 1})
            .returning(_sequences.c.last_sequence))


def _insert_deliveries(*, only_ids: bool = False, include_disabled: bool = False, event: CTE | None = None,
                       new_event_row: bool = False, targets: FromClause | None = None) -> Insert:
    """One pending delivery per target webhook, in one INSERT … SELECT (in webhook order), for the event whose id
    is the `event_id` parameter (or the id returned by the `event` INSERT, in a PostgreSQL WITH; or, with
    `new_event_row`, the row a trigger on `events` has just inserted, `NEW`, with no parameters at all).

    A delivery's `webhook-id` is the event's fresh message id (`message_id`) followed by `_` and the webhook's id:
    unique, fixed for the delivery, and made without a round of per-webhook parameters.

    Filters (`addon.outbox.filters`): without `targets`, only unfiltered webhooks (unless `only_ids`: a test
    delivery ignores filters); with `targets` (rows of `webhook_id` and `body`, the filtered webhooks the event
    reaches), only those, each with its own body.
    """
    column = _deliveries.c
    tenant_id: ColumnElement[Any]
    event_id: ColumnElement[Any]
    project_key: ColumnElement[Any]
    sequence: ColumnElement[Any]
    message_id: ColumnElement[Any]
    now: ColumnElement[Any]
    status: ColumnElement[Any]
    attempt_count: ColumnElement[Any]
    if new_event_row:
        tenant_id, event_id, message_id, now = (literal_column(f"NEW.{name}") for name in
                                                ("tenant_id", "id", "message_id", "created_at"))
        status, attempt_count = literal(DeliveryStatus.PENDING.value), literal(0)
        project_key = func.coalesce(literal_column("NEW.project_id"), NO_PROJECT)
        sequence = literal_column("NEW.sequence")
    else:
        tenant_id = bindparam("tenant_id", type_=column.tenant_id.type)
        event_id = bindparam("event_id", type_=column.event_id.type) if event is None else event.c.id
        project_key = bindparam("project_key", type_=String())
        sequence = bindparam("sequence", type_=column.sequence.type) if event is None else event.c.sequence
        message_id, now = bindparam("message_id", type_=String()), bindparam("now", type_=UTCDateTime())
        status = bindparam("status", type_=column.status.type)
        attempt_count = bindparam("attempt_count", type_=column.attempt_count.type)
    values: list[ColumnElement[Any]] = [tenant_id, event_id, _webhooks.c.id,
                                        message_id + "_" + cast(_webhooks.c.id, String()), status, attempt_count,
                                        now, now, now, project_key, sequence]
    columns = ["tenant_id", "event_id", "webhook_id", "message_id", "status", "attempt_count", "next_attempt_at",
               "schedule_started_at", "created_at", "project_id", "sequence"]
    if targets is not None:
        values.append(targets.c.body)
        columns.append("body")
    rows = (select(*values)
            .where(_webhooks.c.tenant_id == tenant_id, _webhooks.c.deleted_at.is_(None))
            .order_by(_webhooks.c.id))
    webhooks: FromClause = _webhooks
    if targets is not None:
        webhooks = _webhooks.join(targets, targets.c.webhook_id == _webhooks.c.id)
    elif not only_ids:
        rows = rows.where(unfiltered(_webhooks))
    rows = rows.select_from(event.join(webhooks, true()) if event is not None else webhooks)
    if not include_disabled:
        rows = rows.where(_webhooks.c.enabled.is_(True))
    if only_ids:
        rows = rows.where(_webhooks.c.id.in_(bindparam("webhook_ids", expanding=True)))
    else:  # an event goes to the administrators' webhooks, never to the operational one (CONTRACT §10.5)
        rows = rows.where(_webhooks.c.kind == literal(WebhookKind.WEBHOOK.value))
    return insert(_deliveries).from_select(columns, rows)


_INSERT_DELIVERIES = {(only_ids, include_disabled): _insert_deliveries(only_ids=only_ids,
                                                                       include_disabled=include_disabled)
                      for only_ids in (False, True) for include_disabled in (False, True)}


def _tenant_unchanged(query: Select) -> Select:
    """`query`, answering a row only while the tenant's row is still the one the request was authenticated with
    (`TenantView`): none once it was re-installed, disabled or uninstalled, or a webhook filter of it changed (the
    filters applied are those of the view's `filters_version`)."""
    tenant = _tenants.c
    return query.where(tenant.id == bindparam("tenant_id"), tenant_key_column(tenant) == bindparam("client_key"),
                       tenant.base_url == bindparam("base_url"), tenant.state == bindparam("state"),
                       tenant_secret_column(tenant) == bindparam("sealed_secret"),
                       tenant.filters_version == bindparam("filters_version"))


def _insert_event(sequence: ColumnElement[Any], *, checked: bool, source: CTE | None = None) -> Insert:
    """The event with its `sequence`, inserted only while the tenant is unchanged (`checked`: here, or, with
    `source`, by the CTE that bumped the sequence and whose one row this reads)."""
    event = _events.c
    row = select(bindparam("tenant_id", type_=event.tenant_id.type), bindparam("source", type_=event.source.type),
                 bindparam("project_id", type_=event.project_id.type), bindparam("body", type_=event.body.type),
                 bindparam("now", type_=UTCDateTime()), bindparam("message_id", type_=event.message_id.type),
                 sequence)
    if checked:
        row = _tenant_unchanged(row)
    if source is not None:
        row = row.select_from(source)
    columns = ["tenant_id", "source", "project_id", "body", "created_at", "message_id", "sequence"]
    return insert(_events).from_select(columns, row).returning(_events.c.id, _events.c.sequence)


def _sqlite_insert_event() -> Insert:
    """SQLite: the event, numbered one past its project's counter; the fan-out trigger stores the number back
    (`_sqlite_fan_out_trigger`). The statement is its own write transaction, and SQLite takes the file's write
    lock before the statement reads anything, so no other writer, of any process, can take the same number in
    between."""
    last = (select(_sequences.c.last_sequence)
            .where(_sequences.c.tenant_id == bindparam("tenant_id"),
                   _sequences.c.project_id == bindparam("project_key", type_=String()))
            .scalar_subquery())
    return _insert_event(func.coalesce(last, 0) + 1, checked=True)


def _sqlite_fan_out_trigger() -> str:
    """SQLite: a TEMP trigger (it exists on the one connection that creates it, the intake's writer connection, and
    fires for nothing else) that inserts an event's deliveries as part of the event's INSERT. So the intake's store
    is one statement in autocommit, which is all or nothing by itself: no BEGIN, second statement and COMMIT, each a
    call into SQLite and a turn of the GIL. The deliveries are `_insert_deliveries`, on the `NEW` row; before them,
    the project's counter takes the event's number (an INSERT OR REPLACE: one change whether or not the row was
    there, which `store_event` counts on)."""
    fan_out = _insert_deliveries(new_event_row=True).compile(dialect=sqlite.dialect(),
                                                             compile_kwargs={"literal_binds": True})
    counter = ("INSERT OR REPLACE INTO project_sequences (tenant_id, project_id, last_sequence) "
               f"VALUES (NEW.tenant_id, coalesce(NEW.project_id, '{NO_PROJECT}'), NEW.sequence)")
    return (f"CREATE TEMP TRIGGER IF NOT EXISTS intake_fan_out_numbered AFTER INSERT ON main.events "
            f"BEGIN {counter}; {fan_out}; END")


# SQLite: the filtered webhooks an event reaches, with their bodies (`addon.outbox.filters.targets_of`), written by
# the intake's writer connection just before the event's INSERT, read by its trigger, emptied just after.
_SQLITE_TARGETS = table("intake_targets", column("webhook_id", BigInteger()), column("body", Text()), schema="temp")
_SQLITE_TARGETS_TABLE = "CREATE TEMP TABLE IF NOT EXISTS intake_targets (webhook_id INTEGER NOT NULL, body TEXT)"
_SQLITE_FILL_TARGETS = "INSERT INTO temp.intake_targets (webhook_id, body) VALUES (?, ?)"
_SQLITE_EMPTY_TARGETS = "DELETE FROM temp.intake_targets"


def _sqlite_filtered_fan_out_trigger() -> str:
    """SQLite: the filtered webhooks' deliveries, from `temp.intake_targets`; it fires only when there are any,
    so an event of a tenant without filters costs one look at an empty table."""
    fan_out = (_insert_deliveries(new_event_row=True, targets=_SQLITE_TARGETS)
               .compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))
    return ("CREATE TEMP TRIGGER IF NOT EXISTS intake_filtered_fan_out AFTER INSERT ON main.events"
            f" WHEN EXISTS (SELECT 1 FROM temp.intake_targets) BEGIN {fan_out}; END")


_DRIVER_INSERT_EVENT = DriverStatement(_sqlite_insert_event())
_SQLITE_SETUP = (_SQLITE_TARGETS_TABLE, _sqlite_fan_out_trigger(), _sqlite_filtered_fan_out_trigger())


def _store_in_one_statement(*, filtered: bool = False) -> Select:
    """PostgreSQL: the event, its deliveries and the workers' wake-up in one statement (a WITH of two INSERTs),
    which, run alone, is its own transaction: one round trip instead of BEGIN, two INSERTs, NOTIFY and COMMIT.
    Answers (event id, number of deliveries); `pg_notify` wakes the workers at commit (once even without
    deliveries: a worker that wakes for nothing looks and waits again), except the one whose wake-up's `origin`
    is the payload: its caller wakes it in-process. The first CTE bumps the project's sequence (only while the
    tenant is unchanged); its row lock orders the project's events until this statement commits. With `filtered`,
    a further INSERT adds the deliveries of the filtered webhooks the event reaches (two arrays: their ids and
    bodies)."""
    tenant_row = _tenant_unchanged(select(_tenants.c.id, bindparam("project_key", type_=String()), literal(1)))
    sequence = _bump_sequence("postgresql", tenant_row).cte("new_sequence")
    event = _insert_event(sequence.c.last_sequence, checked=False, source=sequence).cte("new_event")
    deliveries = _insert_deliveries(event=event).returning(_deliveries.c.id).cte("new_deliveries")
    count: ColumnElement[Any] = select(func.count()).select_from(deliveries).scalar_subquery()
    if filtered:
        targets = (func.unnest(bindparam("target_ids", type_=postgresql.ARRAY(BigInteger())),
                               bindparam("target_bodies", type_=postgresql.ARRAY(Text())))
                   .table_valued(column("webhook_id", BigInteger()), column("body", Text()))
                   .render_derived(name="targets"))
        more = _insert_deliveries(event=event, targets=targets).returning(_deliveries.c.id).cte("filtered_deliveries")
        count = count + select(func.count()).select_from(more).scalar_subquery()
    return select(event.c.id, count, func.pg_notify(NOTIFY_CHANNEL, bindparam("notify_origin", type_=String())))


_DRIVER_STORE_POSTGRESQL = {filtered: DriverStatement(_store_in_one_statement(filtered=filtered))
                            for filtered in (False, True)}
_INSERT_TARGET = _insert_deliveries(targets=select(bindparam("target_id", type_=BigInteger()).label("webhook_id"),
                                                   bindparam("target_body", type_=Text()).label("body"))
                                    .subquery("targets"))


def _parameters(tenant_id: int, source: str, body: dict[str, Any], project_id: str | None) -> dict[str, Any]:
    return {"tenant_id": tenant_id, "source": source, "project_id": project_id, "body": encode_body(body),
            "now": utcnow(), "message_id": new_message_id(), "status": DeliveryStatus.PENDING.value,
            "attempt_count": 0, "project_key": project_id or NO_PROJECT}


_BUMP_SEQUENCE = {dialect: _bump_sequence(dialect) for dialect in ("postgresql", "sqlite")}


def _ensure_line(dialect: str) -> Insert:
    """The project's counter row, left as it is when there: the claim reads an ordered webhook's lines from this
    table, so a delivery without a number of its own (a test; one stored before lines existed) needs its line to
    exist to be found when it is queued again."""
    make = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return make(_sequences).values(tenant_id=bindparam("tenant_id"), project_id=bindparam("project_key"),
                                   last_sequence=0).on_conflict_do_nothing()


_ENSURE_LINE = {dialect: _ensure_line(dialect) for dialect in ("postgresql", "sqlite")}


def ensure_lines(connection: Connection, tenant_id: int, project_keys: Iterable[str]) -> None:
    """The tenant's counter row of each of `project_keys`, where missing (see `_ensure_line`)."""
    rows = [{"tenant_id": tenant_id, "project_key": key} for key in project_keys]
    if rows:
        connection.execute(_ENSURE_LINE[connection.dialect.name], rows)

#: A test delivery's `Projectrak-Sequence`: below every project's first (1), it never advances a receiver's
#: highest-applied number, and a test takes no number from the project's line.
TEST_SEQUENCE = 0


def enqueue_event(db: Session | Connection, *, tenant_id: int, source: str, body: dict[str, Any],
                  project_id: str | None = None, webhook_ids: list[int] | None = None,
                  include_disabled: bool = False) -> tuple[int, int]:
    """Store the event and a pending delivery for each enabled webhook its filter lets through, with a body of
    its own where a field filter cuts the event's (or for only `webhook_ids`, filters ignored, which may include
    disabled ones when `include_disabled`, as a test delivery does), in the caller's transaction.

    Returns (event id, number of deliveries). The caller commits, then calls `runtime.deliveries_committed.notify()`.
    """
    connection = db.connection() if isinstance(db, Session) else db
    params = _parameters(tenant_id, source, body, project_id)
    if source == "test":
        connection.execute(_ENSURE_LINE[connection.dialect.name], params)
        params["sequence"] = TEST_SEQUENCE
    else:
        params["sequence"] = connection.execute(_BUMP_SEQUENCE[connection.dialect.name], params).scalar_one()
    params["event_id"] = connection.execute(_INSERT_EVENT, params).scalar_one()
    if webhook_ids is not None:
        params["webhook_ids"] = webhook_ids
    deliveries = connection.execute(_INSERT_DELIVERIES[webhook_ids is not None, include_disabled], params).rowcount
    if webhook_ids is None:  # filters apply (a test delivery, which names its webhook, ignores them)
        for webhook_id, own_body in targets_of(load_filters(connection, tenant_id), project_id, body):
            deliveries += connection.execute(_INSERT_TARGET, params | {
                "target_id": webhook_id, "target_body": None if own_body is None else encode_body(own_body)}).rowcount
    if deliveries:
        notify_workers(connection)
    return params["event_id"], deliveries


def store_event(engine: Engine, *, tenant: TenantView, source: str, body: dict[str, Any],
                project_id: str | None = None, notify_origin: str = "") -> tuple[int, int]:
    """`enqueue_event` for every enabled webhook (filters applied) as one statement of its own (on PostgreSQL a
    WITH of the INSERTs, on SQLite the event's INSERT, whose TEMP triggers insert the deliveries), executed by the
    driver (`addon.storage.driver`), and only while the tenant's row is still `tenant` (else `TenantChanged`,
    nothing written): the intake does this for every accepted change. Returns (event id, number of deliveries);
    the caller calls `runtime.deliveries_committed.notify()` (whose `origin` it passes as `notify_origin`)."""
    params = _parameters(tenant.id, source, body, project_id)
    params.update(client_key=tenant.client_key, base_url=tenant.base_url, state=tenant.state,
                  sealed_secret=tenant.sealed_secret, filters_version=tenant.filters_version,
                  notify_origin=notify_origin)
    filters = filter_cache(engine).filters(engine, tenant.id, tenant.filters_version)
    targets = [(webhook_id, None if own_body is None else encode_body(own_body))
               for webhook_id, own_body in targets_of(filters, project_id, body)] if filters else []
    if engine.dialect.name == "postgresql":
        if targets:
            params.update(target_ids=[target[0] for target in targets], target_bodies=[target[1] for target in targets])
        row = driver_one_statement(engine, _DRIVER_STORE_POSTGRESQL[bool(targets)], params)
        if row is None:
            raise TenantChanged(f"tenant {tenant.id} changed")
        return row[0], row[1]
    prepare = (_SQLITE_FILL_TARGETS, targets, _SQLITE_EMPTY_TARGETS) if targets else None
    rows, changes = driver_sqlite_statement(engine, _DRIVER_INSERT_EVENT, params, setup=_SQLITE_SETUP,
                                            prepare=prepare)
    if not rows:
        raise TenantChanged(f"tenant {tenant.id} changed")
    return rows[0][0], changes - 2  # the event's row, its project's counter, then its deliveries (the triggers')


def notify_workers(db: Session | Connection) -> None:
    """On PostgreSQL, wake `addon worker` processes when this transaction commits (NOTIFY is transactional)."""
    connection = db.connection() if isinstance(db, Session) else db
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"NOTIFY {NOTIFY_CHANNEL}")
