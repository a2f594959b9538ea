"""The outbox: an accepted event becomes one delivery row per enabled webhook, in the caller's transaction
(`enqueue_event`) or, for the intake's field changes, in one of its own run by the driver (`store_event`)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import CTE, Insert, Select, String, bindparam, cast, func, insert, select, true
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from addon.connect.tenants import TenantChanged, TenantView
from addon.db_driver import DriverStatement, driver_one_statement, driver_transaction
from addon.delivery.signing import new_message_id
from addon.models import Delivery, DeliveryStatus, Event, Tenant, UTCDateTime, Webhook, utcnow

# PostgreSQL channel that wakes `addon worker` processes; the in-process Wakeup covers the same process.
NOTIFY_CHANNEL = "addon_deliveries"


def encode_body(body: dict[str, Any]) -> str:
    """The exact bytes a receiver gets: compact JSON, key order kept, UTF-8 as is."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


_events = Event.__table__
_webhooks = Webhook.__table__
_deliveries = Delivery.__table__
_tenants = Tenant.__table__
_INSERT_EVENT = (insert(_events).values(tenant_id=bindparam("tenant_id"), source=bindparam("source"),
                                        project_id=bindparam("project_id"), body=bindparam("body"),
                                        created_at=bindparam("now", type_=UTCDateTime()))
                 .returning(_events.c.id))


def _insert_deliveries(*, only_ids: bool = False, include_disabled: bool = False, event: CTE | None = None) -> Insert:
    """One pending delivery per target webhook, in one INSERT … SELECT (in webhook order), for the event whose id
    is the `event_id` parameter (or the id returned by the `event` INSERT, in a PostgreSQL WITH).

    A delivery's `webhook-id` is the event's fresh message id (`message_id_prefix`, ending in `_`) followed by the
    webhook's id: unique, fixed for the delivery, and made without a round of per-webhook parameters.
    """
    now = bindparam("now", type_=UTCDateTime())
    column = _deliveries.c
    event_id = bindparam("event_id", type_=column.event_id.type) if event is None else event.c.id
    rows = (select(bindparam("tenant_id", type_=column.tenant_id.type), event_id, _webhooks.c.id,
                   bindparam("message_id_prefix", type_=String()) + cast(_webhooks.c.id, String()),
                   bindparam("status", type_=column.status.type),
                   bindparam("attempt_count", type_=column.attempt_count.type), now, now, now)
            .where(_webhooks.c.tenant_id == bindparam("tenant_id"), _webhooks.c.deleted_at.is_(None))
            .order_by(_webhooks.c.id))
    if event is not None:
        rows = rows.select_from(event.join(_webhooks, true()))
    if not include_disabled:
        rows = rows.where(_webhooks.c.enabled.is_(True))
    if only_ids:
        rows = rows.where(_webhooks.c.id.in_(bindparam("webhook_ids", expanding=True)))
    columns = ["tenant_id", "event_id", "webhook_id", "message_id", "status", "attempt_count", "next_attempt_at",
               "schedule_started_at", "created_at"]
    return insert(_deliveries).from_select(columns, rows)


_INSERT_DELIVERIES = {(only_ids, include_disabled): _insert_deliveries(only_ids=only_ids,
                                                                       include_disabled=include_disabled)
                      for only_ids in (False, True) for include_disabled in (False, True)}


def _insert_event_while_tenant_unchanged() -> Insert:
    """The event, inserted only while the tenant's row is still the one the request was authenticated with
    (`TenantView`): no row is inserted, and none returned, once it was re-installed, disabled or uninstalled."""
    event, tenant = _events.c, _tenants.c
    row = (select(bindparam("tenant_id", type_=event.tenant_id.type), bindparam("source", type_=event.source.type),
                  bindparam("project_id", type_=event.project_id.type), bindparam("body", type_=event.body.type),
                  bindparam("now", type_=UTCDateTime()))
           .where(tenant.id == bindparam("tenant_id"), tenant.client_key == bindparam("client_key"),
                  tenant.base_url == bindparam("base_url"), tenant.state == bindparam("state"),
                  tenant.shared_secret == bindparam("sealed_secret")))
    return (insert(_events).from_select(["tenant_id", "source", "project_id", "body", "created_at"], row)
            .returning(_events.c.id))


_DRIVER_INSERT_EVENT = DriverStatement(_insert_event_while_tenant_unchanged())
_DRIVER_INSERT_DELIVERIES = DriverStatement(_INSERT_DELIVERIES[False, False])


def _store_in_one_statement() -> Select:
    """PostgreSQL: the event, its deliveries and the workers' wake-up in one statement (a WITH of two INSERTs),
    which, run alone, is its own transaction: one round trip instead of BEGIN, two INSERTs, NOTIFY and COMMIT.
    Answers (event id, number of deliveries); `pg_notify` wakes the workers at commit (once even without
    deliveries: a worker that wakes for nothing looks and waits again), except the one whose wake-up's `origin`
    is the payload: its caller wakes it in-process."""
    event = _insert_event_while_tenant_unchanged().cte("new_event")
    deliveries = _insert_deliveries(event=event).returning(_deliveries.c.id).cte("new_deliveries")
    return select(event.c.id, select(func.count()).select_from(deliveries).scalar_subquery(),
                  func.pg_notify(NOTIFY_CHANNEL, bindparam("notify_origin", type_=String())))


_DRIVER_STORE_POSTGRESQL = DriverStatement(_store_in_one_statement())


def _parameters(tenant_id: int, source: str, body: dict[str, Any], project_id: str | None) -> dict[str, Any]:
    return {"tenant_id": tenant_id, "source": source, "project_id": project_id, "body": encode_body(body),
            "now": utcnow(), "message_id_prefix": new_message_id() + "_", "status": DeliveryStatus.PENDING.value,
            "attempt_count": 0}


def enqueue_event(db: Session | Connection, *, tenant_id: int, source: str, body: dict[str, Any],
                  project_id: str | None = None, webhook_ids: list[int] | None = None,
                  include_disabled: bool = False) -> tuple[int, int]:
    """Store the event and a pending delivery for each enabled webhook (or only `webhook_ids`, which may
    include disabled ones when `include_disabled`, as a test delivery does), in the caller's transaction.

    Returns (event id, number of deliveries). The caller commits, then calls `runtime.deliveries_committed.notify()`.
    """
    connection = db.connection() if isinstance(db, Session) else db
    params = _parameters(tenant_id, source, body, project_id)
    params["event_id"] = connection.execute(_INSERT_EVENT, params).scalar_one()
    if webhook_ids is not None:
        params["webhook_ids"] = webhook_ids
    deliveries = connection.execute(_INSERT_DELIVERIES[webhook_ids is not None, include_disabled], params).rowcount
    if deliveries:
        notify_workers(connection)
    return params["event_id"], deliveries


def store_event(engine: Engine, *, tenant: TenantView, source: str, body: dict[str, Any],
                project_id: str | None = None, notify_origin: str = "") -> tuple[int, int]:
    """`enqueue_event` for every enabled webhook in a transaction of its own, executed by the driver
    (`addon.db_driver`), and only while the tenant's row is still `tenant` (else `TenantChanged`, nothing
    written): the intake does this for every accepted change. Returns (event id, number of deliveries); the caller
    calls `runtime.deliveries_committed.notify()` (whose `origin` it passes as `notify_origin`)."""
    params = _parameters(tenant.id, source, body, project_id)
    params.update(client_key=tenant.client_key, base_url=tenant.base_url, state=tenant.state,
                  sealed_secret=tenant.sealed_secret, notify_origin=notify_origin)
    if engine.dialect.name == "postgresql":
        row = driver_one_statement(engine, _DRIVER_STORE_POSTGRESQL, params)
        if row is None:
            raise TenantChanged(f"tenant {tenant.id} changed")
        return row[0], row[1]
    with driver_transaction(engine) as db:
        row = db.execute(_DRIVER_INSERT_EVENT, params).fetchone()
        if row is None:
            raise TenantChanged(f"tenant {tenant.id} changed")
        params["event_id"] = row[0]
        deliveries = db.execute(_DRIVER_INSERT_DELIVERIES, params).rowcount
    return params["event_id"], deliveries


def notify_workers(db: Session | Connection) -> None:
    """On PostgreSQL, wake `addon worker` processes when this transaction commits (NOTIFY is transactional)."""
    connection = db.connection() if isinstance(db, Session) else db
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"NOTIFY {NOTIFY_CHANNEL}")
