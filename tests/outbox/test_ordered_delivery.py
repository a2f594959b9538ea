"""Ordered webhooks (CONTRACT §10.2): one delivery at a time per (webhook, project), in `Projectrak-Sequence` order,
retries included; a delivery that ends (given up, final error, cancelled) releases the next; other projects and
other webhooks never wait; a crashed worker loses no place in line. Against real HTTPS receivers, on both
databases; the one wait on the clock a test cannot afford (a retry minutes away, a lease a minute long) is moved in
the database, as time passing would."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select, update

from addon.outbox.claim import claim, release
from addon.outbox.store import enqueue_event
from addon.storage.engine import transaction
from addon.storage.models import Delivery, DeliveryStatus, utcnow
from tests.conftest import make_settings
from tests.receivers import ReceivedRequest, Receiver
from tests.support.addon_server import AddonServer, wait_for
from tests.support.admin import AdminClient
from tests.support.atlassian import FakeAtlassian, FakeSite
from tests.support.intake import install_and_enable, post_changes
from tests.support.processes import AddonProcess, addon_env

FERNET_KEY = Fernet.generate_key().decode()
A, B = 13647, 20000
#: What the receiver finds in a body of project A (the project object's start).
A_MARK = b'"project":{"id":13647'


def change(project_id: int, n: int) -> dict[str, Any]:
    return {"project": {"id": project_id}, "timestamp": 1675182117615 + n,
            "changes": [{"field": {"id": 12345, "name": "Budget", "type": "number"}, "previous": n, "current": n + 1}]}


@pytest.fixture
def make_addon(atlassian: FakeAtlassian, receiver: Receiver) -> Iterator[Any]:
    servers: list[AddonServer] = []

    def make(database_url: str, *, background: bool = True, timeout_s: float = 5.0) -> AddonServer:
        server = AddonServer(make_settings(atlassian, database_url, ca_bundle=receiver.ca_path, secret_key=FERNET_KEY,
                                           outgoing_timeout_s=timeout_s), background=background)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def new_site(atlassian: FakeAtlassian, addon: AddonServer) -> FakeSite:
    site = atlassian.new_site()
    site.admins.add("admin-account")
    site.add_project(A, "ALPHA", "Alpha")
    site.add_project(B, "BETA", "Beta")
    install_and_enable(site, addon)
    return site


def seen(requests: list[ReceivedRequest], project_id: int) -> list[int]:
    """The sequence numbers of `project_id`'s requests, in the order they arrived."""
    return [int(r.headers["projectrak-sequence"]) for r in requests
            if json.loads(r.body)["data"]["project"]["id"] == project_id]


def line(addon: AddonServer, webhook_id: int, project_id: int) -> list[Delivery]:
    with addon.sessions() as session:
        return list(session.scalars(select(Delivery).where(Delivery.webhook_id == webhook_id,
                                                           Delivery.project_id == str(project_id))
                                    .order_by(Delivery.sequence)))


def make_due_now(addon: AddonServer, *conditions: Any) -> None:
    """What time passing does to a waiting retry (or a dead worker's lease): due now."""
    with transaction(addon.sessions) as session:
        session.execute(update(Delivery).where(Delivery.status == DeliveryStatus.PENDING, *conditions)
                        .values(next_attempt_at=utcnow(), lease_until=None))
    addon.runtime.deliveries_committed.notify()


def test_ordered_is_a_webhook_setting_false_by_default(database_url, make_addon, atlassian):
    addon = make_addon(database_url, background=False)
    admin = AdminClient(addon.url, new_site(atlassian, addon))
    plain = admin.create(name="plain")
    assert plain["ordered"] is False
    ordered = admin.create(name="ordered", ordered=True)
    assert ordered["ordered"] is True
    assert admin.request("GET", f"/api/webhooks/{ordered['id']}").json()["ordered"] is True
    changed = admin.request("PATCH", f"/api/webhooks/{plain['id']}", {"ordered": True})
    assert changed.status_code == 200 and changed.json()["ordered"] is True
    bad = admin.request("PATCH", f"/api/webhooks/{plain['id']}", {"ordered": "yes"})
    assert bad.status_code == 422 and "ordered" in bad.json()["error"]["message"]


def test_a_failing_project_waits_in_order_while_the_other_flows_then_drains(database_url, make_addon, atlassian,
                                                                            receiver):
    addon = make_addon(database_url)
    site = new_site(atlassian, addon)
    admin = AdminClient(addon.url, site)
    ordered = admin.create(name="ordered", url=receiver.url("/ordered"), ordered=True)
    admin.create(name="plain", url=receiver.url("/plain"))  # an unordered webhook beside it
    receiver.behave("/ordered", status_by_body=((A_MARK, 503),))  # A fails, B succeeds
    for n, project_id in enumerate([A, B, A, B, A, B]):
        assert post_changes(site, addon, change(project_id, n)).status_code == 202

    # B's three go through in order; A's head was tried and is waiting for its retry; nothing behind it was sent.
    wait_for(lambda: seen(receiver.requests_for("/ordered"), B) == [1, 2, 3], message="B's deliveries")
    wait_for(lambda: len(receiver.requests_for("/plain")) == 6, message="the unordered webhook's deliveries")
    assert set(seen(receiver.requests_for("/ordered"), A)) == {1}
    heads = line(addon, ordered["id"], A)
    assert [d.status for d in heads] == [DeliveryStatus.PENDING] * 3 and heads[0].attempt_count >= 1
    assert [d.attempt_count for d in heads[1:]] == [0, 0]

    # The receiver recovers; the head's retry comes due (moved to now, as the clock would): A drains in order.
    receiver.behave("/ordered")
    make_due_now(addon, Delivery.id == heads[0].id)
    wait_for(lambda: all(d.status == DeliveryStatus.SUCCEEDED for d in line(addon, ordered["id"], A)),
             timeout=20, message="A's line to drain")
    arrivals = seen(receiver.requests_for("/ordered"), A)
    assert arrivals == sorted(arrivals) and sorted(set(arrivals)) == [1, 2, 3]
    assert arrivals.count(2) == arrivals.count(3) == 1  # each sent once, after its predecessor succeeded


def test_a_delivery_that_ends_on_a_final_error_releases_the_next(database_url, make_addon, atlassian, receiver):
    addon = make_addon(database_url)
    site = new_site(atlassian, addon)
    admin = AdminClient(addon.url, site)
    ordered = admin.create(name="ordered", url=receiver.url("/final"), ordered=True)
    receiver.behave("/final", status_by_body=((b'"current":"1"', 400),))  # the first event: a final answer
    for n in range(3):
        assert post_changes(site, addon, change(A, n)).status_code == 202
    wait_for(lambda: [d.status for d in line(addon, ordered["id"], A)]
             == [DeliveryStatus.FAILED, DeliveryStatus.SUCCEEDED, DeliveryStatus.SUCCEEDED], message="the line")
    assert seen(receiver.requests_for("/final"), A) == [1, 2, 3]


def test_given_up_and_cancelled_deliveries_release_the_next_and_redelivery_keeps_its_place(database_url, make_addon,
                                                                                           atlassian, receiver):
    addon = make_addon(database_url, background=False)
    site = new_site(atlassian, addon)
    admin = AdminClient(addon.url, site)
    ordered = admin.create(name="ordered", url=receiver.url("/line"), ordered=True)
    tenant_id = _tenant_id(addon, ordered["id"])
    with transaction(addon.sessions) as session:
        for n in range(4):
            enqueue_event(session, tenant_id=tenant_id, source="projectrak", body={"n": n}, project_id=str(A))
        enqueue_event(session, tenant_id=tenant_id, source="projectrak", body={"n": 9}, project_id=str(B))
    first, second, third, fourth = line(addon, ordered["id"], A)

    jobs = claim(addon.runtime, 10)
    assert sorted(job.sequence for job in jobs) == [1, 1]  # the head of A's line and of B's, nothing behind A's
    assert {job.delivery_id for job in jobs} >= {first.id}
    assert claim(addon.runtime, 10) == []  # the heads are leased: their lines wait
    release(addon.runtime, [job.delivery_id for job in jobs])

    with transaction(addon.sessions) as session:  # the head given up, the next cancelled (as outcomes end them)
        session.execute(update(Delivery).where(Delivery.id == first.id).values(status=DeliveryStatus.FAILED))
        session.execute(update(Delivery).where(Delivery.id == second.id).values(status=DeliveryStatus.CANCELLED))
    assert [job.delivery_id for job in claim(addon.runtime, 10) if job.delivery_id in
            {third.id, fourth.id}] == [third.id]
    release(addon.runtime, [third.id])

    # A redelivered earlier delivery goes back to its place at the front of the line.
    assert admin.request("POST", f"/api/deliveries/{first.id}/redeliver").status_code == 202
    jobs = [job for job in claim(addon.runtime, 10) if job.delivery_id in {first.id, third.id, fourth.id}]
    assert [(job.delivery_id, job.sequence) for job in jobs] == [(first.id, 1)]


@pytest.mark.timeout(120)
def test_a_worker_killed_mid_queue_loses_no_place_in_line(database_url, make_addon, atlassian, receiver,
                                                          tmp_path: Path):
    addon = make_addon(database_url, background=False)  # the web side only; the worker is a process
    site = new_site(atlassian, addon)
    admin = AdminClient(addon.url, site)
    ordered = admin.create(name="ordered", url=receiver.url("/slow"), ordered=True)
    receiver.behave("/slow", delay_s=30)  # the head hangs: it is in flight when the worker dies
    for n in range(3):
        assert post_changes(site, addon, change(A, n)).status_code == 202
    env = addon_env(DATABASE_URL=database_url, ADDON_SECRET_KEY=FERNET_KEY, OUTGOING_ALLOW_PRIVATE_NETWORKS="1",
                    OUTGOING_CA_BUNDLE=receiver.ca_path, OUTGOING_TIMEOUT_S="20")
    worker = AddonProcess(["worker", "--concurrency", "8"], env, tmp_path, tmp_path / "worker-1.log")
    try:
        receiver.wait_for(1, timeout=30)
        worker.signal(signal.SIGKILL)
        worker.proc.wait(10)
    finally:
        worker.stop()
    head = line(addon, ordered["id"], A)[0]
    assert head.status == DeliveryStatus.PENDING and head.lease_until is not None and head.attempt_count == 0
    assert seen(receiver.requests_for("/slow"), A) == [1]  # nothing behind the in-flight head was sent

    receiver.behave("/slow")
    make_due_now(addon, Delivery.id == head.id)  # its lease ends, as time would end it
    second = AddonProcess(["worker", "--concurrency", "8"], env, tmp_path, tmp_path / "worker-2.log")
    try:
        wait_for(lambda: all(d.status == DeliveryStatus.SUCCEEDED for d in line(addon, ordered["id"], A)),
                 timeout=60, message="the line after the restart")
    finally:
        second.stop()
    assert seen(receiver.requests_for("/slow"), A) == [1, 1, 2, 3]  # the head again (at least once), then in order


def _tenant_id(addon: AddonServer, webhook_id: int) -> int:
    from addon.storage.models import Webhook

    with addon.sessions() as session:
        return session.get_one(Webhook, webhook_id).tenant_id


@pytest.mark.timeout(120)
def test_a_project_whose_deliveries_hang_holds_up_no_other_project(database_url, make_addon, atlassian, receiver):
    """The receiver hangs on project A's deliveries (past the add-on's timeout): A's head times out, is retried and
    hangs again, and all the while project B's deliveries go through, one after another, well within the 12 s
    that A's attempt may hang (a webhook left unanswered would otherwise get one attempt at a time)."""
    addon = make_addon(database_url, timeout_s=12.0)
    site = new_site(atlassian, addon)
    admin = AdminClient(addon.url, site)
    ordered = admin.create(name="ordered", url=receiver.url("/hang"), ordered=True)
    receiver.behave("/hang", delay_by_body=((A_MARK, 60.0),))
    assert post_changes(site, addon, change(A, 0)).status_code == 202
    # A's head gets no answer (a timeout after 12 s), its retry is due (5 s after the change), and it hangs again:
    # an unanswered webhook would now get one attempt at a time, but an ordered one keeps one per project.
    wait_for(lambda: len(seen(receiver.requests_for("/hang"), A)) == 2, timeout=40, message="A's head hanging again")

    for n in range(1, 4):
        assert post_changes(site, addon, change(B, n)).status_code == 202
    wait_for(lambda: seen(receiver.requests_for("/hang"), B) == [1, 2, 3], timeout=8, message="B, past A's hang")
    assert seen(receiver.requests_for("/hang"), A) == [1, 1]  # still hanging: B did not wait for it
    assert line(addon, ordered["id"], A)[0].status == DeliveryStatus.PENDING

