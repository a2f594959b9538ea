"""Recovery (CONTRACT §10.4): `POST /api/webhooks/{id}/recover` queues again what did not succeed since a time,
with the `webhook-id`s it had, on a fresh schedule; a disabled webhook is 409; a bad time 422."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, insert, select, update

from addon.delivery.outcomes import MAX_RECOVERED
from addon.delivery.worker import DeliveryWorker
from addon.storage.engine import transaction
from addon.storage.models import Delivery, DeliveryStatus, utcnow
from tests.conftest import make_settings
from tests.support.addon_server import AddonServer, wait_for
from tests.support.admin import AdminClient
from tests.support.delivery import emit, tenant_id_of


def _deliveries(addon, webhook_id):  # type: ignore[no-untyped-def]
    with addon.sessions() as session:
        return list(session.scalars(select(Delivery).where(Delivery.webhook_id == webhook_id).order_by(Delivery.id)))


@pytest.mark.timeout(90)
def test_recover_resends_what_failed_since_a_time_with_the_same_ids(hooked, receiver):
    addon, admin, tenant_id = hooked
    receiver.behave("/down", status=503)
    webhook_id = admin.create("down", receiver.url("/down"))["id"]
    for _ in range(5):
        emit(addon, tenant_id)
    receiver.wait_for(5, timeout=20, path="/down")
    wait_for(lambda: all(d.attempt_count >= 1 and d.lease_until is None for d in _deliveries(addon, webhook_id)),
             message="the first attempts recorded")
    old, gave_up, cancelled, succeeded, final = _deliveries(addon, webhook_id)
    before = utcnow() - dt.timedelta(hours=2)
    with transaction(addon.sessions) as session:  # the outage's outcomes, without waiting 12 h
        session.execute(update(Delivery).where(Delivery.id == old.id).values(
            status=DeliveryStatus.FAILED, created_at=before - dt.timedelta(hours=1), finished_at=utcnow()))
        for delivery, status in ((gave_up, DeliveryStatus.FAILED), (cancelled, DeliveryStatus.CANCELLED),
                                 (succeeded, DeliveryStatus.SUCCEEDED), (final, DeliveryStatus.FAILED)):
            session.execute(update(Delivery).where(Delivery.id == delivery.id).values(
                status=status, finished_at=utcnow()))
    receiver.clear()
    receiver.behave("/down", status=200)

    since = before.isoformat().replace("+00:00", "Z")
    answer = admin.request("POST", f"/api/webhooks/{webhook_id}/recover", {"since": since})
    assert answer.status_code == 202, answer.text
    assert answer.json() == {"queued": 3, "remaining": 0}
    sent = receiver.wait_for(3, timeout=20, path="/down")
    assert sorted(r.headers["webhook-id"] for r in sent) == sorted(
        d.message_id for d in (gave_up, cancelled, final))
    wait_for(lambda: {d.id: d.status for d in _deliveries(addon, webhook_id)} == {
        old.id: "failed", gave_up.id: "succeeded", cancelled.id: "succeeded", succeeded.id: "succeeded",
        final.id: "succeeded"}, message="the recovered deliveries delivered")
    recovered = [d for d in _deliveries(addon, webhook_id) if d.id in (gave_up.id, cancelled.id, final.id)]
    assert all(d.attempt_count == 1 for d in recovered)  # a fresh schedule
    again = admin.request("POST", f"/api/webhooks/{webhook_id}/recover", {"since": since})
    assert again.json() == {"queued": 0, "remaining": 0}


@pytest.mark.timeout(60)
def test_recover_refuses_a_disabled_webhook_and_a_bad_time(hooked, receiver):
    _addon, admin, _tenant_id = hooked
    webhook_id = admin.create("off", receiver.url("/off"), enabled=False)["id"]
    answer = admin.request("POST", f"/api/webhooks/{webhook_id}/recover", {"since": "2026-01-01T00:00:00Z"})
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "webhook_disabled"
    for body, named in (({}, "since"), ({"since": "yesterday"}, "since"), ({"since": "2026-01-01T00:00:00"}, "since"),
                        ({"since": 5}, "since"), ({"since": "2026-01-01T00:00:00Z", "x": 1}, "x")):
        answer = admin.request("POST", f"/api/webhooks/{webhook_id}/recover", body)
        assert answer.status_code == 422 and answer.json()["error"]["message"].startswith(f"{named}: "), answer.text
    assert admin.request("POST", "/api/webhooks/999999/recover", {"since": "2026-01-01T00:00:00Z"}).status_code == 404


@pytest.fixture
def idle(atlassian, database_url, receiver):
    """The add-on without its background work: deliveries stay as a test stores them until it starts a worker."""
    server = AddonServer(make_settings(atlassian, database_url, ca_bundle=receiver.ca_path, outgoing_timeout_s=5.0),
                         background=False)
    site = atlassian.new_site()
    site.admins.add("admin-account")
    site.add_project(10000, "DEMO", "Demo project")
    assert site.install(server.url).status_code == 204
    yield server, AdminClient(server.url, site), tenant_id_of(server, site.client_key)
    server.stop()


@pytest.mark.timeout(90)
def test_recovered_deliveries_reach_the_receiver_oldest_first_with_their_ids(idle, receiver):
    addon, admin, tenant_id = idle
    webhook_id = admin.create("orders", receiver.url("/orders"))["id"]
    for _ in range(6):
        emit(addon, tenant_id)
    deliveries = _deliveries(addon, webhook_id)
    start = utcnow() - dt.timedelta(hours=3)
    statuses = [DeliveryStatus.FAILED, DeliveryStatus.CANCELLED, DeliveryStatus.SUCCEEDED, DeliveryStatus.FAILED,
                DeliveryStatus.CANCELLED, DeliveryStatus.FAILED]
    with transaction(addon.sessions) as session:  # an outage's outcomes, accepted a minute apart
        for minute, (delivery, status) in enumerate(zip(deliveries, statuses, strict=True)):
            session.execute(update(Delivery).where(Delivery.id == delivery.id).values(
                status=status, attempt_count=8, created_at=start + dt.timedelta(minutes=minute),
                finished_at=utcnow()))
    answer = admin.request("POST", f"/api/webhooks/{webhook_id}/recover",
                           {"since": (start - dt.timedelta(seconds=1)).isoformat()})
    assert answer.status_code == 202 and answer.json() == {"queued": 5, "remaining": 0}

    worker = DeliveryWorker(addon.runtime, 1).start()  # one attempt at a time: the order is the claim's
    try:
        sent = receiver.wait_for(5, timeout=30, path="/orders")
    finally:
        worker.stop()
    expected = [d.message_id for d, status in zip(deliveries, statuses, strict=True)
                if status != DeliveryStatus.SUCCEEDED]
    assert [r.headers["webhook-id"] for r in sent] == expected


@pytest.mark.timeout(180)
def test_one_recovery_queues_at_most_10000_and_says_how_many_are_left(idle, receiver):
    addon, admin, tenant_id = idle
    webhook_id = admin.create("bulk", receiver.url("/bulk"))["id"]
    event_id = emit(addon, tenant_id)
    start = utcnow() - dt.timedelta(days=1)
    total = MAX_RECOVERED + 3
    with transaction(addon.sessions) as session:  # an outage's 10,003 given-up deliveries, stored in one go
        session.execute(insert(Delivery), [
            {"tenant_id": tenant_id, "event_id": event_id, "webhook_id": webhook_id, "message_id": f"msg_bulk_{n}",
             "status": DeliveryStatus.FAILED, "attempt_count": 8, "next_attempt_at": start,
             "created_at": start + dt.timedelta(seconds=n), "schedule_started_at": start, "finished_at": start}
            for n in range(total)])
    since = {"since": (start - dt.timedelta(seconds=1)).isoformat().replace("+00:00", "Z")}
    first = admin.request("POST", f"/api/webhooks/{webhook_id}/recover", since)
    assert first.status_code == 202 and first.json() == {"queued": MAX_RECOVERED, "remaining": 3}
    with addon.sessions() as session:
        left = session.scalars(select(Delivery.message_id).where(
            Delivery.webhook_id == webhook_id, Delivery.status == DeliveryStatus.FAILED)).all()
        pending = session.scalar(select(func.count()).select_from(Delivery).where(
            Delivery.webhook_id == webhook_id, Delivery.status == DeliveryStatus.PENDING))
    assert sorted(left) == sorted(f"msg_bulk_{n}" for n in range(MAX_RECOVERED, total))  # the newest wait
    assert pending == MAX_RECOVERED + 1  # and the event emitted above, never sent (no worker)
    second = admin.request("POST", f"/api/webhooks/{webhook_id}/recover", since)
    assert second.json() == {"queued": 3, "remaining": 0}
