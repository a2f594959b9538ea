"""Custom headers per webhook (CONTRACT §10.3): checked with a 422 naming the header, stored sealed, never shown
again (names listed, each value null), replaced as a whole by a PATCH (a name given with null keeps its value), and
sent on every attempt, test and redelivery."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select, update

from addon.storage.engine import transaction
from addon.storage.models import Attempt, Delivery, DeliveryStatus, Webhook, utcnow
from tests.admin.conftest import hooked_addon
from tests.support.addon_server import wait_for
from tests.support.delivery import emit

VALUE = "Bearer gateway-key-0123456789"


@pytest.fixture
def hooked(atlassian, database_url, receiver):
    """`hooked` with a secret key of its own, which seals the headers' values."""
    with hooked_addon(atlassian, database_url, receiver, secret_key=Fernet.generate_key().decode()) as world:
        yield world[:3]


@pytest.mark.timeout(90)
def test_headers_are_sent_on_every_attempt_test_and_redelivery_and_never_shown(hooked, receiver):
    addon, admin, tenant_id = hooked
    receiver.behave("/gw", status=503)
    created = admin.create("gateway", receiver.url("/gw"), headers={"Authorization": VALUE, "X-Tenant": "acme"})
    webhook_id = created["id"]
    assert created["headers"] == {"Authorization": None, "X-Tenant": None}
    for answer in (admin.request("GET", f"/api/webhooks/{webhook_id}"), admin.request("GET", "/api/webhooks")):
        assert answer.status_code == 200 and VALUE not in answer.text and "acme" not in answer.text
    with addon.sessions() as session:  # sealed at rest
        stored = session.get(Webhook, webhook_id).headers
    assert VALUE not in stored and "acme" not in stored and "Authorization" in stored

    emit(addon, tenant_id)
    first, second = receiver.wait_for(2, timeout=20, path="/gw")  # a first attempt and its retry
    test = admin.request("POST", f"/api/webhooks/{webhook_id}/test")
    assert test.status_code == 200, test.text
    wait_for(lambda: len(receiver.requests_for("/gw")) >= 3, message="the test delivery")
    with transaction(addon.sessions) as session:  # as if its attempts had all failed
        delivery = session.scalar(select(Delivery).where(Delivery.webhook_id == webhook_id,
                                                         Delivery.next_attempt_at.is_not(None)))
        session.execute(update(Delivery).where(Delivery.id == delivery.id).values(
            status=DeliveryStatus.FAILED, attempt_count=8, finished_at=utcnow()))
    receiver.behave("/gw", status=200)
    assert admin.request("POST", f"/api/deliveries/{delivery.id}/redeliver").status_code == 202
    wait_for(lambda: len(receiver.requests_for("/gw")) >= 4, message="the redelivery")
    for request in receiver.requests_for("/gw")[:4]:
        assert request.headers["authorization"] == VALUE and request.headers["x-tenant"] == "acme"
        assert request.headers["webhook-signature"]
    log = admin.request("GET", f"/api/webhooks/{webhook_id}/deliveries")
    assert VALUE not in log.text
    assert wait_for(lambda: len(_attempts(addon, webhook_id)) >= 4, message="the attempts recorded")


def _attempts(addon, webhook_id):  # type: ignore[no-untyped-def]
    with addon.sessions() as session:
        return list(session.scalars(select(Attempt).where(Attempt.webhook_id == webhook_id)))


@pytest.mark.timeout(60)
def test_patch_replaces_all_headers_and_null_keeps_a_stored_value(hooked, receiver):
    addon, admin, _tenant_id = hooked
    webhook_id = admin.create("gw", receiver.url("/p"), headers={"Authorization": VALUE, "X-Old": "1"})["id"]
    answer = admin.request("PATCH", f"/api/webhooks/{webhook_id}", {"headers": {"authorization": None, "X-New": "2"}})
    assert answer.status_code == 200, answer.text
    assert answer.json()["headers"] == {"authorization": None, "X-New": None}
    assert admin.request("POST", f"/api/webhooks/{webhook_id}/test").status_code == 200
    [sent] = receiver.wait_for(1, path="/p")
    assert sent.headers["authorization"] == VALUE and sent.headers["x-new"] == "2" and "x-old" not in sent.headers
    answer = admin.request("PATCH", f"/api/webhooks/{webhook_id}", {"headers": {"X-Gone": None}})
    assert answer.status_code == 422 and "headers.X-Gone" in answer.json()["error"]["message"]
    assert admin.request("PATCH", f"/api/webhooks/{webhook_id}", {"name": "kept"}).json()["headers"] == {
        "authorization": None, "X-New": None}  # a PATCH without headers keeps them
    assert "headers" not in admin.request("PATCH", f"/api/webhooks/{webhook_id}", {"headers": {}}).json()
    receiver.clear()
    assert admin.request("POST", f"/api/webhooks/{webhook_id}/test").status_code == 200
    [sent] = receiver.wait_for(1, path="/p")
    assert "authorization" not in sent.headers and "x-new" not in sent.headers
    assert admin.request("PATCH", f"/api/webhooks/{webhook_id}", {"headers": {"X-Back": "3"}}).status_code == 200
    cleared = admin.request("PATCH", f"/api/webhooks/{webhook_id}", {"headers": None})  # null clears them, as {}
    assert cleared.status_code == 200 and "headers" not in cleared.json(), cleared.text
    receiver.clear()
    assert admin.request("POST", f"/api/webhooks/{webhook_id}/test").status_code == 200
    [sent] = receiver.wait_for(1, path="/p")
    assert "x-back" not in sent.headers
    created = admin.request("POST", "/api/webhooks", {"name": "n", "url": receiver.url("/n"), "headers": None})
    assert created.status_code == 201 and "headers" not in created.json(), created.text


@pytest.mark.timeout(60)
def test_values_with_surrounding_spaces_are_sent_as_http_reads_them(hooked, receiver):
    _addon, admin, _tenant_id = hooked
    webhook_id = admin.create("sp", receiver.url("/sp"), headers={"X-Pad": " padded  value ", "X-Blank": "   "})["id"]
    tested = admin.request("POST", f"/api/webhooks/{webhook_id}/test")
    assert tested.status_code == 200 and tested.json()["status"] == "OK", tested.text
    [sent] = receiver.wait_for(1, path="/sp")
    assert sent.headers["x-pad"] == "padded  value" and sent.headers["x-blank"] == ""


INVALID = [
    ({"Host": "x"}, "headers.Host"),
    ({"content-type": "x"}, "headers.content-type"),
    ({"Content-Length": "1"}, "headers.Content-Length"),
    ({"Connection": "close"}, "headers.Connection"),
    ({"Transfer-Encoding": "chunked"}, "headers.Transfer-Encoding"),
    ({"User-Agent": "me"}, "headers.User-Agent"),
    ({"Webhook-Signature": "v1,x"}, "headers.Webhook-Signature"),
    ({"projectrak-thing": "x"}, "headers.projectrak-thing"),
    ({"Bad Name": "x"}, "headers.Bad Name"),
    ({"X" * 65: "x"}, "headers." + "X" * 65),
    ({"X-Long": "v" * 1025}, "headers.X-Long"),
    ({"X-Ctl": "a\nb"}, "headers.X-Ctl"),
    ({"X-Uni": "caf\u00e9"}, "headers.X-Uni"),
    ({"X-Num": 5}, "headers.X-Num"),
    ({"X-Null": None}, "headers.X-Null"),
    ({"X-A": "1", "x-a": "2"}, "headers.x-a"),
    ({f"X-{n}": "v" for n in range(11)}, "headers"),
    (["X-A"], "headers"),
]


@pytest.mark.timeout(60)
def test_invalid_headers_are_422_naming_the_header(hooked, receiver):
    _addon, admin, _tenant_id = hooked
    for headers, named in INVALID:
        answer = admin.request("POST", "/api/webhooks", {"name": "n", "url": receiver.url("/n"), "headers": headers})
        assert answer.status_code == 422, (headers, answer.text)
        assert answer.json()["error"]["message"].startswith(f"{named}: "), answer.json()
    assert admin.request("GET", "/api/webhooks").json() == []
    ok = admin.request("POST", "/api/webhooks", {"name": "n", "url": receiver.url("/n"),
                                                 "headers": {"X-Ten-" + str(n): "v" for n in range(10)}})
    assert ok.status_code == 201 and len(ok.json()["headers"]) == 10
    answer = admin.request("PATCH", f"/api/webhooks/{ok.json()['id']}", {"headers": {"Host": "x"}})
    assert answer.status_code == 422 and answer.json()["error"]["message"].startswith("headers.Host: ")


@pytest.mark.timeout(60)
def test_header_values_appear_in_no_answer(hooked, receiver):
    """Every answer of the admin API that names the webhook or its deliveries, after the values were sent."""
    addon, admin, tenant_id = hooked
    values = {"Authorization": VALUE, "X-Api-Key": "key-5f0c1e9a7b"}
    created = admin.request("POST", "/api/webhooks", {"name": "gw", "url": receiver.url("/a"), "headers": values})
    webhook_id = created.json()["id"]
    patched = admin.request("PATCH", f"/api/webhooks/{webhook_id}", {"headers": {"Authorization": None,
                                                                                "X-Api-Key": "key-5f0c1e9a7b"}})
    tested = admin.request("POST", f"/api/webhooks/{webhook_id}/test")
    emit(addon, tenant_id)
    wait_for(lambda: len(_attempts(addon, webhook_id)) >= 2, message="the event's attempt recorded")
    log = admin.request("GET", f"/api/webhooks/{webhook_id}/deliveries")
    answers = [created, patched, tested, log, admin.request("GET", "/api/webhooks"),
               admin.request("GET", f"/api/webhooks/{webhook_id}"),
               admin.request("GET", f"/api/attempts/{log.json()['items'][0]['id']}"),
               admin.request("POST", f"/api/deliveries/{log.json()['items'][0]['delivery_id']}/redeliver"),
               admin.request("POST", f"/api/webhooks/{webhook_id}/rotate-secret"),
               admin.request("POST", f"/api/webhooks/{webhook_id}/recover", {"since": "2026-01-01T00:00:00Z"})]
    assert all(a.status_code < 300 for a in answers), [a.text for a in answers]
    for answer in answers:
        assert VALUE not in answer.text and "key-5f0c1e9a7b" not in answer.text and "gateway-key" not in answer.text
    assert [r.headers["x-api-key"] for r in receiver.wait_for(2, path="/a")[:2]] == ["key-5f0c1e9a7b"] * 2
