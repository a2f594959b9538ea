"""`GET /api/webhooks/{id}/delivery-log`: the admin page's log, one item per delivery with its attempts nested."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from addon.storage.engine import transaction
from addon.storage.models import Attempt, Delivery, DeliveryStatus, utcnow
from tests.admin.conftest import hooked_addon
from tests.support.addon_server import wait_for
from tests.support.admin import AdminClient
from tests.support.delivery import emit


@pytest.fixture
def hooked(atlassian, database_url, receiver):
    """`hooked`, with the site too."""
    with hooked_addon(atlassian, database_url, receiver) as world:
        yield world


def _log(admin: AdminClient, webhook_id: int, query: str = "") -> dict:
    answer = admin.request("GET", f"/api/webhooks/{webhook_id}/delivery-log{query}")
    assert answer.status_code == 200, answer.text
    return answer.json()


def _attempts(addon, webhook_id: int) -> list[Attempt]:  # type: ignore[no-untyped-def]
    with addon.sessions() as session:
        return list(session.scalars(select(Attempt).where(Attempt.webhook_id == webhook_id)))


@pytest.mark.timeout(90)
def test_each_delivery_with_its_state_next_attempt_and_attempts_and_a_redelivery_marked(hooked, receiver):
    addon, admin, tenant_id, _ = hooked
    receiver.behave("/log", status=503)
    webhook_id = admin.create("Log", receiver.url("/log"))["id"]
    emit(addon, tenant_id)
    first = receiver.wait_for(1, path="/log")[0]
    wait_for(lambda: _attempts(addon, webhook_id), message="the failed attempt recorded")

    [retrying] = _log(admin, webhook_id)["items"]
    assert retrying["event"] == "updated"
    assert retrying["project"] == {"id": 10000, "key": "DEMO", "name": "Demo project"}
    assert retrying["state"] == "retrying" and retrying["next_attempt_at"] is not None
    assert retrying["webhook_id_header"] == first.headers["webhook-id"]
    assert retrying["redelivered"] is False
    assert [(a["attempt"], a["status"], a["http_code"], a["redelivery"]) for a in retrying["attempts"]] == [
        (1, "ERROR", 503, False)]

    receiver.behave("/log", status=200)
    tested = admin.request("POST", f"/api/webhooks/{webhook_id}/test")
    assert tested.status_code == 200, tested.text
    items = _log(admin, webhook_id)["items"]
    assert [(i["event"], i["state"]) for i in items] == [("test", "delivered"), ("updated", "retrying")]
    assert items[0]["next_attempt_at"] is None
    # failed only: what is retrying or gave up
    assert [i["delivery_id"] for i in _log(admin, webhook_id, "?failed=true")["items"]] == [retrying["delivery_id"]]
    # one delivery a page, newest first
    page = _log(admin, webhook_id, "?limit=1")
    assert [i["event"] for i in page["items"]] == ["test"] and page["next"] is not None
    rest = _log(admin, webhook_id, f"?limit=1&before={page['next']}")
    assert [i["event"] for i in rest["items"]] == ["updated"] and rest["next"] is None

    with transaction(addon.sessions) as session:  # as if its 8 attempts had all failed
        session.execute(update(Delivery).where(Delivery.id == retrying["delivery_id"]).values(
            status=DeliveryStatus.FAILED, attempt_count=8, next_attempt_at=None, finished_at=utcnow()))
    gave_up = _log(admin, webhook_id, "?failed=true")["items"][0]
    assert (gave_up["state"], gave_up["next_attempt_at"]) == ("gave_up", None)

    assert admin.request("POST", f"/api/deliveries/{retrying['delivery_id']}/redeliver").status_code == 202
    receiver.wait_for(3, path="/log")

    def redelivered():  # type: ignore[no-untyped-def]
        item = _log(admin, webhook_id)["items"][1]
        return item if item["state"] == "delivered" else None

    item = wait_for(redelivered, message="the redelivery recorded")
    assert item["redelivered"] is True
    assert [(a["attempt"], a["status"], a["redelivery"]) for a in item["attempts"]] == [
        (1, "OK", True), (1, "ERROR", False)]
    assert _log(admin, webhook_id, "?failed=true")["items"] == []


def test_bad_parameters_and_another_tenants_webhook(hooked, atlassian):
    addon, admin, _, _ = hooked
    webhook_id = admin.create("Mine", "https://93.184.215.14/mine")["id"]
    for query in ("?failed=maybe", "?limit=0", "?limit=101", "?before=x"):
        answer = admin.request("GET", f"/api/webhooks/{webhook_id}/delivery-log{query}")
        assert answer.status_code == 400, (query, answer.text)
        assert answer.json()["error"]["code"] == "invalid_parameter"
    other = atlassian.new_site()
    other.admins.add("admin-account")
    assert other.install(addon.url).status_code == 204
    answer = AdminClient(addon.url, other).request("GET", f"/api/webhooks/{webhook_id}/delivery-log")
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"
    assert _log(admin, webhook_id)["items"] == []


def test_a_long_body_is_cut_and_its_event_and_project_still_read(hooked, receiver):
    addon, admin, tenant_id, _ = hooked
    webhook_id = admin.create("Long", receiver.url("/long-log"))["id"]
    project = {"id": 10000, "key": "DEMO", "name": 'A "quoted" \u00e9 name'}
    emit(addon, tenant_id, {"data": {"event": "updated", "user": "u-1", "timestamp": 1, "project": project,
                                     "fields": [{"id": 1, "name": "Note", "type": "text",
                                                 "value": {"current": "x" * 5000, "previous": None}}]}})
    receiver.wait_for(1, path="/long-log")
    wait_for(lambda: _attempts(addon, webhook_id), message="the attempt recorded")
    [item] = _log(admin, webhook_id)["items"]
    assert (item["event"], item["project"]) == ("updated", project)
    assert item["request_body_truncated"] is True and len(item["request_body"]) == 2048
    whole = admin.request("GET", f"/api/attempts/{item['attempts'][0]['id']}").json()["request_body"]
    assert whole.startswith(item["request_body"]) and len(whole) > 5000
