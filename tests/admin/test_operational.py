"""Telling the administrators (CONTRACT §10.5): the page's alert on each webhook disabled by the add-on or failing
for 24 hours, and the tenant's operational webhook (`/api/settings`), which receives `webhook.disabled`,
`webhook.failing` and `webhook.recovered` signed with its own secret, once per transition, and never about itself.

24 hours and 5 days of failures are simulated by setting the stored times, not by waiting."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import func, select, update

from addon.delivery.housekeeping import disable_failing_webhooks
from addon.storage.engine import transaction
from addon.storage.models import Attempt, Delivery, Event, Webhook, utcnow
from tests.conftest import make_settings
from tests.support.addon_server import AddonServer, wait_for
from tests.support.admin import AdminClient
from tests.support.delivery import emit


def _notices(addon) -> list[str]:  # type: ignore[no-untyped-def]
    """The operational events stored so far (each is one delivery to the operational webhook), oldest first."""
    with addon.sessions() as session:
        bodies = session.scalars(select(Event.body).where(Event.source == "operational").order_by(Event.id))
        return [json.loads(body)["data"]["event"] for body in bodies]


def _attempts(addon, webhook_id: int) -> int:  # type: ignore[no-untyped-def]
    with addon.sessions() as session:
        return session.scalar(select(func.count()).select_from(Attempt).where(Attempt.webhook_id == webhook_id))


def _set_operational(admin: AdminClient, url: str) -> str:
    answer = admin.request("PATCH", "/api/settings", {"operational_url": url})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["operational_url"] == url and body["secret"].startswith("whsec_")
    return body["secret"]


def _listed(admin: AdminClient, webhook_id: int) -> dict:
    answer = admin.request("GET", "/api/webhooks")
    assert answer.status_code == 200
    return next(w for w in answer.json() if w["id"] == webhook_id)


@pytest.mark.timeout(120)
def test_a_gone_webhook_is_told_disabled_once_then_recovered_once(hooked, receiver):
    addon, admin, tenant_id = hooked
    secret = _set_operational(admin, receiver.url("/ops"))
    receiver.behave("/gone", status=410)
    webhook_id = admin.create("Billing", receiver.url("/gone"))["id"]
    assert [w["id"] for w in admin.request("GET", "/api/webhooks").json()] == [webhook_id]  # not the operational

    emit(addon, tenant_id)
    notice = receiver.wait_for(1, timeout=20, path="/ops")[0]
    payload = receiver.verify(notice, [secret])  # signed with the operational webhook's own secret
    assert payload["data"]["event"] == "webhook.disabled"
    assert payload["data"]["webhook"] == {"id": webhook_id, "name": "Billing", "url": receiver.url("/gone")}
    assert payload["data"]["reason"] == "gone" and isinstance(payload["data"]["timestamp"], int)
    assert notice.headers["webhook-id"] and notice.headers["user-agent"]
    listed = _listed(admin, webhook_id)
    assert listed["enabled"] is False and listed["disabled_reason"] == "gone"
    assert listed["alert"]["state"] == "disabled" and listed["alert"]["reason"] == "gone"
    assert listed["alert"]["since"].endswith("Z")

    disable_failing_webhooks(addon.runtime)  # a later housekeeping pass tells nothing new
    assert _notices(addon) == ["webhook.disabled"]

    receiver.behave("/gone", status=200)
    enabled = admin.request("PATCH", f"/api/webhooks/{webhook_id}", {"enabled": True})
    assert enabled.status_code == 200 and "alert" not in enabled.json()  # changed: the page stops showing it
    emit(addon, tenant_id)
    # The intake's own store (one statement per database) fans out to the webhooks, never to the operational one.
    change = {"project": {"id": 10000}, "changes": [{"field": {"id": 1, "name": "Budget", "type": "number"},
                                                     "previous": 1, "current": 2}]}
    intake = admin.site.call(addon.url, "POST", "/events/projectrak/field-changes", json_body=change, sub="someone")
    assert intake.status_code == 202, intake.text
    wait_for(lambda: _attempts(addon, webhook_id) == 3, timeout=20, message="both events delivered")
    recovered = receiver.wait_for(2, timeout=20, path="/ops")[1]
    payload = receiver.verify(recovered, [secret])
    assert payload["data"]["event"] == "webhook.recovered" and payload["data"]["webhook"]["id"] == webhook_id
    assert _notices(addon) == ["webhook.disabled", "webhook.recovered"]  # one per transition
    # The operational webhook receives only notices, never the tenant's events.
    assert all(r.json()["data"]["event"].startswith("webhook.") for r in receiver.requests_for("/ops"))


@pytest.mark.timeout(120)
def test_a_webhook_failing_for_24_hours_is_told_once_and_recovers_once(hooked, receiver):
    addon, admin, tenant_id = hooked
    secret = _set_operational(admin, receiver.url("/ops"))
    receiver.behave("/bad", status=400)  # final at once: no retry races the stored times below
    webhook_id = admin.create("Warehouse", receiver.url("/bad"))["id"]
    emit(addon, tenant_id)
    wait_for(lambda: _attempts(addon, webhook_id) == 1, timeout=20, message="the failed attempt")
    assert "alert" not in _listed(admin, webhook_id)  # one failure is no alert
    disable_failing_webhooks(addon.runtime)
    assert _notices(addon) == []

    failing_since = utcnow() - dt.timedelta(hours=25)
    with transaction(addon.sessions) as session:
        session.execute(update(Webhook).where(Webhook.id == webhook_id).values(failing_since=failing_since))
    disable_failing_webhooks(addon.runtime)
    notice = receiver.wait_for(1, timeout=20, path="/ops")[0]
    payload = receiver.verify(notice, [secret])
    assert payload["data"]["event"] == "webhook.failing" and payload["data"]["webhook"]["id"] == webhook_id
    listed = _listed(admin, webhook_id)
    assert listed["enabled"] is True and listed["alert"]["state"] == "failing"
    since = dt.datetime.fromisoformat(listed["alert"]["since"])
    assert abs(since - failing_since) < dt.timedelta(seconds=1)

    disable_failing_webhooks(addon.runtime)  # later passes and later failures tell nothing new
    emit(addon, tenant_id)
    wait_for(lambda: _attempts(addon, webhook_id) == 2, timeout=20, message="the second failed attempt")
    disable_failing_webhooks(addon.runtime)
    assert _notices(addon) == ["webhook.failing"]

    receiver.behave("/bad", status=200)
    emit(addon, tenant_id)
    wait_for(lambda: _attempts(addon, webhook_id) == 3, timeout=20, message="the success")
    receiver.wait_for(2, timeout=20, path="/ops")
    assert _notices(addon) == ["webhook.failing", "webhook.recovered"]
    assert "alert" not in _listed(admin, webhook_id)


@pytest.mark.timeout(90)
def test_five_days_of_failures_disable_with_one_notice_and_the_operational_webhook_never_tells_of_itself(
        hooked, receiver):
    addon, admin, tenant_id = hooked
    _set_operational(admin, receiver.url("/ops"))
    receiver.behave("/bad", status=400)
    receiver.behave("/ops", status=410)  # the operational receiver is gone too
    webhook_id = admin.create("Warehouse", receiver.url("/bad"))["id"]
    emit(addon, tenant_id)
    wait_for(lambda: _attempts(addon, webhook_id) == 1, timeout=20, message="the failed attempt")
    with transaction(addon.sessions) as session:
        session.execute(update(Webhook).where(Webhook.id == webhook_id)
                        .values(failing_since=utcnow() - dt.timedelta(days=6)))
    disable_failing_webhooks(addon.runtime)
    notice = receiver.wait_for(1, timeout=20, path="/ops")[0]
    assert notice.json()["data"]["event"] == "webhook.disabled" and notice.json()["data"]["reason"] == "failing"
    listed = _listed(admin, webhook_id)
    assert listed["disabled_reason"] == "failing" and listed["alert"]["state"] == "disabled"

    with addon.sessions() as session:
        operational_id = session.scalar(select(Webhook.id).where(Webhook.kind == "operational"))
    wait_for(lambda: _attempts(addon, operational_id) == 1, timeout=20, message="the notice's attempt recorded")
    with transaction(addon.sessions) as session:  # the operational webhook failing for 6 days as well
        session.execute(update(Webhook).where(Webhook.id == operational_id)
                        .values(failing_since=utcnow() - dt.timedelta(days=6)))
    disable_failing_webhooks(addon.runtime)
    assert _notices(addon) == ["webhook.disabled"]  # nothing about itself, no loop
    assert admin.request("GET", "/api/settings").json() == {"operational_url": receiver.url("/ops")}
    with addon.sessions() as session:
        assert session.get(Webhook, operational_id).enabled is True  # never disabled: nobody would hear of it
        assert session.scalar(select(func.count()).select_from(Delivery)
                              .where(Delivery.webhook_id == operational_id)) == 1


@pytest.mark.timeout(60)
def test_settings_show_the_secret_once_and_rotate_it(hooked, receiver):
    _addon, admin, _tenant_id = hooked
    assert admin.request("GET", "/api/settings").json() == {"operational_url": None}
    refused = admin.request("POST", "/api/settings/rotate-secret")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "no_operational_webhook"

    url = receiver.url("/ops")
    secret = _set_operational(admin, url)
    shown = [admin.request("GET", "/api/settings"), admin.request("GET", "/api/webhooks")]
    assert shown[0].json() == {"operational_url": url}
    assert shown[1].json() == []  # a setting, not one of the administrators' webhooks
    assert all(secret not in answer.text for answer in shown)

    for body in (None, {"keep_old": True}, {"keep_old": False}):  # the answer is {"secret"}, nothing beside it
        rotated = admin.request("POST", "/api/settings/rotate-secret", body)
        assert rotated.status_code == 200 and list(rotated.json()) == ["secret"], rotated.text
        assert rotated.json()["secret"].startswith("whsec_") and rotated.json()["secret"] != secret
    again = _set_operational(admin, url)  # each PATCH that sets a URL issues (and shows) a new secret
    assert again not in (secret, rotated.json()["secret"])
    assert admin.request("GET", "/api/settings").json() == {"operational_url": url}

    for body, named in (({"operational_url": 5}, "operational_url"), ({"other": 1}, "other"),
                        ([1], "body"), ({"operational_url": ""}, "operational_url")):
        answer = admin.request("PATCH", "/api/settings", body)
        assert answer.status_code == 422 and answer.json()["error"]["message"].startswith(f"{named}: "), answer.text
    bad = admin.request("PATCH", "/api/settings", {"operational_url": "http://hooks.example.com/ops"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_url"

    cleared = admin.request("PATCH", "/api/settings", {"operational_url": None})
    assert cleared.status_code == 200 and cleared.json() == {"operational_url": None}
    assert admin.request("GET", "/api/settings").json() == {"operational_url": None}
    assert admin.request("POST", "/api/settings/rotate-secret").status_code == 409


@pytest.mark.timeout(60)
def test_an_operational_url_to_a_private_address_is_refused(atlassian, sqlite_url):
    server = AddonServer(make_settings(atlassian, sqlite_url, allow_private_networks=False))
    try:
        site = atlassian.new_site()
        site.admins.add("admin-account")
        assert site.install(server.url).status_code == 204
        admin = AdminClient(server.url, site)
        for url in ("https://127.0.0.1/ops", "https://10.1.2.3/ops", "https://169.254.169.254/latest",
                    "https://[::ffff:192.168.0.1]/ops", "https://localhost/ops"):
            answer = admin.request("PATCH", "/api/settings", {"operational_url": url})
            assert answer.status_code == 400, (url, answer.text)
            assert answer.json()["error"]["code"] == "private_address", url
            assert answer.json()["error"]["message"].startswith("operational_url: ")
        assert admin.request("GET", "/api/settings").json() == {"operational_url": None}
    finally:
        server.stop()
