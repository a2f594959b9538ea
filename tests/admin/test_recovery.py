"""Recovery (CONTRACT §10.4): `POST /api/webhooks/{id}/recover` queues again what did not succeed since a time,
with the `webhook-id`s it had, on a fresh schedule; a disabled webhook is 409; a bad time 422."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, update

from addon.storage.engine import transaction
from addon.storage.models import Delivery, DeliveryStatus, utcnow
from tests.support.addon_server import wait_for
from tests.support.delivery import emit


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
