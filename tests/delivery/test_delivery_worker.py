"""The delivery worker end to end: outbox → signed HTTPS request → attempt and status recorded."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import event, select

from addon.storage.models import Attempt, Delivery, DeliveryStatus, Webhook
from tests.conftest import make_settings
from tests.receivers import Receiver
from tests.support.addon_server import AddonServer, wait_for
from tests.support.delivery import add_webhook, emit, tenant_id_of


def serving_one_site(atlassian, database_url: str, receiver):  # type: ignore[no-untyped-def]
    """The add-on trusting the receiver's CA, with one installed site: yields (server, tenant id)."""
    server = AddonServer(make_settings(atlassian, database_url, ca_bundle=receiver.ca_path, outgoing_timeout_s=2.0))
    site = atlassian.new_site()
    assert site.install(server.url).status_code == 204
    yield server, tenant_id_of(server, site.client_key)
    server.stop()


@pytest.fixture
def delivering(atlassian, database_url, receiver):
    """The add-on on both databases, with one installed site."""
    yield from serving_one_site(atlassian, database_url, receiver)


def test_event_reaches_every_enabled_webhook_signed(delivering, receiver):
    addon, tenant_id = delivering
    a, secret_a = add_webhook(addon, tenant_id, receiver.url("/a"))
    b, secret_b = add_webhook(addon, tenant_id, receiver.url("/b"))
    emit(addon, tenant_id)
    got = receiver.wait_for(2)
    by_path = {r.path: r for r in got}
    payload = Receiver.verify(by_path["/a"], [secret_a])
    assert payload["data"]["project"] == {"id": 10000, "key": "DEMO", "name": "Demo project"}
    Receiver.verify(by_path["/b"], [secret_b])
    request = by_path["/a"]
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"].startswith("Projectrak-Outgoing-Webhooks/")
    assert request.headers["webhook-id"].startswith("msg_")
    assert request.headers["webhook-id"] != by_path["/b"].headers["webhook-id"]

    def recorded():
        with addon.sessions() as session:
            return session.scalar(select(Webhook).where(Webhook.id == a, Webhook.last_status == "OK"))

    webhook = wait_for(recorded)
    assert webhook.last_status_code == 200 and webhook.last_execution_at is not None


def test_failures_are_retried_with_the_same_webhook_id(delivering, receiver, monkeypatch):
    import addon.delivery.retry as retry

    monkeypatch.setattr(retry, "SCHEDULE_S", (0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4))
    addon, tenant_id = delivering
    add_webhook(addon, tenant_id, receiver.url("/flaky"))
    receiver.behave("/flaky", status=503)
    emit(addon, tenant_id)
    first, second = receiver.wait_for(2, timeout=10)
    receiver.behave("/flaky", status=200)
    third = receiver.wait_for(3, timeout=10)[2]
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == third.headers["webhook-id"]
    assert first.body == third.body

    def finished():
        with addon.sessions() as session:
            return session.scalar(select(Delivery).where(Delivery.status == DeliveryStatus.SUCCEEDED))

    delivery = wait_for(finished)
    assert delivery.attempt_count == 3
    with addon.sessions() as session:
        attempts = session.scalars(select(Attempt).order_by(Attempt.id)).all()
    assert [(a.attempt, a.status, a.http_code) for a in attempts] == [(1, "ERROR", 503), (2, "ERROR", 503),
                                                                       (3, "OK", 200)]


def test_final_answer_is_not_retried_and_410_disables(delivering, receiver):
    addon, tenant_id = delivering
    gone, _ = add_webhook(addon, tenant_id, receiver.url("/gone"))
    receiver.behave("/gone", status=410)
    emit(addon, tenant_id)
    receiver.wait_for(1)

    def disabled():
        with addon.sessions() as session:
            return session.scalar(select(Webhook).where(Webhook.id == gone, Webhook.enabled.is_(False)))

    webhook = wait_for(disabled)
    assert webhook.disabled_reason == "gone" and webhook.last_status == "ERROR" and webhook.last_status_code == 410
    with addon.sessions() as session:
        assert session.scalar(select(Delivery.status)) == DeliveryStatus.FAILED
    emit(addon, tenant_id)  # a disabled webhook gets nothing
    with addon.sessions() as session:
        assert session.scalars(select(Delivery)).all().__len__() == 1
    assert len(receiver.requests) == 1


def test_body_is_the_stored_event_byte_for_byte(delivering, receiver):
    addon, tenant_id = delivering
    add_webhook(addon, tenant_id, receiver.url("/exact"))
    body = {"data": {"event": "updated", "user": None, "timestamp": 1, "project": {"id": 1, "key": "K", "name": "ñ"},
                     "fields": [{"id": 1, "name": "n", "type": "text", "value": {"current": "é", "previous": None}}]}}
    emit(addon, tenant_id, body)
    [request] = receiver.wait_for(1)
    assert request.body == json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def test_an_idle_worker_claims_once_per_event_not_once_per_finished_send(delivering, receiver):
    """At a low rate each event's deliveries are claimed together; finishing them must not set off claims that can
    find nothing (each one a write transaction, and on SQLite the write lock the intake needs), nor a read of the
    next due time per event when nothing new is scheduled."""
    addon, tenant_id = delivering
    webhooks = [add_webhook(addon, tenant_id, receiver.url(f"/w{n}"))[0] for n in range(5)]
    claims, next_due_reads = [], []

    def count_claims(_conn, _cursor, statement, _parameters, _context, _executemany):  # type: ignore[no-untyped-def]
        if "candidate" in statement:  # the claim's per-webhook pick (SQLite and PostgreSQL)
            claims.append(statement)
        elif "min(" in statement and "next_attempt_at" in statement:  # `next_due_in`
            next_due_reads.append(statement)

    def all_recorded(n: int):  # type: ignore[no-untyped-def]
        def check() -> bool:
            with addon.sessions() as session:
                done = session.scalars(select(Delivery.status)).all()
            return len(done) == n and all(s == DeliveryStatus.SUCCEEDED for s in done)
        return check

    emit(addon, tenant_id)  # warm up: connections, caches
    wait_for(all_recorded(len(webhooks)))
    time.sleep(0.3)
    event.listen(addon.runtime.engine, "before_cursor_execute", count_claims)
    try:
        events = 10
        for n in range(2, events + 2):
            emit(addon, tenant_id)
            receiver.wait_for(n * len(webhooks))
            wait_for(all_recorded(n * len(webhooks)))
            time.sleep(0.05)
    finally:
        event.remove(addon.runtime.engine, "before_cursor_execute", count_claims)
    # One claim per event takes its 5 deliveries; on PostgreSQL the database's NOTIFY may wake the dispatcher a
    # second time. Waking it for each finished send cost up to 5 more each.
    assert len(claims) <= 2 * events + 2, f"{len(claims)} claims for {events} events"
    # The next due time is read again only after a claim that found nothing (one per event took what was due).
    empty_claims = len(claims) - events
    assert len(next_due_reads) <= empty_claims + 1, f"{len(next_due_reads)} reads, {empty_claims} empty claims"


@pytest.mark.timeout(90)
def test_a_hanging_webhook_does_not_make_every_finished_send_claim(delivering, receiver):
    """A receiver that hangs keeps its webhook at its bound (one attempt at a time once unanswered): its due
    deliveries cannot be claimed until that attempt ends. The other webhooks' finished sends must not each set off a
    claim meanwhile (that was up to 5 claims per event, each a write transaction): only the end of one of the
    hanging webhook's attempts (every 2 s, the timeout here) adds one."""
    addon, tenant_id = delivering
    webhooks = [add_webhook(addon, tenant_id, receiver.url(f"/w{n}"))[0] for n in range(5)]
    add_webhook(addon, tenant_id, receiver.url("/hang"))
    receiver.behave("/hang", delay_s=600.0)
    claims = []

    def count_claims(_conn, _cursor, statement, _parameters, _context, _executemany):  # type: ignore[no-untyped-def]
        if "candidate" in statement:
            claims.append(statement)

    for n in range(1, 4):  # the first attempt hangs until the timeout: the webhook is then held to one at a time
        emit(addon, tenant_id)
        receiver.wait_for(n * len(webhooks) + 1, timeout=10)
    time.sleep(2.5)
    events = 20
    event.listen(addon.runtime.engine, "before_cursor_execute", count_claims)
    started = time.monotonic()
    try:
        for n in range(events):
            emit(addon, tenant_id)
            wait_for(lambda n=n: len([r for r in receiver.requests if r.path != "/hang"])
                     >= (n + 4) * len(webhooks), timeout=10)
            time.sleep(0.05)
    finally:
        event.remove(addon.runtime.engine, "before_cursor_execute", count_claims)
    timeouts = (time.monotonic() - started) / 2.0 + 1
    assert len(claims) <= 2 * events + 2 * timeouts + 2, f"{len(claims)} claims for {events} events"


@pytest.mark.timeout(60)
def test_retries_are_due_at_their_offset_from_the_event_however_long_attempts_take(atlassian, database_url,
                                                                                   receiver):
    """The second attempt is due 5 s (±20 %) after the event. The receiver takes 3 s to answer each attempt with a
    503: measured from the previous attempt's end, the retry would come at least 3 + 4 = 7 s after the first."""
    server = AddonServer(make_settings(atlassian, database_url, ca_bundle=receiver.ca_path, outgoing_timeout_s=10.0))
    try:
        site = atlassian.new_site()
        assert site.install(server.url).status_code == 204
        tenant_id = tenant_id_of(server, site.client_key)
        add_webhook(server, tenant_id, receiver.url("/slow"))
        receiver.behave("/slow", status=503, delay_s=3.0)
        emit(server, tenant_id)
        first, second = receiver.wait_for(2, timeout=15)
        assert first.headers["webhook-id"] == second.headers["webhook-id"]
        assert 3.0 <= second.received_at - first.received_at <= 6.5, second.received_at - first.received_at
        receiver.behave("/slow", status=200)

        def second_recorded():  # type: ignore[no-untyped-def]
            with server.sessions() as session:
                delivery = session.scalar(select(Delivery))
                return delivery if delivery.attempt_count == 2 else None

        delivery = wait_for(second_recorded, timeout=10)
        # The third attempt, per the schedule: 1 min (±20 %) after the event, not 1 min after the second attempt.
        offset = (delivery.next_attempt_at - delivery.schedule_started_at).total_seconds()
        assert 48.0 <= offset <= 72.0, offset
        with server.sessions() as session:
            attempts = session.scalars(select(Attempt).order_by(Attempt.id)).all()
        assert [(a.attempt, a.http_code) for a in attempts] == [(1, 503), (2, 503)]
    finally:
        server.stop()


@pytest.fixture
def delivering_on_postgresql(atlassian, pg_url, receiver):
    yield from serving_one_site(atlassian, pg_url, receiver)


@pytest.mark.timeout(60)
def test_the_dispatcher_reconnects_after_postgresql_drops_its_connection(delivering_on_postgresql, receiver,
                                                                           caplog):
    """The dispatcher keeps one connection of its own for its claims (`DispatcherConnection`): when PostgreSQL
    ends it (a restart, a failover, an idle timeout, an administrator's pg_terminate_backend), the next events
    still go out, the lost connection replaced before anything fails (as the pool's pre-ping would)."""
    addon, tenant_id = delivering_on_postgresql
    add_webhook(addon, tenant_id, receiver.url("/kept"))
    emit(addon, tenant_id)
    receiver.wait_for(1)
    time.sleep(0.2)  # the dispatcher has gone back to waiting, its connection idle
    with addon.runtime.engine.connect() as connection:
        # the dispatcher's: the one whose last query was a claim or a due read (both begin with the claim's scan of
        # the webhooks with pending deliveries; pg_stat_activity keeps only a query's first 1,024 bytes)
        ended = connection.exec_driver_sql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND query LIKE 'WITH RECURSIVE pending_webhooks%%'").scalar()
    assert ended == 1
    caplog.clear()
    emit(addon, tenant_id)
    emit(addon, tenant_id)
    assert len(receiver.wait_for(3, timeout=20)) == 3
    failures = [r.getMessage() for r in caplog.records if r.name == "addon.delivery.worker" and r.levelno >= 40]
    assert failures == []


def test_the_dispatchers_planner_setting_stays_on_its_own_connection(delivering_on_postgresql):
    """Its claims read each webhook's deliveries in index order (`_index_order_only`, set once for its session);
    no pooled connection, which the web requests use, may come back with that setting."""
    from addon.outbox.claim import DispatcherConnection

    addon, _tenant_id = delivering_on_postgresql
    own = DispatcherConnection(addon.runtime)
    assert own.get().exec_driver_sql("SHOW enable_bitmapscan").scalar() == "off"
    own.drop()
    for _ in range(3):
        with addon.runtime.engine.connect() as pooled:
            assert pooled.exec_driver_sql("SHOW enable_bitmapscan").scalar() == "on"
