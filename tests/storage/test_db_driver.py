"""The intake's hot path on the DBAPI connection (`addon.storage.driver`, `outbox.store_event`): it must write exactly
what the SQLAlchemy-executed code writes, on both databases, fail as SQLAlchemy fails, and leave the pool and the
SQLite write lock as it found them."""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import bindparam, exc, insert, select, update

from addon.config import Settings
from addon.outbox import store as outbox
from addon.outbox.claim import claim
from addon.outbox.store import store_event
from addon.process.runtime import Runtime
from addon.sending.signing import generate_secret
from addon.storage.driver import DriverStatement, driver_one_statement, driver_sqlite_statement
from addon.storage.migrate import upgrade
from addon.storage.models import Delivery, DeliveryStatus, Event, Tenant, TenantState, UTCDateTime, Webhook, utcnow
from addon.storage.tenants import TenantChanged, TenantView, find_installed

BODY = {"data": {"event": "updated", "user": "u", "timestamp": 1, "project": {"id": 1, "key": "D", "name": "D"},
                 "fields": []}}


@pytest.fixture
def runtime(database_url: str) -> Iterator[Runtime]:
    runtime = Runtime.build(Settings(database_url=database_url, allow_private_networks=True))
    upgrade(runtime.engine)
    yield runtime
    runtime.close()


def add_tenant(runtime: Runtime, client_key: str = "tenant-a", secret: str = "shared-secret-of-tenant-a") -> TenantView:
    with runtime.engine.begin() as connection:
        connection.execute(insert(Tenant).values(client_key=client_key, shared_secret=runtime.box.seal(secret),
                                                 base_url="https://a.atlassian.net", state=TenantState.ENABLED))
    tenant = find_installed(runtime.engine, client_key, runtime.box)
    assert tenant is not None and tenant.shared_secret == secret
    return tenant


def add_webhook(runtime: Runtime, tenant: TenantView, *, enabled: bool = True, deleted: bool = False) -> int:
    with runtime.engine.begin() as connection:
        return connection.execute(insert(Webhook).values(
            tenant_id=tenant.id, name="w", url="https://receiver.example/hook", enabled=enabled,
            secret=runtime.box.seal(generate_secret()), deleted_at=utcnow() if deleted else None,
        ).returning(Webhook.id)).scalar_one()


def test_the_driver_writes_datetimes_exactly_as_sqlalchemy_does(runtime):
    """SQLite keeps datetimes as text and compares them as text (the worker's claim does): a whole second must
    still be written with its `.000000`, as SQLAlchemy writes it."""
    tenant = add_tenant(runtime)
    by_driver = DriverStatement(insert(Event).values(tenant_id=tenant.id, source="driver", body="{}",
                                                     created_at=bindparam("at", type_=UTCDateTime())))
    moments = [dt.datetime(2026, 11, 27, 4, 5, 6, tzinfo=dt.UTC),
               dt.datetime(2026, 11, 27, 4, 5, 6, 789, tzinfo=dt.UTC)]
    for moment in moments:
        with runtime.engine.begin() as connection:
            connection.execute(insert(Event).values(tenant_id=tenant.id, source="sqlalchemy", body="{}",
                                                    created_at=moment))
        if runtime.engine.dialect.name == "sqlite":
            driver_sqlite_statement(runtime.engine, by_driver, {"at": moment})
        else:
            driver_one_statement(runtime.engine, by_driver, {"at": moment})

    with runtime.engine.connect() as connection:
        raw = connection.exec_driver_sql("SELECT source, created_at FROM events ORDER BY id").all()
        read = connection.execute(select(Event.created_at).order_by(Event.id)).scalars().all()
    assert [value for source, value in raw if source == "sqlalchemy"] == [
        value for source, value in raw if source == "driver"]
    assert read == [moment for moment in moments for _ in (1, 2)]


def test_store_event_makes_one_pending_delivery_per_enabled_webhook_that_the_worker_claims(runtime):
    tenant = add_tenant(runtime)
    enabled = [add_webhook(runtime, tenant), add_webhook(runtime, tenant)]
    add_webhook(runtime, tenant, enabled=False)
    add_webhook(runtime, tenant, deleted=True)
    other = add_tenant(runtime, "tenant-b", "shared-secret-of-tenant-b")
    add_webhook(runtime, other)

    event_id, count = store_event(runtime.engine, tenant=tenant, source="projectrak", body=BODY, project_id="1")

    assert count == 2
    with runtime.sessions() as session:
        event = session.get(Event, event_id)
        rows = session.scalars(select(Delivery).order_by(Delivery.id)).all()
    assert event is not None and event.tenant_id == tenant.id and event.body == (
        '{"data":{"event":"updated","user":"u","timestamp":1,"project":{"id":1,"key":"D","name":"D"},"fields":[]}}')
    assert [row.webhook_id for row in rows] == enabled
    assert all(row.status == DeliveryStatus.PENDING and row.event_id == event_id and row.attempt_count == 0
               for row in rows)
    assert [re.fullmatch(r"msg_[0-9A-HJKMNP-TV-Z]{26}_(\d+)", row.message_id).group(1) for row in rows] == [
        str(webhook_id) for webhook_id in enabled]
    assert len({row.message_id for row in rows}) == 2
    assert [row.message_id for row in rows] == [f"{event.message_id}_{webhook_id}" for webhook_id in enabled]
    assert {job.delivery_id for job in claim(runtime, 10)} == {row.id for row in rows}


@pytest.mark.parametrize("change", [
    {"shared_secret": "re-sealed"}, {"state": TenantState.DISABLED}, {"state": TenantState.UNINSTALLED},
    {"base_url": "https://moved.atlassian.net"},
])
def test_store_event_writes_nothing_once_the_tenant_is_no_longer_as_authenticated(runtime, change):
    tenant = add_tenant(runtime)
    add_webhook(runtime, tenant)
    with runtime.engine.begin() as connection:
        connection.execute(update(Tenant).where(Tenant.id == tenant.id).values(**change))

    with pytest.raises(TenantChanged):
        store_event(runtime.engine, tenant=tenant, source="projectrak", body=BODY, project_id="1")

    with runtime.engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM events").scalar() == 0
        assert connection.exec_driver_sql("SELECT count(*) FROM deliveries").scalar() == 0


def test_a_failed_statement_raises_sqlalchemys_error_without_its_parameters_and_the_pool_stays_sound(runtime):
    add_tenant(runtime)
    duplicate = DriverStatement(insert(Tenant).values(client_key="tenant-a", base_url="https://a.atlassian.net",
                                                      state=TenantState.ENABLED).returning(Tenant.id))

    with pytest.raises(exc.IntegrityError) as raised:
        driver_one_statement(runtime.engine, duplicate, {"shared_secret": "the-sealed-value-must-not-show"})
    assert "the-sealed-value-must-not-show" not in str(raised.value)

    # Connections handed out afterwards run transactions again (none was left in autocommit): a rolled back
    # insert is gone.
    for _ in range(3):
        with pytest.raises(RuntimeError), runtime.engine.begin() as connection:
            connection.execute(insert(Tenant).values(client_key="rolled-back", shared_secret="x",
                                                     base_url="https://b.atlassian.net", state=TenantState.ENABLED))
            raise RuntimeError("roll back")
    assert find_installed(runtime.engine, "rolled-back", runtime.box) is None
    assert find_installed(runtime.engine, "tenant-a", runtime.box) is not None


def test_a_store_that_fails_half_way_writes_nothing_and_lets_the_next_writer_in_at_once(runtime, monkeypatch):
    """The event's INSERT succeeds and its deliveries' fail (a `webhook-id` already taken): the one statement
    (SQLite: the INSERT and its trigger; PostgreSQL: the WITH) is rolled back whole."""
    tenant = add_tenant(runtime)
    add_webhook(runtime, tenant)
    monkeypatch.setattr(outbox, "new_message_id", lambda: "msg_taken")
    first_id, _ = store_event(runtime.engine, tenant=tenant, source="projectrak", body=BODY, project_id="1")

    with pytest.raises(exc.IntegrityError):
        store_event(runtime.engine, tenant=tenant, source="lost", body=BODY, project_id="1")

    monkeypatch.undo()
    stored: list[tuple[int, int]] = []
    writer = threading.Thread(target=lambda: stored.append(
        store_event(runtime.engine, tenant=tenant, source="projectrak", body=BODY, project_id="1")))
    writer.start()
    writer.join(5)  # SQLite: a write lock left held would keep this writer waiting for 30 s
    assert len(stored) == 1 and stored[0][1] == 1
    with runtime.engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT source FROM events").scalars().all() == ["projectrak"] * 2
        assert connection.exec_driver_sql("SELECT count(*) FROM deliveries").scalar() == 2
    assert stored[0][0] != first_id
