"""Housekeeping's pruning in batches (each batch its own short transaction) removes everything older than the
retention and nothing younger; and the claim, which looks only at the webhooks with pending deliveries (a loose
scan of their index), still finds every due delivery among webhooks whose deliveries are all finished.

Both databases; rows are written through the add-on's models, the functions under test are the add-on's own."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import func, select

from addon.config import Settings
from addon.delivery.housekeeping import ATTEMPT_RETENTION, prune_attempts
from addon.outbox.claim import claim
from addon.process.runtime import Runtime
from addon.storage.engine import transaction
from addon.storage.migrate import upgrade
from addon.storage.models import Attempt, Delivery, DeliveryStatus, Event, Tenant, TenantState, Webhook, utcnow
from addon.storage.secrets import SecretBox

KEY = Fernet.generate_key().decode()


@pytest.fixture
def runtime(database_url: str) -> Iterator[Runtime]:
    runtime = Runtime.build(Settings(database_url=database_url, secret_key=KEY, allow_private_networks=True))
    upgrade(runtime.engine)
    yield runtime
    runtime.close()


def _tenant_and_webhooks(runtime: Runtime, count: int) -> tuple[int, list[int]]:
    box = SecretBox(KEY)
    with transaction(runtime.sessions) as session:
        tenant = Tenant(client_key="prune-site", shared_secret=box.seal("s"), base_url="https://x.atlassian.net",
                        state=TenantState.ENABLED)
        session.add(tenant)
        session.flush()
        hooks = [Webhook(tenant_id=tenant.id, name=f"h{i}", url=f"https://hooks.example.com/{i}",
                         secret=box.seal("whsec_x")) for i in range(count)]
        session.add_all(hooks)
        session.flush()
        return tenant.id, [h.id for h in hooks]


def _delivery(session, tenant_id: int, webhook_id: int, at: dt.datetime, status: str, attempts: int,
              name: str) -> tuple[int, int]:
    event = Event(tenant_id=tenant_id, source="projectrak", project_id="1", body="{}", created_at=at)
    session.add(event)
    session.flush()
    finished = status != DeliveryStatus.PENDING
    delivery = Delivery(tenant_id=tenant_id, event_id=event.id, webhook_id=webhook_id, message_id=f"msg_{name}",
                        status=status, attempt_count=attempts, created_at=at, schedule_started_at=at,
                        next_attempt_at=None if finished else at, finished_at=at + dt.timedelta(minutes=1)
                        if finished else None)
    session.add(delivery)
    session.flush()
    for n in range(attempts):
        session.add(Attempt(tenant_id=tenant_id, delivery_id=delivery.id, webhook_id=webhook_id, attempt=n + 1,
                            at=at + dt.timedelta(seconds=n), status="ERROR" if n < attempts - 1 else "OK",
                            http_code=200, duration_ms=5))
    return event.id, delivery.id


@pytest.mark.timeout(120)
def test_pruning_in_batches_removes_everything_older_than_the_retention_and_nothing_younger(runtime):
    tenant_id, [hook] = _tenant_and_webhooks(runtime, 1)
    now = utcnow()
    old, young = now - ATTEMPT_RETENTION - dt.timedelta(hours=1), now - ATTEMPT_RETENTION + dt.timedelta(hours=1)
    with transaction(runtime.sessions) as session:
        # 13 old finished deliveries of 3 attempts (39 attempts: batches of 5 end on a short one), 4 young ones
        old_ids = [_delivery(session, tenant_id, hook, old + dt.timedelta(seconds=i), DeliveryStatus.SUCCEEDED, 3,
                             f"old{i}") for i in range(13)]
        young_ids = [_delivery(session, tenant_id, hook, young, DeliveryStatus.FAILED, 2, f"young{i}")
                     for i in range(4)]
        # an old event redelivered lately: pending again, kept with its delivery; its old attempts go
        kept_event, kept_delivery = _delivery(session, tenant_id, hook, old, DeliveryStatus.PENDING, 1, "again")
        # an old event that never had a delivery (no webhook enabled when it came): goes
        lone = Event(tenant_id=tenant_id, source="projectrak", project_id="1", body="{}", created_at=old)
        session.add(lone)

    prune_attempts(runtime, batch=5)

    with transaction(runtime.sessions) as session:
        cutoff = now - ATTEMPT_RETENTION
        assert session.scalar(select(func.count()).select_from(Attempt).where(Attempt.at < cutoff)) == 0
        assert session.scalar(select(func.count()).select_from(Attempt)) == 4 * 2
        remaining = set(session.scalars(select(Delivery.id)))
        assert remaining == {d for _, d in young_ids} | {kept_delivery}
        events = set(session.scalars(select(Event.id)))
        assert events == {e for e, _ in young_ids} | {kept_event}
        assert not {e for e, _ in old_ids} & events

    prune_attempts(runtime, batch=5)  # nothing left to do: a second pass changes nothing
    with transaction(runtime.sessions) as session:
        assert set(session.scalars(select(Delivery.id))) == remaining


@pytest.mark.timeout(120)
def test_the_claim_finds_the_due_deliveries_among_webhooks_with_only_finished_ones(runtime):
    """Webhooks with pending deliveries lie between (and beyond) webhooks whose deliveries are all finished and
    webhooks with none: the claim's loose scan steps over the others and takes every due one."""
    tenant_id, hooks = _tenant_and_webhooks(runtime, 9)
    now = utcnow() - dt.timedelta(seconds=5)
    due = set()
    with transaction(runtime.sessions) as session:
        for i, hook in enumerate(hooks):
            if i % 3 == 0:  # 0, 3, 6: two due deliveries each
                due |= {_delivery(session, tenant_id, hook, now, DeliveryStatus.PENDING, 0, f"due{i}_{n}")[1]
                        for n in range(2)}
            elif i % 3 == 1:  # 1, 4, 7: only finished ones
                _delivery(session, tenant_id, hook, now, DeliveryStatus.SUCCEEDED, 1, f"done{i}")
    jobs = claim(runtime, 50)
    assert {job.delivery_id for job in jobs} == due
