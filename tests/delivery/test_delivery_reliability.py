"""Reliability of the delivery engine (CONTRACT §6.1, §6.3; issue 4), against real HTTPS receivers on 127.0.0.1.

- a worker process killed with SIGKILL in the middle of a batch, then a new one: nothing is lost, duplicates are
  only the deliveries that were in flight at the kill;
- two `addon worker` processes on one database (PostgreSQL or a SQLite file): every delivery exactly once, both
  do some of the work;
- one hanging receiver beside fast ones holds up none of them; one tenant's hanging backlog holds up no other tenant;
- DNS rebinding at send time is never connected to;
- the retry policy through the worker (Retry-After, retryable and final answers, 410, the 5-day rule, rotation);
- a disabled tenant's deliveries pause and resume; an uninstall cancels them.

Every wait is on a condition with a deadline; the only sleeps are in the fake receiver. Figures (duplicates after
the kill, the split between two workers) are printed on lines starting with `FIGURES` (see them with `-s`).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import re
import socket
import time
from collections import Counter
from email.utils import formatdate
from types import SimpleNamespace
from typing import Any

import pytest
import requests
from cryptography.fernet import Fernet
from sqlalchemy import func, or_, select, update
from standardwebhooks import WebhookVerificationError

from addon.config import Settings
from addon.delivery.housekeeping import cancel_abandoned_test_deliveries, disable_failing_webhooks
from addon.delivery.worker import DEFAULT_CONCURRENCY, per_tenant_bound, per_webhook_bound
from addon.outbox.claim import claim, lease_duration, release
from addon.outbox.store import enqueue_event, notify_workers
from addon.sending.addresses import UrlRejected, check_url_for_saving
from addon.sending.client import Sender
from addon.storage.engine import transaction
from addon.storage.models import Attempt, Delivery, DeliveryStatus, Webhook, utcnow
from tests.conftest import make_settings
from tests.receivers import ReceivedRequest, Receiver, _Server
from tests.support.addon_server import AddonServer, wait_for
from tests.support.admin import AdminClient
from tests.support.atlassian import FakeAtlassian, FakeSite
from tests.support.delivery import add_webhook, emit, tenant_id_of
from tests.support.http import free_port
from tests.support.processes import AddonProcess, addon_env

# Secrets are stored sealed, as in production; the worker processes get the same key.
FERNET_KEY = Fernet.generate_key().decode()
ATTEMPT_LINE = re.compile(r"delivery attempt tenant=\d+ webhook=\d+ delivery=(\d+) attempt=(\d+) status=(\w+)")


# -- fixtures and helpers ---------------------------------------------------------------------------------------


@pytest.fixture
def receiver(monkeypatch):
    # socketserver listens with a backlog of 5: a burst of concurrent connects overflows it, the dropped SYNs are
    # retransmitted a second later and attempts time out. Real receivers listen with a far longer queue.
    monkeypatch.setattr(_Server, "request_queue_size", 128)
    with Receiver() as r:
        yield r


@pytest.fixture(autouse=True)
def no_unexpected_delivery_errors(caplog):
    """An exception in the in-process worker (a deadlock, a pool timeout...) fails the test even when the lease
    would hide it by sending again a minute later."""
    yield
    errors = [r.getMessage() for r in caplog.get_records("call")
              if r.levelno >= logging.ERROR and r.name.startswith("addon.delivery")]
    assert errors == []


@pytest.fixture
def make_addon(atlassian, receiver):
    """Build add-ons trusting the receiver's CA (OUTGOING_TIMEOUT_S=2 unless changed); all stopped afterwards."""
    servers: list[AddonServer] = []

    def make(database_url: str, *, background: bool = True, **changes: Any) -> AddonServer:
        changes = {"ca_bundle": receiver.ca_path, "secret_key": FERNET_KEY, "outgoing_timeout_s": 2.0, **changes}
        server = AddonServer(make_settings(atlassian, database_url, **changes), background=background)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def spawn_worker(tmp_path):
    """Start `addon worker` processes (own process group, log in tmp_path); stopped afterwards."""
    procs: list[AddonProcess] = []

    def spawn(name: str, database_url: str, receiver: Receiver, *, timeout_s: float = 2.0,
              concurrency: int = 16) -> AddonProcess:
        env = addon_env(DATABASE_URL=database_url, ADDON_SECRET_KEY=FERNET_KEY, OUTGOING_ALLOW_PRIVATE_NETWORKS="1",
                        OUTGOING_CA_BUNDLE=receiver.ca_path, OUTGOING_TIMEOUT_S=str(timeout_s))
        proc = AddonProcess(["worker", "--concurrency", str(concurrency)], env, tmp_path, tmp_path / f"{name}.log")
        procs.append(proc)
        return proc

    yield spawn
    for proc in procs:
        if proc.proc.poll() is None:
            proc.stop(timeout=15)


def install(atlassian: FakeAtlassian, addon: AddonServer, *, enable: bool = False) -> tuple[FakeSite, int]:
    site = atlassian.new_site()
    site.admins.add("admin-account")
    site.add_project(10000, "DEMO", "Demo project")
    assert site.install(addon.url).status_code == 204
    if enable:
        response = site.call(addon.url, "POST", "/lifecycle/enabled", json_body=site.lifecycle_body("enabled"))
        assert response.status_code == 204, response.text
    return site, tenant_id_of(addon, site.client_key)


def body_of(n: int) -> dict[str, Any]:
    return {"data": {"event": "updated", "user": "u-1", "timestamp": 1675182117615 + n,
                     "project": {"id": 10000, "key": "DEMO", "name": "Demo project"},
                     "fields": [{"id": 12345, "name": "Budget", "type": "number",
                                 "value": {"current": str(n), "previous": None}}]}}


def enqueue(addon: AddonServer, tenant_id: int, events: int, first: int = 0) -> list[int]:
    """`events` events in one transaction, as a burst of intake would leave them; returns the delivery ids."""
    with transaction(addon.sessions) as session:
        event_ids = [enqueue_event(session, tenant_id=tenant_id, source="projectrak", body=body_of(first + n))[0]
                     for n in range(events)]
        session.flush()
        ids = list(session.scalars(select(Delivery.id).where(Delivery.event_id.in_(event_ids)).order_by(Delivery.id)))
    addon.runtime.deliveries_committed.notify()
    return ids


def deliveries(addon: AddonServer, *conditions: Any) -> list[Delivery]:
    with addon.sessions() as session:
        return list(session.scalars(select(Delivery).where(*conditions).order_by(Delivery.id)))


def count_deliveries(addon: AddonServer, *conditions: Any) -> int:
    with addon.sessions() as session:
        return session.scalar(select(func.count(Delivery.id)).where(*conditions))


def attempts_of(addon: AddonServer, *conditions: Any) -> list[Attempt]:
    with addon.sessions() as session:
        return list(session.scalars(select(Attempt).where(*conditions).order_by(Attempt.id)))


def webhook(addon: AddonServer, webhook_id: int) -> Webhook:
    with addon.sessions() as session:
        return session.get(Webhook, webhook_id)


def set_webhook(addon: AddonServer, webhook_id: int, **values: Any) -> None:
    with transaction(addon.sessions) as session:
        session.execute(update(Webhook).where(Webhook.id == webhook_id).values(**values))


def ids_of(requests: list[ReceivedRequest]) -> Counter[str]:
    return Counter(r.headers["webhook-id"] for r in requests)


def verify_all(requests: list[ReceivedRequest], secret_by_path: dict[str, str]) -> None:
    for request in requests:
        Receiver.verify(request, [secret_by_path[request.path]])  # raises if the signature does not verify


def attempt_lines(proc: AddonProcess) -> list[tuple[int, int, str]]:
    return [(int(d), int(a), s) for d, a, s in ATTEMPT_LINE.findall(proc.output())]


# -- the lease ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("timeout_s", [0.5, 1.0, 2.0, 10.0, 300.0])
def test_lease_outlasts_one_attempt_by_more_than_30_s(timeout_s):
    runtime = SimpleNamespace(settings=Settings(outgoing_timeout_s=timeout_s))
    assert lease_duration(runtime) > dt.timedelta(seconds=timeout_s + 30)  # type: ignore[arg-type]


def test_a_leased_delivery_is_claimed_again_only_when_the_lease_ends(atlassian, database_url, make_addon, receiver):
    addon = make_addon(database_url, background=False)
    _, tenant_id = install(atlassian, addon)
    add_webhook(addon, tenant_id, receiver.url("/lease"))
    [delivery_id] = enqueue(addon, tenant_id, 1)
    before = utcnow()
    [job] = claim(addon.runtime, 10)
    assert job.delivery_id == delivery_id and job.attempt == 1
    [row] = deliveries(addon, Delivery.id == delivery_id)
    assert row.lease_until >= before + lease_duration(addon.runtime)
    assert claim(addon.runtime, 10) == []  # a crashed holder's delivery waits for its lease to end
    with transaction(addon.sessions) as session:
        session.execute(update(Delivery).values(lease_until=utcnow() - dt.timedelta(seconds=1)))
    [again] = claim(addon.runtime, 10)
    assert (again.delivery_id, again.message_id, again.attempt) == (delivery_id, job.message_id, 1)
    assert receiver.requests == []


def test_a_claim_takes_each_webhooks_oldest_due_deliveries_up_to_its_share(atlassian, database_url, make_addon,
                                                                             receiver):
    """A pile of one webhook's older deliveries (a hanging receiver's) neither fills a claim nor hides the other
    webhooks' deliveries; a webhook at its bound is passed over; the batch is the oldest of what is left."""
    addon = make_addon(database_url, background=False)
    _, tenant_id = install(atlassian, addon)
    piled, _ = add_webhook(addon, tenant_id, receiver.url("/piled"), name="piled")
    other, _ = add_webhook(addon, tenant_id, receiver.url("/other"), name="other")
    now = utcnow()
    with transaction(addon.sessions) as session:
        for n in range(30):
            enqueue_event(session, tenant_id=tenant_id, source="projectrak", body=body_of(n), webhook_ids=[piled])
        for n in range(5):
            enqueue_event(session, tenant_id=tenant_id, source="projectrak", body=body_of(100 + n),
                          webhook_ids=[other])
        session.flush()
        for webhook_id, age_s in ((piled, 60), (other, 1)):
            session.execute(update(Delivery).where(Delivery.webhook_id == webhook_id)
                            .values(next_attempt_at=now - dt.timedelta(seconds=age_s)))
    piled_ids = [d.id for d in deliveries(addon, Delivery.webhook_id == piled)]
    other_ids = [d.id for d in deliveries(addon, Delivery.webhook_id == other)]

    jobs = claim(addon.runtime, 10, per_webhook=4)
    assert [j.delivery_id for j in jobs] == piled_ids[:4] + other_ids[:4]  # oldest first, at most 4 of each
    release(addon.runtime, [j.delivery_id for j in jobs])

    assert [j.delivery_id for j in claim(addon.runtime, 3, per_webhook=4)] == piled_ids[:3]
    release(addon.runtime, piled_ids[:3])

    jobs = claim(addon.runtime, 10, busy_webhooks={piled})
    assert [j.delivery_id for j in jobs] == other_ids
    assert receiver.requests == []


# -- 1. SIGKILL in the middle of a batch ------------------------------------------------------------------------


@pytest.mark.timeout(150)
def test_worker_killed_mid_batch_then_restarted_delivers_everything(atlassian, database_url, receiver, make_addon,
                                                                    spawn_worker):
    addon = make_addon(database_url, background=False, outgoing_timeout_s=1.0)
    _, tenant_id = install(atlassian, addon)
    secret_by_path = {}
    for i in range(10):  # ten webhooks: the per-webhook bound (4) does not limit a 32-wide worker
        path = f"/crash{i}"
        secret_by_path[path] = add_webhook(addon, tenant_id, receiver.url(path))[1]
        receiver.behave(path, delay_s=0.25)  # so that many deliveries are in flight at any moment
    all_ids = enqueue(addon, tenant_id, 30)
    assert len(all_ids) == 300
    with addon.sessions() as session:
        message_ids = set(session.scalars(select(Delivery.message_id)))

    first = spawn_worker("worker-killed", database_url, receiver, timeout_s=1.0, concurrency=32)
    receiver.wait_for(100, timeout=60)
    first.kill()  # SIGKILL to the process group, in the middle of the batch

    succeeded_at_kill = count_deliveries(addon, Delivery.status == DeliveryStatus.SUCCEEDED)
    in_flight = {d.message_id for d in deliveries(addon, Delivery.status == DeliveryStatus.PENDING,
                                                  Delivery.lease_until.is_not(None))}
    assert in_flight, "the kill should catch deliveries in flight"
    assert succeeded_at_kill + len(in_flight) < 300, "the kill should come before the batch was all claimed"
    assert all(d.lease_until > utcnow() + dt.timedelta(seconds=30) for d in
               deliveries(addon, Delivery.message_id.in_(in_flight)))

    # A new worker sends everything else, but not what the dead one still holds a lease on.
    second = spawn_worker("worker-restarted", database_url, receiver, timeout_s=1.0, concurrency=32)
    wait_for(lambda: count_deliveries(addon, Delivery.status == DeliveryStatus.SUCCEEDED) == 300 - len(in_flight),
             timeout=60, message="every delivery not leased by the dead worker")
    counts = ids_of(receiver.requests)
    assert all(counts[m] <= 1 for m in in_flight), "a leased delivery was sent again before its lease ended"
    assert count_deliveries(addon, Delivery.status == DeliveryStatus.PENDING) == len(in_flight)

    # The lease is OUTGOING_TIMEOUT_S + 60 s: rather than wait a minute, end the dead worker's leases in the
    # database, which is exactly what the passing of time would do.
    with transaction(addon.sessions) as session:
        session.execute(update(Delivery).where(Delivery.lease_until.is_not(None))
                        .values(lease_until=utcnow() - dt.timedelta(seconds=1)))
        notify_workers(session)
    wait_for(lambda: count_deliveries(addon, Delivery.status == DeliveryStatus.SUCCEEDED) == 300, timeout=60,
             message="all 300 deliveries")

    requests = receiver.requests
    counts = ids_of(requests)
    assert set(counts) == message_ids  # every delivery arrived at least once, with its own webhook-id
    verify_all(requests, secret_by_path)
    duplicates = {m: n - 1 for m, n in counts.items() if n > 1}
    assert set(duplicates) <= in_flight, "only deliveries in flight at the kill may arrive twice"
    assert all(n == 1 for n in duplicates.values())
    assert second.stop() == 0
    assert "Traceback" not in second.output()
    print(f"\nFIGURES sigkill[{addon.runtime.engine.dialect.name}]: 300 deliveries, {succeeded_at_kill} recorded "
          f"before the kill, {len(in_flight)} in flight (leased) at the kill, {sum(duplicates.values())} duplicates, "
          f"{len(requests)} requests received")


# -- 2. two workers on one database -----------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_two_workers_share_the_work_and_send_each_delivery_once(atlassian, database_url, receiver, make_addon,
                                                                spawn_worker):
    addon = make_addon(database_url, background=False)
    _, tenant_id = install(atlassian, addon)
    secret_by_path = {}
    for i in range(20):
        path = f"/pair{i}"
        secret_by_path[path] = add_webhook(addon, tenant_id, receiver.url(path))[1]
        receiver.behave(path, delay_s=0.05)
    workers = [spawn_worker(f"worker-{n}", database_url, receiver) for n in ("a", "b")]
    for proc in workers:
        wait_for(lambda proc=proc: "worker started" in proc.output(), timeout=60, message="worker start")

    all_ids = enqueue(addon, tenant_id, 25)  # 500 deliveries; NOTIFY or the doorbell wakes both workers
    assert len(all_ids) == 500
    wait_for(lambda: count_deliveries(addon, Delivery.status == DeliveryStatus.SUCCEEDED) == 500, timeout=90,
             message="500 deliveries")

    requests = receiver.requests
    counts = ids_of(requests)
    assert len(requests) == 500 and len(counts) == 500, f"duplicates: {[m for m, n in counts.items() if n > 1]}"
    verify_all(requests, secret_by_path)
    assert len(attempts_of(addon)) == 500
    assert {d.attempt_count for d in deliveries(addon)} == {1}

    for proc in workers:
        assert proc.stop() == 0  # SIGTERM: a clean stop
        assert "Traceback" not in proc.output()
    done = [{d for d, attempt, status in attempt_lines(proc) if status == "OK"} for proc in workers]
    assert done[0] and done[1], f"one worker did all the work: {len(done[0])} / {len(done[1])}"
    assert not done[0] & done[1]
    assert done[0] | done[1] == set(all_ids)
    print(f"\nFIGURES two workers: {len(done[0])} / {len(done[1])} of 500 deliveries, 0 duplicates")


# -- 3. a hanging receiver holds up nobody -----------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_a_hanging_receiver_does_not_hold_up_the_others(atlassian, database_url, receiver, make_addon):
    addon = make_addon(database_url, outgoing_timeout_s=2.0)  # the in-process worker: 64 slots, 16 per webhook
    _, tenant_id = install(atlassian, addon)
    slow, _ = add_webhook(addon, tenant_id, receiver.url("/slow"), name="slow")
    receiver.behave("/slow", delay_s=60)  # far beyond the 2 s timeout; cut short when the receiver stops
    fast = [add_webhook(addon, tenant_id, receiver.url(f"/fast{i}"), name=f"fast{i}")[0] for i in range(4)]

    # One burst: 40 deliveries to the hanging webhook first (more than the whole pool), then 40 to the fast ones.
    started = time.monotonic()
    with transaction(addon.sessions) as session:
        for n in range(40):
            enqueue_event(session, tenant_id=tenant_id, source="projectrak", body=body_of(n), webhook_ids=[slow])
        for n in range(10):
            enqueue_event(session, tenant_id=tenant_id, source="projectrak", body=body_of(n), webhook_ids=fast)
    addon.runtime.deliveries_committed.notify()

    def fast_requests() -> list[ReceivedRequest]:
        return [r for r in receiver.requests if r.path.startswith("/fast")]

    wait_for(lambda: len(fast_requests()) >= 40, timeout=30, message="the fast deliveries to arrive")
    slow_attempts = attempts_of(addon, Attempt.webhook_id == slow)  # read first: the slow attempts end soon
    elapsed = time.monotonic() - started
    slow_requests = receiver.requests_for("/slow")
    assert slow_attempts == [], f"a hanging attempt timed out before the fast deliveries arrived ({elapsed:.2f} s)"
    assert len(slow_requests) == per_webhook_bound(DEFAULT_CONCURRENCY)  # only its own bound of the pool
    arrived = fast_requests()
    assert len(arrived) == 40 and len(ids_of(arrived)) == 40
    assert max(r.received_at for r in arrived) < min(r.received_at for r in slow_requests) + 2.0
    fast_done = Delivery.webhook_id.in_(fast), Delivery.status == DeliveryStatus.SUCCEEDED
    wait_for(lambda: count_deliveries(addon, *fast_done) == 40, timeout=30, message="the fast deliveries recorded")
    recorded = time.monotonic() - started

    # ... and the hanging attempts did hang until the timeout.
    [first, *_] = wait_for(lambda: attempts_of(addon, Attempt.webhook_id == slow), timeout=10,
                           message="the hanging attempts to time out")
    assert (first.status, first.http_code, first.error) == ("ERROR", None, "timeout after 2.0 s")
    assert first.duration_ms >= 1900
    print(f"\nFIGURES isolation[{addon.runtime.engine.dialect.name}]: 40 fast deliveries arrived {elapsed:.2f} s after "
          f"the burst (recorded at {recorded:.2f} s), beside {len(slow_requests)} hanging ones (timeout 2 s)")


@pytest.mark.timeout(60)
def test_a_webhook_whose_attempts_went_unanswered_gets_one_at_a_time(atlassian, database_url, receiver, make_addon):
    addon = make_addon(database_url, outgoing_timeout_s=1.0)
    _, tenant_id = install(atlassian, addon)
    slow, _ = add_webhook(addon, tenant_id, receiver.url("/unanswered"), name="unanswered")
    receiver.behave("/unanswered", delay_s=60)  # cut short when the receiver stops
    with transaction(addon.sessions) as session:
        for n in range(40):
            enqueue_event(session, tenant_id=tenant_id, source="projectrak", body=body_of(n), webhook_ids=[slow])
    addon.runtime.deliveries_committed.notify()
    bound = per_webhook_bound(DEFAULT_CONCURRENCY)

    # The first wave takes the webhook's whole share and times out...
    wait_for(lambda: len(attempts_of(addon, Attempt.webhook_id == slow)) >= bound, timeout=10,
             message="the first wave to time out")
    first_wave = len(receiver.requests_for("/unanswered"))
    assert bound <= first_wave <= bound + 1  # the first lone attempt may already be on its way
    # ... then one attempt at a time: one per timeout (1 s), not a new wave of `bound` each second.
    time.sleep(2.5)
    later = len(receiver.requests_for("/unanswered")) - first_wave
    assert 1 <= later <= 4, f"{later} attempts in 2.5 s after the first wave timed out"

    # Once it answers again, the webhook gets its whole share back and the backlog drains.
    receiver.behave("/unanswered", delay_s=0)
    done = Delivery.webhook_id == slow, Delivery.status == DeliveryStatus.SUCCEEDED
    wait_for(lambda: count_deliveries(addon, *done) == 40, timeout=30, message="every delivery to succeed")
    print(f"\nFIGURES unanswered[{addon.runtime.engine.dialect.name}]: first wave {first_wave}, then {later} "
          f"attempts in 2.5 s")


# -- 3b. one tenant's backlog holds up no other tenant (CONTRACT §6.3) --------------------------------------------
# The in-process worker has 64 slots: 16 per webhook, 32 per tenant. Tenant C's four webhooks hang (they would take
# all 64 slots with the per-webhook bound alone); tenant B's one delivery must still go out while C's requests are
# held open and C still has due deliveries waiting.

HANG_S = 60  # far beyond the test; cut short when the receiver stops


def _due_waiting(addon, tenant_id: int) -> int:  # type: ignore[no-untyped-def]
    """Deliveries of the tenant that are due and not leased: waiting for a slot."""
    now = utcnow()
    with addon.sessions() as session:
        return session.scalar(select(func.count(Delivery.id)).where(
            Delivery.tenant_id == tenant_id, Delivery.status == DeliveryStatus.PENDING,
            Delivery.next_attempt_at <= now, or_(Delivery.lease_until.is_(None), Delivery.lease_until < now)))


@pytest.mark.timeout(90)
def test_a_tenants_hanging_backlog_does_not_hold_back_another_tenant(atlassian, database_url, receiver, make_addon):
    addon = make_addon(database_url, outgoing_timeout_s=30.0)  # the in-process worker, DEFAULT_CONCURRENCY slots
    _, tenant_c = install(atlassian, addon)
    _, tenant_b = install(atlassian, addon)
    c_paths = [f"/c{i}" for i in range(4)]
    for path in c_paths:
        add_webhook(addon, tenant_c, receiver.url(path), name=path)
        receiver.behave(path, delay_s=HANG_S)
    add_webhook(addon, tenant_b, receiver.url("/b"), name="b")

    for _ in range(32):  # 128 deliveries, four times the tenant's share
        emit(addon, tenant_c)

    def c_requests() -> int:
        return sum(len(receiver.requests_for(path)) for path in c_paths)

    share = per_tenant_bound(DEFAULT_CONCURRENCY)
    wait_for(lambda: c_requests() >= share, timeout=30, message="tenant C's receivers to hold its share")
    emit(addon, tenant_b)
    [b_request] = receiver.wait_for(1, timeout=10, path="/b")

    # B's request arrived while every one of C's requests was still held open, and C still had due deliveries.
    assert all(r.received_at < b_request.received_at for path in c_paths for r in receiver.requests_for(path))
    assert _attempts(addon, tenant_c) == [], "one of C's hanging requests ended before the check"
    assert c_requests() == share, f"tenant C holds {c_requests()} of {DEFAULT_CONCURRENCY} slots"
    assert _due_waiting(addon, tenant_c) == 128 - share
    [b_attempt] = wait_for(lambda: _attempts(addon, tenant_b), timeout=10, message="B's attempt recorded")
    assert (b_attempt.status, b_attempt.http_code) == ("OK", 200)
    receiver.stop()  # ends C's hanging requests, so that the worker stops without waiting for their timeout


def _attempts(addon, tenant_id: int) -> list[Attempt]:  # type: ignore[no-untyped-def]
    with addon.sessions() as session:
        return list(session.scalars(select(Attempt).where(Attempt.tenant_id == tenant_id)))


def test_a_claim_takes_at_most_the_tenant_share_of_one_tenant(atlassian, database_url, make_addon, receiver):
    """The claim itself: at most `per_tenant` of one tenant per batch (oldest first), none of a busy tenant, and
    another tenant's due deliveries come in the same batch however much the first has waiting."""
    addon = make_addon(database_url, background=False)
    _, tenant_c = install(atlassian, addon)
    _, tenant_b = install(atlassian, addon)
    for i in range(4):
        add_webhook(addon, tenant_c, receiver.url(f"/c{i}"))
    add_webhook(addon, tenant_b, receiver.url("/b"))
    for _ in range(10):
        emit(addon, tenant_c)  # 40 deliveries, the oldest
    emit(addon, tenant_b)

    jobs = claim(addon.runtime, 20, per_webhook=5, per_tenant=8)
    by_tenant = {t: [j for j in jobs if j.tenant_id == t] for t in (tenant_b, tenant_c)}
    assert len(by_tenant[tenant_c]) == 8 and len(by_tenant[tenant_b]) == 1
    release(addon.runtime, [j.delivery_id for j in jobs])

    jobs = claim(addon.runtime, 20, per_webhook=5, per_tenant=8, busy_tenants={tenant_c})
    assert [j.tenant_id for j in jobs] == [tenant_b]
    release(addon.runtime, [j.delivery_id for j in jobs])

    # Alone, a tenant's batch is still cut at its share; what is not due is not taken.
    with addon.sessions.begin() as session:
        session.execute(Delivery.__table__.update().where(Delivery.tenant_id == tenant_b)
                        .values(next_attempt_at=utcnow() + dt.timedelta(hours=1)))
    jobs = claim(addon.runtime, 40, per_webhook=5, per_tenant=8)
    assert {j.tenant_id for j in jobs} == {tenant_c} and len(jobs) == 8


# -- 4. DNS rebinding at send time -------------------------------------------------------------------------------


def fake_resolver(answers: dict[str, list[str]]):
    """A getaddrinfo stand-in: `answers[host]` in order."""

    def resolve(host: str, port: int, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0):  # noqa: A002
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "unknown host")
        return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", (ip, port, 0, 0)) if ":" in ip
                else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in answers[host]]

    return resolve


@pytest.mark.timeout(60)
def test_dns_rebinding_to_loopback_is_never_connected_to(atlassian, database_url, receiver, make_addon):
    addon = make_addon(database_url, allow_private_networks=False)
    assert addon.runtime.settings.allow_private_networks is False
    rebinding = {"receiver.test": ["127.0.0.1"], "mapped.receiver.test": ["::ffff:127.0.0.1"]}
    urls = {host: f"https://{host}:{receiver.port}/rebind" for host in rebinding}

    # At save time the names resolved to a public address, so the URLs were accepted...
    at_save = fake_resolver({host: ["93.184.216.34"] for host in rebinding})
    for url in urls.values():
        check_url_for_saving(url, allow_private=False, resolve=at_save)
    # ... and at send time they resolve to loopback. The test hook: the runtime's sender, built with this resolver.
    addon.runtime._sender = Sender(timeout_s=2.0, ca_bundle=receiver.ca_path, allow_private=False,
                                   user_agent="reliability-test", resolve=fake_resolver(rebinding))
    for url in urls.values():
        with pytest.raises(UrlRejected) as refused:
            check_url_for_saving(url, allow_private=False, resolve=fake_resolver(rebinding))
        assert refused.value.code == "private_address"

    _, tenant_id = install(atlassian, addon)
    hooks = {host: add_webhook(addon, tenant_id, url)[0] for host, url in urls.items()}
    enqueue(addon, tenant_id, 1)
    wait_for(lambda: len(attempts_of(addon)) == 2, timeout=20, message="both attempts")

    for host, webhook_id in hooks.items():
        [attempt] = attempts_of(addon, Attempt.webhook_id == webhook_id)
        expected = f"blocked private address {ipaddress.ip_address(rebinding[host][0])}"  # ::ffff:7f00:1 before 3.13
        assert (attempt.status, attempt.http_code, attempt.error) == ("ERROR", None, expected)
        hook = webhook(addon, webhook_id)
        assert (hook.last_status, hook.last_status_code, hook.last_error) == ("ERROR", None, expected)
    assert receiver.requests == [] and receiver.connections_opened == 0 and receiver.tls_failures == []

    # Control: the same resolver without the guard does reach the receiver, so the guard is what stopped it.
    with Sender(timeout_s=2.0, ca_bundle=receiver.ca_path, allow_private=True, user_agent="reliability-test",
                resolve=fake_resolver(rebinding)) as unguarded:
        result = unguarded.send(urls["receiver.test"], b"{}", {})
    assert result.ok and receiver.wait_for(1)[0].sni == "receiver.test"


# -- 5. the retry policy through the worker ----------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_retryable_failures_are_retried_and_final_answers_are_not(atlassian, database_url, receiver, make_addon,
                                                                  monkeypatch):
    import addon.delivery.retry as retry

    # A quick second attempt, then a long wait: every retryable failure shows its retry within the test.
    monkeypatch.setattr(retry, "SCHEDULE_S", (0, 0.3, 3600, 7200, 10800, 14400, 18000, 21600))
    addon = make_addon(database_url, outgoing_timeout_s=1.0)
    _, tenant_id = install(atlassian, addon)
    retryable = {
        "408": ("/s408", dict(status=408), 408, "HTTP 408"),
        "429": ("/s429", dict(status=429), 429, "HTTP 429"),
        "500": ("/s500", dict(status=500), 500, "HTTP 500"),
        "503": ("/s503", dict(status=503), 503, "HTTP 503"),
        "timeout": ("/hang", dict(delay_s=60), None, "timeout after 1.0 s"),
        "refused": (None, None, None, "connection refused"),
    }
    final = {
        "400": ("/s400", dict(status=400), 400, "HTTP 400"),
        "404": ("/s404", dict(status=404), 404, "HTTP 404"),
        "301": ("/s301", dict(redirect_to=receiver.url("/moved")), 301,
                f"HTTP 301, redirect to {receiver.url('/moved')} not followed"),
    }
    hooks = {}
    for name, (path, behaviour, _, _) in {**retryable, **final}.items():
        if path is None:
            url = f"https://localhost:{free_port()}/refused"  # nothing listens there
        else:
            url = receiver.url(path)
            receiver.behave(path, **behaviour)
        hooks[name] = add_webhook(addon, tenant_id, url, name=name)[0]
    enqueue(addon, tenant_id, 1)

    def attempts_by_hook() -> dict[str, list[Attempt]]:
        return {name: attempts_of(addon, Attempt.webhook_id == hook) for name, hook in hooks.items()}

    wait_for(lambda: all(len(attempts_by_hook()[name]) >= 2 for name in retryable), timeout=20,
             message="a second attempt of every retryable failure")
    got = attempts_by_hook()
    for name, (path, _, code, error) in retryable.items():
        assert [(a.attempt, a.status, a.http_code, a.error) for a in got[name]] == [
            (1, "ERROR", code, error), (2, "ERROR", code, error)], name
        [delivery] = deliveries(addon, Delivery.webhook_id == hooks[name])
        assert (delivery.status, delivery.attempt_count) == (DeliveryStatus.PENDING, 2), name
        assert delivery.next_attempt_at > utcnow() + dt.timedelta(minutes=30), name  # the third, per schedule
        if path is not None:
            first, second = receiver.requests_for(path)
            assert first.headers["webhook-id"] == second.headers["webhook-id"] and first.body == second.body
    for name, (path, _, code, error) in final.items():
        assert [(a.attempt, a.status, a.http_code, a.error) for a in got[name]] == [(1, "ERROR", code, error)], name
        [delivery] = deliveries(addon, Delivery.webhook_id == hooks[name])
        assert (delivery.status, delivery.attempt_count) == (DeliveryStatus.FAILED, 1), name
        assert len(receiver.requests_for(path)) == 1, name
        hook = webhook(addon, hooks[name])
        assert hook.enabled and (hook.last_status, hook.last_status_code) == ("ERROR", code)
    assert receiver.requests_for("/moved") == []  # the redirect was not followed


@pytest.mark.timeout(60)
def test_retry_after_is_honoured_between_the_scheduled_gap_and_twice_it(atlassian, database_url, receiver,
                                                                        make_addon):
    addon = make_addon(database_url)
    _, tenant_id = install(atlassian, addon)
    # The second attempt is scheduled 5 s after the event, ±20 %: a jittered gap g in [4, 6] s after the first.
    # A long Retry-After is clamped to 2 g after the failed attempt; a short one (or none) leaves the schedule.
    cases = {
        "long": (dict(status=429, headers={"Retry-After": "3600"}), "attempt", 8.0, 12.0),
        "short": (dict(status=503, headers={"Retry-After": "1"}), "event", 4.0, 6.0),
        "date": (dict(status=503, headers={"Retry-After": formatdate(time.time() + 3600, usegmt=True)}), "attempt",
                 8.0, 12.0),
        "none": (dict(status=429), "event", 4.0, 6.0),
    }
    hooks = {}
    for name, (behaviour, _, _, _) in cases.items():
        receiver.behave(f"/ra-{name}", **behaviour)
        hooks[name] = add_webhook(addon, tenant_id, receiver.url(f"/ra-{name}"), name=name)[0]
    enqueue(addon, tenant_id, 1)
    wait_for(lambda: len(attempts_of(addon)) == len(cases), timeout=20, message="the first attempts")
    for name, (_, since, low, high) in cases.items():
        [attempt] = attempts_of(addon, Attempt.webhook_id == hooks[name])
        [delivery] = deliveries(addon, Delivery.webhook_id == hooks[name])
        assert delivery.status == DeliveryStatus.PENDING and attempt.status == "ERROR"
        start = attempt.at if since == "attempt" else delivery.schedule_started_at
        delay = (delivery.next_attempt_at - start).total_seconds()
        assert low - 0.01 <= delay <= high + 0.01, f"{name}: next attempt {delay:.2f} s after the {since}"


@pytest.mark.timeout(60)
def test_410_disables_the_webhook_as_gone_and_cancels_its_pending_deliveries(atlassian, database_url, receiver,
                                                                            make_addon):
    addon = make_addon(database_url)
    _, tenant_id = install(atlassian, addon)
    gone, _ = add_webhook(addon, tenant_id, receiver.url("/gone"))
    receiver.behave("/gone", status=410, delay_s=0.2)  # four in flight at once, all answered 410 together
    with transaction(addon.sessions) as session:
        now = [enqueue_event(session, tenant_id=tenant_id, source="projectrak", body=body_of(n))[0] for n in range(4)]
        later, _ = enqueue_event(session, tenant_id=tenant_id, source="projectrak", body=body_of(4))
        session.execute(update(Delivery).where(Delivery.event_id == later)  # a retry not due yet
                        .values(next_attempt_at=utcnow() + dt.timedelta(hours=1)))
    addon.runtime.deliveries_committed.notify()
    wait_for(lambda: len(attempts_of(addon)) == 4, timeout=20, message="four attempts recorded")
    hook = webhook(addon, gone)
    assert (hook.enabled, hook.disabled_reason, hook.last_status, hook.last_status_code) == (False, "gone", "ERROR",
                                                                                            410)
    assert {(a.status, a.http_code) for a in attempts_of(addon)} == {("ERROR", 410)}
    sent = deliveries(addon, Delivery.event_id.in_(now))
    assert {d.status for d in sent} <= {DeliveryStatus.FAILED, DeliveryStatus.CANCELLED}
    assert [d.attempt_count for d in sent] == [1, 1, 1, 1]  # every attempt recorded, none lost to a deadlock
    assert [d.status for d in deliveries(addon, Delivery.event_id == later)] == [DeliveryStatus.CANCELLED]
    assert len(receiver.requests_for("/gone")) == 4


@pytest.mark.timeout(60)
def test_a_webhook_failing_for_5_days_is_disabled(atlassian, database_url, receiver, make_addon):
    addon = make_addon(database_url)
    _, tenant_id = install(atlassian, addon)
    five_days_ago = utcnow() - dt.timedelta(days=5, minutes=1)
    hooks = {}
    for name, status, since in (("failing", 500, five_days_ago), ("recovering", 200, five_days_ago),
                                ("young", 500, utcnow() - dt.timedelta(days=4)), ("idle", 500, five_days_ago)):
        receiver.behave(f"/{name}", status=status)
        hooks[name] = add_webhook(addon, tenant_id, receiver.url(f"/{name}"), name=name)[0]
        set_webhook(addon, hooks[name], failing_since=since)
    with transaction(addon.sessions) as session:
        enqueue_event(session, tenant_id=tenant_id, source="projectrak", body=body_of(0))
        # Not due for an hour: a pending retry of `failing`, and `idle`'s only delivery (so no attempt will
        # disable `idle`: housekeeping must).
        later, _ = enqueue_event(session, tenant_id=tenant_id, source="projectrak", body=body_of(1),
                                 webhook_ids=[hooks["failing"]])
        session.execute(update(Delivery).where((Delivery.event_id == later) | (Delivery.webhook_id == hooks["idle"]))
                        .values(next_attempt_at=utcnow() + dt.timedelta(hours=1)))
    addon.runtime.deliveries_committed.notify()

    wait_for(lambda: all(webhook(addon, hooks[n]).last_execution_at for n in ("failing", "recovering", "young")),
             timeout=20, message="the three attempts")
    failing, recovering, young = (webhook(addon, hooks[n]) for n in ("failing", "recovering", "young"))
    assert (failing.enabled, failing.disabled_reason, failing.last_status_code) == (False, "failing", 500)
    failing_deliveries = deliveries(addon, Delivery.webhook_id == hooks["failing"])
    assert [d.attempt_count for d in failing_deliveries] == [1, 0]
    assert failing_deliveries[1].status == DeliveryStatus.CANCELLED
    assert failing_deliveries[0].status in (DeliveryStatus.FAILED, DeliveryStatus.CANCELLED)  # no retry either way
    assert len(receiver.requests_for("/failing")) == 1
    assert (recovering.enabled, recovering.failing_since, recovering.last_status) == (True, None, "OK")
    assert (young.enabled, young.disabled_reason) == (True, None)
    [young_delivery] = deliveries(addon, Delivery.webhook_id == hooks["young"])
    assert young_delivery.status == DeliveryStatus.PENDING  # retried as usual

    assert webhook(addon, hooks["idle"]).enabled
    disable_failing_webhooks(addon.runtime)
    idle = webhook(addon, hooks["idle"])
    assert (idle.enabled, idle.disabled_reason) == (False, "failing")
    assert [d.status for d in deliveries(addon, Delivery.webhook_id == hooks["idle"])] == [DeliveryStatus.CANCELLED]
    assert receiver.requests_for("/idle") == []
    young = webhook(addon, hooks["young"])
    assert (young.enabled, young.disabled_reason) == (True, None)  # four days is not five


@pytest.mark.timeout(60)
def test_a_test_delivery_whose_request_died_is_cancelled_after_an_hour(atlassian, database_url, make_addon):
    """A test delivery is never due (its request sends it). One whose request died before sending stays pending
    until housekeeping cancels it an hour later; younger ones, leased ones and ordinary deliveries are left alone."""
    addon = make_addon(database_url, background=False)
    _, tenant_id = install(atlassian, addon)
    hook, _ = add_webhook(addon, tenant_id, "https://hooks.example.com/t")
    now = utcnow()
    started = {"abandoned": now - dt.timedelta(hours=2), "young": now - dt.timedelta(minutes=10),
               "leased": now - dt.timedelta(hours=2), "ordinary": now - dt.timedelta(hours=2)}
    ids = {}
    with transaction(addon.sessions) as session:
        for name, at in started.items():
            event_id, _ = enqueue_event(session, tenant_id=tenant_id, source="projectrak" if name == "ordinary"
                                        else "test", body=body_of(len(ids)), webhook_ids=[hook])
            ids[name] = session.scalar(select(Delivery.id).where(Delivery.event_id == event_id))
            session.execute(update(Delivery).where(Delivery.id == ids[name]).values(
                schedule_started_at=at, next_attempt_at=now + dt.timedelta(hours=1) if name == "ordinary" else None,
                lease_until=now + dt.timedelta(minutes=1) if name == "leased" else None))
    cancel_abandoned_test_deliveries(addon.runtime)
    status = {name: deliveries(addon, Delivery.id == i)[0].status for name, i in ids.items()}
    assert status == {"abandoned": DeliveryStatus.CANCELLED, "young": DeliveryStatus.PENDING,
                      "leased": DeliveryStatus.PENDING, "ordinary": DeliveryStatus.PENDING}


@pytest.mark.timeout(60)
def test_secret_rotation_signs_with_both_secrets_for_the_grace_period_only(atlassian, database_url, receiver,
                                                                          make_addon):
    addon = make_addon(database_url)
    site, tenant_id = install(atlassian, addon)
    hook, old = add_webhook(addon, tenant_id, receiver.url("/rotating"))

    enqueue(addon, tenant_id, 1)
    [before] = receiver.wait_for(1, timeout=20)
    assert before.headers["webhook-signature"].count("v1,") == 1
    Receiver.verify(before, [old])

    rotated = AdminClient(addon.url, site).request("POST", f"/api/webhooks/{hook}/rotate-secret")
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    assert new != old and new.startswith("whsec_")
    grace = webhook(addon, hook).previous_secret_expires_at - utcnow()
    assert dt.timedelta(hours=23, minutes=59) < grace <= dt.timedelta(hours=24)

    enqueue(addon, tenant_id, 1, first=1)
    during = receiver.wait_for(2, timeout=20)[1]
    signatures = during.headers["webhook-signature"].split(" ")
    assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
    Receiver.verify(during, [old])  # each secret alone verifies the same request
    Receiver.verify(during, [new])

    set_webhook(addon, hook, previous_secret_expires_at=utcnow() - dt.timedelta(seconds=1))  # 24 h later
    enqueue(addon, tenant_id, 1, first=2)
    after = receiver.wait_for(3, timeout=20)[2]
    assert after.headers["webhook-signature"].count("v1,") == 1
    Receiver.verify(after, [new])
    with pytest.raises(WebhookVerificationError):
        Receiver.verify(after, [old])


# -- 6. a disabled tenant pauses, an uninstalled one cancels ---------------------------------------------------


@pytest.mark.timeout(90)
def test_disabled_tenant_pauses_deliveries_and_uninstall_cancels_them(atlassian, database_url, receiver, make_addon):
    addon = make_addon(database_url)
    site, tenant = install(atlassian, addon, enable=True)
    _, other = install(atlassian, addon, enable=True)  # a control tenant, always enabled
    _, secret = add_webhook(addon, tenant, receiver.url("/a"))
    add_webhook(addon, other, receiver.url("/b"))

    def lifecycle(event: str) -> int:
        return site.call(addon.url, "POST", f"/lifecycle/{event}", json_body=site.lifecycle_body(event)).status_code

    def control_round(n: int) -> None:
        """A delivery of the other tenant, due after the paused ones, goes out: the worker passed them over."""
        [control] = enqueue(addon, other, 1, first=100 + n)
        wait_for(lambda: deliveries(addon, Delivery.id == control)[0].status == DeliveryStatus.SUCCEEDED,
                 timeout=20, message="the control delivery")

    assert lifecycle("disabled") == 204
    paused = enqueue(addon, tenant, 3)  # pending while the tenant is disabled
    control_round(1)
    unsigned = addon.url + "/lifecycle/enabled"
    assert requests.post(unsigned, json=site.lifecycle_body("enabled"), timeout=10).status_code == 401
    control_round(2)
    rows = deliveries(addon, Delivery.id.in_(paused))
    assert [(d.status, d.attempt_count, d.lease_until) for d in rows] == [(DeliveryStatus.PENDING, 0, None)] * 3
    assert receiver.requests_for("/a") == []

    assert lifecycle("enabled") == 204
    resumed = receiver.wait_for(3, timeout=20, path="/a")
    verify_all(resumed, {"/a": secret})
    wait_for(lambda: count_deliveries(addon, Delivery.id.in_(paused),
                                      Delivery.status == DeliveryStatus.SUCCEEDED) == 3, timeout=20)

    # Uninstall: a retry pending after a failure and deliveries paused by a disable are all cancelled.
    receiver.behave("/a", status=503)
    [retrying] = enqueue(addon, tenant, 1, first=10)
    wait_for(lambda: deliveries(addon, Delivery.id == retrying)[0].attempt_count == 1, timeout=20)
    assert lifecycle("disabled") == 204
    waiting = enqueue(addon, tenant, 2, first=11)
    assert site.install(addon.url, event="uninstalled").status_code == 204
    cancelled = deliveries(addon, Delivery.id.in_([retrying, *waiting]))
    assert [d.status for d in cancelled] == [DeliveryStatus.CANCELLED] * 3
    assert all(d.finished_at is not None and d.lease_until is None for d in cancelled)
    receiver.behave("/a", status=200)
    control_round(3)
    assert len(receiver.requests_for("/a")) == 4  # three resumed, one failed attempt; nothing after
    assert attempts_of(addon, Attempt.delivery_id.in_(waiting)) == []
    assert lifecycle("enabled") == 401  # every token of an uninstalled tenant
