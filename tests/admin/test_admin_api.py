"""The admin JSON API: every route, its errors, admin-only access and tenant isolation."""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import select, update

from addon.outbox.store import enqueue_event
from addon.storage.engine import transaction
from addon.storage.models import Attempt, Delivery, DeliveryStatus, Event, Webhook, utcnow
from tests.conftest import make_settings
from tests.support.addon_server import AddonServer, wait_for
from tests.support.admin import AdminClient
from tests.support.delivery import emit

PUBLIC_URL = "https://93.184.215.14/hook"  # a public literal address: no DNS needed


@pytest.fixture
def admin(addon, site) -> AdminClient:
    return AdminClient(addon.url, site)


@pytest.fixture
def strict_addon(atlassian, sqlite_url):
    """The add-on with the private-address guard on, as in production."""

    server = AddonServer(make_settings(atlassian, sqlite_url, allow_private_networks=False), background=False)
    yield server
    server.stop()


def test_create_list_get_update_delete(admin):
    created = admin.create("Billing", "https://hooks.example.com/billing")
    assert created["secret"].startswith("whsec_")
    assert created["name"] == "Billing" and created["enabled"] is True
    assert created["last_status"] is None and created["last_execution_at"] is None
    assert created["disabled_reason"] is None
    assert created["created_at"].endswith("Z")
    listed = admin.request("GET", "/api/webhooks").json()
    assert [w["id"] for w in listed] == [created["id"]]
    assert "secret" not in listed[0]
    assert set(listed[0]) == {"id", "name", "url", "enabled", "disabled_reason", "created_at", "last_execution_at",
                              "last_status", "last_status_code", "last_error", "ordered"}
    one = admin.request("GET", f"/api/webhooks/{created['id']}")
    assert one.status_code == 200 and "secret" not in one.json()

    patched = admin.request("PATCH", f"/api/webhooks/{created['id']}", {"name": "Billing v2", "enabled": False})
    assert patched.status_code == 200
    assert patched.json()["name"] == "Billing v2"
    assert patched.json()["enabled"] is False and patched.json()["disabled_reason"] == "manual"
    enabled = admin.request("PATCH", f"/api/webhooks/{created['id']}", {"enabled": True}).json()
    assert enabled["enabled"] is True and enabled["disabled_reason"] is None

    assert admin.request("DELETE", f"/api/webhooks/{created['id']}").status_code == 204
    assert admin.request("GET", f"/api/webhooks/{created['id']}").status_code == 404
    assert admin.request("GET", "/api/webhooks").json() == []


def test_created_disabled(admin):
    created = admin.create(enabled=False)
    assert created["enabled"] is False and created["disabled_reason"] == "manual"


@pytest.mark.parametrize("body,status,code,names", [
    ({"url": "https://hooks.example.com"}, 422, "invalid_body", "name"),
    ({"name": "  ", "url": "https://hooks.example.com"}, 422, "invalid_body", "name"),
    ({"name": "x"}, 422, "invalid_body", "url"),
    ({"name": "x", "url": "http://hooks.example.com"}, 400, "invalid_url", "url"),
    ({"name": "x", "url": "https://user:pw@hooks.example.com"}, 400, "invalid_url", "url"),
    ({"name": "x", "url": "ftp://hooks.example.com"}, 400, "invalid_url", "url"),
    ({"name": "x", "url": "https://hooks.example.com", "enabled": "yes"}, 422, "invalid_body", "enabled"),
    ({"name": "x", "url": "https://hooks.example.com", "colour": "red"}, 422, "invalid_body", "colour"),
    ([1, 2], 422, "invalid_body", "body"),
])
def test_create_refuses_bad_input(admin, body, status, code, names):
    response = admin.request("POST", "/api/webhooks", body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and names in error["message"]
    assert admin.request("GET", "/api/webhooks").json() == []


def test_create_refuses_unparseable_json(admin):
    response = admin.request("POST", "/api/webhooks", data=b"{")
    assert response.status_code == 400


@pytest.mark.parametrize("url", ["https://127.0.0.1/x", "https://10.1.2.3/x", "https://[::1]/x",
                                 "https://169.254.169.254/latest", "https://localhost/x"])
def test_private_addresses_are_refused_at_save_time(strict_addon, atlassian, url):
    site = atlassian.new_site()
    site.admins.add("admin-account")
    assert site.install(strict_addon.url).status_code == 204
    admin = AdminClient(strict_addon.url, site)
    response = admin.request("POST", "/api/webhooks", {"name": "x", "url": url})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "private_address"
    ok = admin.request("POST", "/api/webhooks", {"name": "x", "url": PUBLIC_URL})
    assert ok.status_code == 201
    patched = admin.request("PATCH", f"/api/webhooks/{ok.json()['id']}", {"url": url})
    assert patched.status_code == 400 and patched.json()["error"]["code"] == "private_address"


def test_at_most_50_webhooks(admin):
    for i in range(50):
        admin.create(f"hook {i}")
    response = admin.request("POST", "/api/webhooks", {"name": "one too many", "url": "https://h.example.com"})
    assert response.status_code == 422 and response.json()["error"]["code"] == "too_many_webhooks"


def test_rotate_secret_returns_a_new_secret(admin, addon):
    created = admin.create()
    rotated = admin.request("POST", f"/api/webhooks/{created['id']}/rotate-secret")
    assert rotated.status_code == 200
    assert rotated.json()["secret"].startswith("whsec_") and rotated.json()["secret"] != created["secret"]
    with addon.sessions() as session:
        webhook = session.get(Webhook, created["id"])
        assert addon.runtime.box.open(webhook.previous_secret) == created["secret"]
        assert webhook.previous_secret_expires_at is not None
    expires = rotated.json()["old_secret_expires_at"]
    assert expires is not None and admin.request("GET", f"/api/webhooks/{created['id']}").json()[
        "old_secret_expires_at"] == expires


def test_rotate_secret_without_keeping_the_old_one_stops_it_at_once(admin, addon):
    created = admin.create()
    admin.request("POST", f"/api/webhooks/{created['id']}/rotate-secret")  # a first rotation keeps the old one
    rotated = admin.request("POST", f"/api/webhooks/{created['id']}/rotate-secret", {"keep_old": False})
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["old_secret_expires_at"] is None
    assert "old_secret_expires_at" not in admin.request("GET", f"/api/webhooks/{created['id']}").json()
    with addon.sessions() as session:
        webhook = session.get(Webhook, created["id"])
        assert webhook.previous_secret is None and webhook.previous_secret_expires_at is None
        assert addon.runtime.box.open(webhook.secret) == rotated.json()["secret"]


@pytest.mark.parametrize("body, where", [([1], "body"), ({"keep_old": "no"}, "keep_old"), ({"keep": 1}, "keep")])
def test_rotate_secret_refuses_a_body_that_does_not_fit(admin, body, where):
    created = admin.create()
    rotated = admin.request("POST", f"/api/webhooks/{created['id']}/rotate-secret", body)
    assert rotated.status_code == 422 and rotated.json()["error"]["message"].startswith(where)


def test_disable_and_delete_cancel_pending_deliveries(admin, addon, site):
    a, b = admin.create("a"), admin.create("b")
    addon.background.stop() if addon.background else None  # keep deliveries pending
    with transaction(addon.sessions) as session:
        tenant_id = session.get(Webhook, a["id"]).tenant_id
        enqueue_event(session, tenant_id=tenant_id, source="projectrak", body={"data": {}})
    admin.request("PATCH", f"/api/webhooks/{a['id']}", {"enabled": False})
    admin.request("DELETE", f"/api/webhooks/{b['id']}")
    with addon.sessions() as session:
        statuses = session.scalars(select(Delivery.status)).all()
    assert sorted(statuses) == [DeliveryStatus.CANCELLED, DeliveryStatus.CANCELLED]


def test_deliveries_of_a_new_webhook_is_empty(admin):
    created = admin.create()
    response = admin.request("GET", f"/api/webhooks/{created['id']}/deliveries?limit=5")
    assert response.status_code == 200 and response.json() == {"items": [], "next": None}
    bad = admin.request("GET", f"/api/webhooks/{created['id']}/deliveries?limit=abc")
    assert bad.status_code == 400 and "limit" in bad.json()["error"]["message"]


def test_non_admin_gets_403(addon, site):
    admin = AdminClient(addon.url, site)
    created = admin.create()
    user = AdminClient(addon.url, site, account_id="plain-user")
    for method, path in [("GET", "/api/webhooks"), ("POST", "/api/webhooks"), ("GET", f"/api/webhooks/{created['id']}"),
                         ("PATCH", f"/api/webhooks/{created['id']}"), ("DELETE", f"/api/webhooks/{created['id']}"),
                         ("POST", f"/api/webhooks/{created['id']}/rotate-secret")]:
        response = user.request(method, path, {"name": "x"} if method in ("POST", "PATCH") else None)
        assert response.status_code == 403, (method, path)
        assert response.json()["error"]["code"] == "forbidden"
    assert admin.request("GET", f"/api/webhooks/{created['id']}").json()["name"] == created["name"]


def test_jira_down_gives_503_not_403(addon, site):
    site.down = True
    response = AdminClient(addon.url, site, account_id="someone-new").request("GET", "/api/webhooks")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "jira_unavailable"
    assert response.headers["Retry-After"]


def test_admin_answer_is_cached(addon, site):
    admin = AdminClient(addon.url, site, account_id="cached-admin")
    site.admins.add("cached-admin")
    for _ in range(3):
        assert admin.request("GET", "/api/webhooks").status_code == 200
    checks = [c for c in site.calls if c.path == "/rest/api/3/permissions/check"
              and c.body["accountId"] == "cached-admin"]
    assert len(checks) == 1
    assert checks[0].body == {"accountId": "cached-admin", "globalPermissions": ["ADMINISTER"]}


def test_tenant_isolation(addon, atlassian, site):
    mine = AdminClient(addon.url, site).create("mine")
    other_site = atlassian.new_site()
    other_site.admins.add("admin-account")
    assert other_site.install(addon.url).status_code == 204
    other = AdminClient(addon.url, other_site)
    assert other.request("GET", "/api/webhooks").json() == []
    for method, path in [("GET", f"/api/webhooks/{mine['id']}"), ("PATCH", f"/api/webhooks/{mine['id']}"),
                         ("DELETE", f"/api/webhooks/{mine['id']}"),
                         ("POST", f"/api/webhooks/{mine['id']}/rotate-secret"),
                         ("POST", f"/api/webhooks/{mine['id']}/test"),
                         ("GET", f"/api/webhooks/{mine['id']}/deliveries")]:
        response = other.request(method, path, {"name": "stolen"} if method == "PATCH" else None)
        assert response.status_code == 404, (method, path, response.text)
    assert AdminClient(addon.url, site).request("GET", f"/api/webhooks/{mine['id']}").json()["name"] == "mine"


def test_api_requires_a_token(addon, site):
    response = requests.get(f"{addon.url}/api/webhooks", timeout=10)
    assert response.status_code == 401
    qsh_bound = site.call(addon.url, "GET", "/api/webhooks")
    assert qsh_bound.status_code == 200


def test_admin_page_headers(addon, site):
    response = site.call(addon.url, "GET", "/admin/webhooks?lic=none&xdm_e=https%3A%2F%2Fx&cp=", in_query=True)
    assert response.status_code == 200, response.text
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self' https://connect-cdn.atl-paas.net" in csp
    assert "frame-ancestors http://127.0.0.1:" in csp
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "https://connect-cdn.atl-paas.net/all.js" in response.text
    assert "/static/admin.js" in response.text and "/static/admin.css" in response.text


def test_admin_page_refuses_context_tokens(addon, site):
    token = site.context_token()
    response = requests.get(f"{addon.url}/admin/webhooks?jwt={token}", timeout=10)
    assert response.status_code == 401


# -- test deliveries, redelivery, limits and ids, with a real receiver, on both databases -----------------------


def _test_deliveries(addon) -> list[Delivery]:
    with addon.sessions() as session:
        return list(session.scalars(select(Delivery).join(Event, Event.id == Delivery.event_id)
                                    .where(Event.source == "test").order_by(Delivery.id)))


def _attempts(addon, *conditions) -> list[Attempt]:
    with addon.sessions() as session:
        return list(session.scalars(select(Attempt).where(*conditions).order_by(Attempt.id)))


@pytest.mark.timeout(120)
def test_test_deliveries_are_sent_once_by_the_request_while_the_worker_is_busy(hooked, receiver):
    """Each test request sends its delivery itself, once, and answers its attempt; the running worker (kept busy
    claiming other events meanwhile) never takes one, so none is sent twice or retried. Two at a time: the most a
    tenant may have in progress."""
    addon, admin, tenant_id = hooked
    receiver.behave("/busy", status=200)
    busy = admin.create("busy", receiver.url("/busy"))["id"]
    targets = []
    for n in range(3):
        receiver.behave(f"/t{n}", status=503)
        targets.append(admin.create(f"target {n}", receiver.url(f"/t{n}"))["id"])

    stop = threading.Event()

    def keep_the_worker_claiming() -> None:
        while not stop.is_set():  # events for the busy webhook only, each waking the worker as intake does
            with transaction(addon.sessions) as session:
                enqueue_event(session, tenant_id=tenant_id, source="projectrak", body={"data": {}},
                              webhook_ids=[busy])
            addon.runtime.deliveries_committed.notify()
            time.sleep(0.002)

    emitter = threading.Thread(target=keep_the_worker_claiming, daemon=True)
    emitter.start()
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            answers = list(pool.map(lambda webhook_id: admin.request("POST", f"/api/webhooks/{webhook_id}/test"),
                                    [w for w in targets for _ in range(10)]))
    finally:
        stop.set()
        emitter.join()

    assert [a.status_code for a in answers] == [200] * 30, [a.text for a in answers if a.status_code != 200]
    bodies = [a.json() for a in answers]
    assert {(b["attempt"], b["status"], b["http_code"]) for b in bodies} == {(1, "ERROR", 503)}
    assert len({b["webhook_id_header"] for b in bodies}) == 30
    time.sleep(1.0)  # a second copy would be on its way by now
    sent = [r for r in receiver.requests if r.path.startswith("/t")]
    assert sorted(r.headers["webhook-id"] for r in sent) == sorted(b["webhook_id_header"] for b in bodies)
    tests = _test_deliveries(addon)
    assert [(d.status, d.attempt_count) for d in tests] == [(DeliveryStatus.FAILED, 1)] * 30  # no retry scheduled
    attempts = _attempts(addon, Attempt.delivery_id.in_([d.id for d in tests]))
    assert sorted(a.id for a in attempts) == sorted(b["id"] for b in bodies)  # one attempt each: the answered one


def test_at_most_10_test_deliveries_a_minute_per_webhook(hooked, receiver):
    addon, admin, _ = hooked
    one = admin.create("one", receiver.url("/one"))["id"]
    for _ in range(10):
        assert admin.request("POST", f"/api/webhooks/{one}/test").status_code == 200
    eleventh = admin.request("POST", f"/api/webhooks/{one}/test")
    assert eleventh.status_code == 429 and eleventh.json()["error"]["code"] == "rate_limited"
    assert eleventh.headers["Retry-After"] == "60"
    assert len(receiver.requests_for("/one")) == 10

    # Fifteen on another webhook (its own limit), two at a time (the tenant's most at once): still ten sent, the
    # others refused for the rate.
    other = admin.create("other", receiver.url("/other"))["id"]
    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(pool.map(lambda _: admin.request("POST", f"/api/webhooks/{other}/test"), range(15)))
    assert sorted(a.status_code for a in answers) == [200] * 10 + [429] * 5
    assert {a.json()["error"]["code"] for a in answers if a.status_code == 429} == {"rate_limited"}
    assert len(receiver.requests_for("/other")) == 10
    assert len(_test_deliveries(addon)) == 20


def test_at_most_50_webhooks_under_concurrent_creation(hooked):
    _, admin, _ = hooked
    for n in range(40):
        admin.create(f"hook {n}", PUBLIC_URL)
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda n: admin.request("POST", "/api/webhooks", {"name": f"late {n}",
                                                                                  "url": PUBLIC_URL}), range(20)))
    assert sorted(a.status_code for a in answers) == [201] * 10 + [422] * 10
    assert {a.json()["error"]["code"] for a in answers if a.status_code == 422} == {"too_many_webhooks"}
    assert len(admin.request("GET", "/api/webhooks").json()) == 50


def _first_attempt_fails(hooked, receiver, path: str, timeout: float = 5.0):  # type: ignore[no-untyped-def]
    """A webhook at `path` answering 503, one event emitted; returns the webhook id and the first request."""
    addon, admin, tenant_id = hooked
    receiver.behave(path, status=503)
    webhook_id = admin.create(path.strip("/"), receiver.url(path))["id"]
    emit(addon, tenant_id)
    [first] = receiver.wait_for(1, timeout=timeout, path=path)
    return webhook_id, first


@pytest.mark.timeout(60)
def test_redelivery_restarts_the_schedule_with_the_same_webhook_id(hooked, receiver):
    addon, admin, tenant_id = hooked
    webhook_id, first = _first_attempt_fails(hooked, receiver, "/r")
    wait_for(lambda: _attempts(addon, Attempt.webhook_id == webhook_id), message="the first attempt recorded")
    with transaction(addon.sessions) as session:  # as if its 8 attempts had all failed (12 h are too long to wait)
        delivery = session.scalar(select(Delivery).where(Delivery.webhook_id == webhook_id))
        delivery_id = delivery.id
        session.execute(update(Delivery).where(Delivery.id == delivery_id).values(
            status=DeliveryStatus.FAILED, attempt_count=8, finished_at=utcnow()))

    answer = admin.request("POST", f"/api/deliveries/{delivery_id}/redeliver")
    assert answer.status_code == 202, answer.text
    assert answer.json()["webhook_id_header"] == first.headers["webhook-id"]
    second = receiver.wait_for(2, path="/r")[1]
    assert second.headers["webhook-id"] == first.headers["webhook-id"] and second.body == first.body
    receiver.behave("/r", status=200)
    third = receiver.wait_for(3, timeout=10, path="/r")[2]  # failed again, so retried: 5 s later per the schedule
    assert third.headers["webhook-id"] == first.headers["webhook-id"]
    assert 3.5 <= third.received_at - second.received_at <= 7.0

    def succeeded():  # type: ignore[no-untyped-def]
        with addon.sessions() as session:
            found = session.get(Delivery, delivery_id)
            return found if found.status == DeliveryStatus.SUCCEEDED else None

    assert wait_for(succeeded).attempt_count == 2
    log = admin.request("GET", f"/api/webhooks/{webhook_id}/deliveries").json()["items"]
    assert [(i["attempt"], i["status"], i["http_code"]) for i in reversed(log)] == [
        (1, "ERROR", 503), (1, "ERROR", 503), (2, "OK", 200)]  # the history stays; the schedule started again
    assert {i["webhook_id_header"] for i in log} == {first.headers["webhook-id"]}


@pytest.mark.timeout(60)
def test_redelivery_of_a_delivery_being_sent_is_refused_not_duplicated(hooked, receiver):
    addon, admin, tenant_id = hooked
    receiver.behave("/slow", status=200, delay_s=1.5)
    webhook_id = admin.create("slow", receiver.url("/slow"))["id"]
    emit(addon, tenant_id)
    receiver.wait_for(1, path="/slow")  # in flight now
    with addon.sessions() as session:
        delivery_id = session.scalar(select(Delivery.id).where(Delivery.webhook_id == webhook_id))
    refused = admin.request("POST", f"/api/deliveries/{delivery_id}/redeliver")
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "delivery_in_flight"
    assert str(delivery_id) in refused.json()["error"]["message"]
    wait_for(lambda: _attempts(addon, Attempt.delivery_id == delivery_id), message="the attempt recorded")
    assert len(receiver.requests_for("/slow")) == 1  # no second copy alongside

    assert admin.request("POST", f"/api/deliveries/{delivery_id}/redeliver").status_code == 202
    receiver.wait_for(2, path="/slow")
    wait_for(lambda: len(_attempts(addon, Attempt.delivery_id == delivery_id)) == 2, message="the redelivery")
    assert [a.attempt for a in _attempts(addon, Attempt.delivery_id == delivery_id)] == [1, 1]


@pytest.mark.parametrize("big", [2**63, 2**64, 10**30])
def test_ids_beyond_64_bits_answer_404_and_400_not_500(hooked, big):
    _, admin, _ = hooked
    webhook_id = admin.create("x", PUBLIC_URL)["id"]
    for n in (big, 2**63 - 1, -1):  # too big, the biggest (no such row), negative
        for method, path in [("GET", f"/api/webhooks/{n}"), ("PATCH", f"/api/webhooks/{n}"),
                             ("DELETE", f"/api/webhooks/{n}"), ("POST", f"/api/webhooks/{n}/rotate-secret"),
                             ("POST", f"/api/webhooks/{n}/test"), ("GET", f"/api/webhooks/{n}/deliveries"),
                             ("POST", f"/api/deliveries/{n}/redeliver")]:
            response = admin.request(method, path, {"name": "y"} if method == "PATCH" else None)
            assert response.status_code == 404, (method, path, response.text)
            assert response.json()["error"]["code"] == "not_found"
    for before in (big, -1, 0):
        response = admin.request("GET", f"/api/webhooks/{webhook_id}/deliveries?before={before}")
        assert response.status_code == 400, (before, response.text)
        assert "before" in response.json()["error"]["message"]
    biggest = admin.request("GET", f"/api/webhooks/{webhook_id}/deliveries?before={2**63 - 1}")
    assert biggest.status_code == 200 and biggest.json() == {"items": [], "next": None}


def test_deliveries_are_listed_newest_first_page_by_page(hooked, receiver):
    """`limit` and `before` page through the attempts log: newest first, each attempt once, `next` null at the end."""
    _, admin, _ = hooked
    hook = admin.create("paged", receiver.url("/paged"))["id"]
    sent = [admin.request("POST", f"/api/webhooks/{hook}/test").json()["id"] for _ in range(5)]
    pages, before = [], None
    while True:
        query = f"?limit=2&before={before}" if before is not None else "?limit=2"
        page = admin.request("GET", f"/api/webhooks/{hook}/deliveries{query}")
        assert page.status_code == 200, page.text
        pages.append([item["id"] for item in page.json()["items"]])
        before = page.json()["next"]
        if before is None:
            break
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [i for p in pages for i in p] == sorted(sent, reverse=True)


def test_a_wrong_method_is_a_json_405(hooked):
    _, admin, _ = hooked
    answer = admin.request("PUT", "/api/webhooks")
    assert answer.status_code == 405
    assert answer.json()["error"]["code"] and answer.json()["error"]["message"]


@pytest.mark.timeout(60)
def test_a_changed_url_applies_to_pending_retries(hooked, receiver):
    """A delivery that failed at the old URL is retried at the URL saved since (same webhook-id)."""
    _, admin, _ = hooked
    hook, first = _first_attempt_fails(hooked, receiver, "/old", timeout=10)
    assert admin.request("PATCH", f"/api/webhooks/{hook}", {"url": receiver.url("/new")}).status_code == 200
    [retry] = receiver.wait_for(1, timeout=15, path="/new")  # the second attempt comes 5 s (±20 %) after the event
    assert retry.headers["webhook-id"] == first.headers["webhook-id"]
    assert len(receiver.requests_for("/old")) == 1


HOSTILE_ANSWERS = {  # what a receiver sends -> the start of the body the administrator sees
    "nul": (b"ok\x00ok", "ok\ufffdok"),
    "invalid-utf8": (b"\xff\xfeok\xc3", "\ufffd\ufffdok\ufffd"),
    "controls": (bytes(range(32)) + b"\x7f" + "\u0085\u009f".encode(), "\ufffd" * 9 + "\t\n" + "\ufffd" * 24),
    "long": (b"x\x00" * 40_000, "x\ufffd" * 1024),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", sorted(HOSTILE_ANSWERS))
def test_whatever_a_receiver_answers_is_recorded_cleaned(hooked, receiver, kind):
    """A receiver's bytes (NUL, invalid UTF-8, control characters, any length) are recorded cleaned, on both
    databases: the test answers 200 and the worker's delivery succeeds once, never sent again. Before, PostgreSQL
    refused the NUL (`text fields cannot contain NUL`): "Send test" answered 500 and the delivery repeated forever."""
    addon, admin, tenant_id = hooked
    sent, seen = HOSTILE_ANSWERS[kind]
    receiver.behave("/hostile", status=200, body=sent)
    webhook_id = admin.create("hostile", receiver.url("/hostile"), enabled=True)["id"]

    tested = admin.request("POST", f"/api/webhooks/{webhook_id}/test")
    assert tested.status_code == 200, tested.text
    assert (tested.json()["status"], tested.json()["http_code"]) == ("OK", 200)
    assert tested.json()["response_body_start"] == seen

    event_id = emit(addon, tenant_id)
    [delivery] = wait_for(lambda: [d for d in _deliveries_of(addon, event_id) if d.status != DeliveryStatus.PENDING],
                          message="the delivery to end")
    assert (delivery.status, delivery.attempt_count) == (DeliveryStatus.SUCCEEDED, 1)
    [attempt] = _attempts(addon, Attempt.delivery_id == delivery.id)
    assert (attempt.status, attempt.http_code, attempt.response_body_start) == ("OK", 200, seen)
    assert len(receiver.requests_for("/hostile")) == 2  # the test and the delivery, each sent once


def _deliveries_of(addon, event_id: int) -> list[Delivery]:
    with addon.sessions() as session:
        return list(session.scalars(select(Delivery).where(Delivery.event_id == event_id)))


def _other_admin(atlassian, addon) -> AdminClient:  # type: ignore[no-untyped-def]
    other_site = atlassian.new_site()
    other_site.admins.add("admin-account")
    assert other_site.install(addon.url).status_code == 204
    return AdminClient(addon.url, other_site)


@pytest.mark.timeout(60)
def test_listed_request_bodies_are_cut_and_the_attempt_gives_the_whole_one(hooked, receiver, atlassian):
    """A page of the log stays small however big the events (CONTRACT §7): each item's `request_body` is its first
    2,048 characters (`request_body_truncated` says so); `GET /api/attempts/{id}` gives the whole body, to its own
    tenant only."""
    addon, admin, tenant_id = hooked
    receiver.behave("/big", status=503)
    hook = admin.create("big", receiver.url("/big"))["id"]
    big = {"data": {"event": "updated", "note": "é" * 450_000}}  # 0.9 MB of UTF-8, 450,000 characters
    with transaction(addon.sessions) as session:
        enqueue_event(session, tenant_id=tenant_id, source="projectrak", body=big)
    addon.runtime.deliveries_committed.notify()
    small = admin.request("POST", f"/api/webhooks/{hook}/test").json()
    wait_for(lambda: len(_attempts(addon, Attempt.webhook_id == hook)) == 2, message="both attempts recorded")

    page = admin.request("GET", f"/api/webhooks/{hook}/deliveries?limit=200")
    assert page.status_code == 200, page.text
    assert len(page.content) < 20_000
    items = {item["id"]: item for item in page.json()["items"]}
    [big_item] = [item for item_id, item in items.items() if item_id != small["id"]]
    with addon.sessions() as session:
        whole = session.scalar(select(Event.body).join(Delivery, Delivery.event_id == Event.id)
                               .where(Delivery.id == big_item["delivery_id"]))
    assert len(whole) > 450_000
    assert big_item["request_body"] == whole[:2048] and big_item["request_body_truncated"] is True
    assert list(big_item) == ["id", "delivery_id", "webhook_id_header", "attempt", "at", "status", "http_code",
                              "duration_ms", "error", "request_body", "request_body_truncated", "response_body_start",
                              "sequence"]
    small_item = items[small["id"]]
    assert small_item["request_body_truncated"] is False and small_item["request_body"] == small["request_body"]

    one = admin.request("GET", f"/api/attempts/{big_item['id']}")
    assert one.status_code == 200, one.text
    assert one.json() == big_item | {"request_body": whole, "request_body_truncated": False}

    other = _other_admin(atlassian, addon)
    for attempt_id in (big_item["id"], 2**63 - 1, 2**64):
        refused = other.request("GET", f"/api/attempts/{attempt_id}")
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "not_found", refused.text


def test_the_chart_lists_attempts_without_bodies(hooked, receiver):
    """`?bodies=0`: the same items, their body fields null (the page's chart needs no bodies)."""
    _, admin, _ = hooked
    hook = admin.create("chart", receiver.url("/chart"))["id"]
    sent = admin.request("POST", f"/api/webhooks/{hook}/test").json()
    [item] = admin.request("GET", f"/api/webhooks/{hook}/deliveries?bodies=0").json()["items"]
    assert item == sent | {"request_body": None, "request_body_truncated": None, "response_body_start": None}
    refused = admin.request("GET", f"/api/webhooks/{hook}/deliveries?bodies=maybe")
    assert refused.status_code == 400 and "bodies" in refused.json()["error"]["message"]


class Tarpit:
    """A receiver that accepts TCP connections and never answers (a TLS handshake that never ends)."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.port = self._server.getsockname()[1]
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._server.accept()
            except OSError:
                return  # closed
            with self._lock:
                self._held.append(connection)

    @property
    def accepted(self) -> int:
        with self._lock:
            return len(self._held)

    def close(self) -> None:
        self._server.close()
        with self._lock:
            for connection in self._held:
                connection.close()


@pytest.mark.timeout(60)
def test_tests_to_a_tarpit_are_bounded_per_tenant_and_per_process(hooked, atlassian, receiver):
    """CONTRACT §7: 2 tests at once per tenant (a third: 429), and tests hold at most a quarter of the web process's
    threads (the in-thread server counts as the default 8: 2), so another tenant's intake is served while they hang
    and its own test is told to come back (503 with Retry-After) rather than take a thread for the timeout."""
    addon, admin, _ = hooked  # OUTGOING_TIMEOUT_S=5
    tarpit = Tarpit()
    try:
        hooks = [admin.create(f"tarpit {n}", f"https://127.0.0.1:{tarpit.port}/t{n}")["id"] for n in range(3)]
        other_site = atlassian.new_site()
        other_site.admins.add("admin-account")
        other_site.add_project(10000, "DEMO", "Demo project")
        assert other_site.install(addon.url).status_code == 204
        other = AdminClient(addon.url, other_site)
        other_hook = other.create("other", receiver.url("/other"))["id"]

        with ThreadPoolExecutor(max_workers=2) as pool:
            hanging = [pool.submit(admin.request, "POST", f"/api/webhooks/{h}/test") for h in hooks[:2]]
            wait_for(lambda: tarpit.accepted >= 2, message="both tests connected to the tarpit")

            third = admin.request("POST", f"/api/webhooks/{hooks[2]}/test")
            assert third.status_code == 429, third.text
            assert third.json()["error"]["code"] == "tests_in_progress" and third.headers["Retry-After"]

            refused = other.request("POST", f"/api/webhooks/{other_hook}/test")
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"]["code"] == "tests_busy" and refused.headers["Retry-After"]
            change = {"project": {"key": "DEMO"}, "timestamp": 1675182117615,
                      "changes": [{"field": {"id": 12345, "name": "Budget", "type": "number"},
                                   "previous": 1, "current": 2}]}
            accepted = other_site.call(addon.url, "POST", "/events/projectrak/field-changes", json_body=change)
            assert accepted.status_code == 202, accepted.text
            assert other.request("GET", "/api/webhooks").status_code == 200
            assert not any(f.done() for f in hanging), "the hanging tests ended before the other tenant was served"
            answers = [f.result() for f in hanging]
        assert [(a.status_code, a.json()["status"], a.json()["error"]) for a in answers] == [
            (200, "ERROR", "timeout after 5.0 s")] * 2
        assert tarpit.accepted == 2  # the refused tests never connected

        # Once they ended, both kinds of test go through again.
        assert other.request("POST", f"/api/webhooks/{other_hook}/test").json()["http_code"] == 200
        receiver.wait_for(2, path="/other")  # the intake's event and the test
    finally:
        tarpit.close()
