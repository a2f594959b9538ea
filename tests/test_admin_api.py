"""The admin JSON API: every route, its errors, admin-only access and tenant isolation."""

from __future__ import annotations

import pytest
import requests
from sqlalchemy import select

from addon.db import transaction
from addon.delivery.outbox import enqueue_event
from addon.models import Delivery, DeliveryStatus, Webhook
from tests.support.admin import AdminClient

PUBLIC_URL = "https://93.184.215.14/hook"  # a public literal address: no DNS needed


@pytest.fixture
def admin(addon, site) -> AdminClient:
    return AdminClient(addon.url, site)


@pytest.fixture
def strict_addon(atlassian, sqlite_url):
    """The add-on with the private-address guard on, as in production."""
    from tests.conftest import make_settings
    from tests.support.addon_server import AddonServer

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
                              "last_status", "last_status_code", "last_error"}
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
