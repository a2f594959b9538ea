"""Signed install and uninstall, enabled and disabled, against the fake Atlassian over real HTTP."""

from __future__ import annotations

import logging
import threading
import time

import pytest
import requests
from sqlalchemy import func, select, text, update

from addon.delivery.housekeeping import forget_uninstalled_tenants, prune_used_install_tokens
from addon.storage.models import Tenant, TenantState
from tests.conftest import make_settings
from tests.support.addon_server import AddonServer
from tests.support.atlassian import qsh


def tenant(addon, client_key: str) -> Tenant | None:
    with addon.sessions() as session:
        return session.scalar(select(Tenant).where(Tenant.client_key == client_key))


def test_signed_install_creates_the_tenant(addon, atlassian):
    site = atlassian.new_site()
    response = site.install(addon.url)
    assert response.status_code == 204, response.text
    t = tenant(addon, site.client_key)
    assert t is not None and t.state == TenantState.INSTALLED
    assert t.base_url == site.base_url
    assert atlassian.key_fetches == [atlassian.current_kid]


def test_install_key_is_cached_per_kid(addon, atlassian):
    for _ in range(3):
        assert atlassian.new_site().install(addon.url).status_code == 204
    assert atlassian.key_fetches == [atlassian.current_kid]
    atlassian.current_kid = atlassian.add_key()
    assert atlassian.new_site().install(addon.url).status_code == 204
    assert len(atlassian.key_fetches) == 2


def test_trailing_slash_in_aud_is_ignored(addon, atlassian):
    site = atlassian.new_site()
    assert site.install(addon.url, aud=addon.url + "/").status_code == 204


def test_reinstall_replaces_the_shared_secret(addon, atlassian):
    site = atlassian.new_site()
    assert site.install(addon.url).status_code == 204
    old_secret = site.shared_secret
    site.shared_secret = "a-brand-new-shared-secret-of-at-least-32-bytes"
    assert site.install(addon.url).status_code == 204
    ok = site.call(addon.url, "POST", "/lifecycle/enabled", json_body=site.lifecycle_body("enabled"))
    assert ok.status_code == 204
    stale = site.call(addon.url, "POST", "/lifecycle/disabled", json_body={}, secret=old_secret)
    assert stale.status_code == 401
    assert tenant(addon, site.client_key).state == TenantState.ENABLED


def test_site_import_is_a_new_tenant(addon, atlassian):
    site = atlassian.new_site()
    assert site.install(addon.url).status_code == 204
    imported = atlassian.new_site(name=site.name)  # same baseUrl, new clientKey
    assert imported.install(addon.url).status_code == 204
    a, b = tenant(addon, site.client_key), tenant(addon, imported.client_key)
    assert a.id != b.id and a.base_url == b.base_url


def test_enabled_and_disabled_change_state(addon, site):
    assert tenant(addon, site.client_key).state == TenantState.ENABLED
    assert site.call(addon.url, "POST", "/lifecycle/disabled", json_body={}).status_code == 204
    assert tenant(addon, site.client_key).state == TenantState.DISABLED
    assert site.call(addon.url, "POST", "/lifecycle/enabled", json_body={}).status_code == 204
    assert tenant(addon, site.client_key).state == TenantState.ENABLED


def test_disabled_without_jwt_changes_nothing(addon, site):
    response = requests.post(f"{addon.url}/lifecycle/disabled", json=site.lifecycle_body("disabled"), timeout=10)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert tenant(addon, site.client_key).state == TenantState.ENABLED


def test_uninstall_locks_out_every_token(addon, site):
    assert site.install(addon.url, event="uninstalled").status_code == 204
    assert tenant(addon, site.client_key).state == TenantState.UNINSTALLED
    response = site.call(addon.url, "POST", "/lifecycle/enabled", json_body={})
    assert response.status_code == 401
    # A signed re-install revives the tenant, data kept.
    assert site.install(addon.url).status_code == 204
    assert tenant(addon, site.client_key).state == TenantState.INSTALLED


def test_uninstalled_data_is_kept_30_days_for_a_reinstall_then_deleted(addon, atlassian):
    """Within 30 days of an uninstall a signed re-install finds its webhooks; after them housekeeping deletes the
    tenant with everything it owns (a later install starts afresh)."""
    import datetime as dt

    from addon.storage.engine import transaction
    from addon.storage.models import Delivery, Event, Webhook, utcnow
    from tests.support.delivery import add_webhook, emit, tenant_id_of

    kept, gone = atlassian.new_site(), atlassian.new_site()
    ids = {}
    for site in (kept, gone):
        assert site.install(addon.url).status_code == 204
        ids[site.client_key] = tenant_id_of(addon, site.client_key)
        add_webhook(addon, ids[site.client_key], "https://hooks.example.com/in")
        emit(addon, ids[site.client_key])
        assert site.install(addon.url, event="uninstalled").status_code == 204
    with transaction(addon.sessions) as session:
        for site, days in ((kept, 29), (gone, 31)):
            session.execute(update(Tenant).where(Tenant.id == ids[site.client_key])
                            .values(uninstalled_at=utcnow() - dt.timedelta(days=days)))
    forget_uninstalled_tenants(addon.runtime)

    def owned(tenant_id: int) -> list[int]:
        with addon.sessions() as session:
            return [session.scalar(select(func.count()).select_from(m).where(m.tenant_id == tenant_id))
                    for m in (Webhook, Event, Delivery)]

    assert owned(ids[kept.client_key]) == [1, 1, 1]
    assert owned(ids[gone.client_key]) == [0, 0, 0]
    with addon.sessions() as session:
        assert session.get(Tenant, ids[gone.client_key]) is None
    assert kept.install(addon.url).status_code == 204  # a signed re-install within the 30 days: its webhook is back
    assert tenant(addon, kept.client_key).state == TenantState.INSTALLED
    assert owned(ids[kept.client_key])[0] == 1


def test_install_token_cannot_be_replayed(addon, atlassian):
    site = atlassian.new_site()
    token = atlassian.install_token(addon.url, "/lifecycle/installed", issuer=site.client_key)
    headers = {"Authorization": f"JWT {token}"}
    first = requests.post(f"{addon.url}/lifecycle/installed", json=site.lifecycle_body(), headers=headers, timeout=10)
    assert first.status_code == 204
    again = requests.post(f"{addon.url}/lifecycle/installed", json=site.lifecycle_body(), headers=headers, timeout=10)
    assert again.status_code == 401


def test_install_with_disallowed_base_url_is_refused(addon, atlassian):
    site = atlassian.new_site()
    body = site.lifecycle_body() | {"baseUrl": "https://evil.example.com"}
    response = site.install(addon.url, body=body)
    assert response.status_code == 422
    assert "baseUrl" in response.json()["error"]["message"]
    assert tenant(addon, site.client_key) is None


def test_install_with_bad_body(addon, atlassian):
    site = atlassian.new_site()
    token = atlassian.install_token(addon.url, "/lifecycle/installed", issuer=site.client_key)
    response = requests.post(f"{addon.url}/lifecycle/installed", data=b"{not json",
                             headers={"Authorization": f"JWT {token}", "Content-Type": "application/json"},
                             timeout=10)
    assert response.status_code == 400
    body = site.lifecycle_body()
    del body["sharedSecret"]
    response = site.install(addon.url, body=body)
    assert response.status_code == 422 and "sharedSecret" in response.json()["error"]["message"]


def test_lifecycle_qsh_is_over_the_lifecycle_path(addon, atlassian):
    site = atlassian.new_site()
    response = site.install(addon.url, qsh_value=qsh("POST", "/installed"))
    assert response.status_code == 401



@pytest.fixture
def any_addon(atlassian, database_url):
    """The add-on on SQLite and on PostgreSQL (where TEST_DATABASE_URL is set)."""
    server = AddonServer(make_settings(atlassian, database_url), background=False)
    yield server
    server.stop()


@pytest.fixture
def pg_addon(atlassian, pg_url):
    server = AddonServer(make_settings(atlassian, pg_url), background=False)
    yield server
    server.stop()


@pytest.mark.parametrize(("field", "value", "limit"), [
    ("displayUrl", "https://jira.example.com/" + "x" * 231, "255"),
    ("productType", "j" * 33, "32"),
    ("displayUrl", 42, "255"),
    ("productType", ["jira"], "32"),
    ("displayUrl", "https://jira.example.com/\x00", None),
    ("sharedSecret", "s" * 256, "255"),
])
def test_install_fields_that_do_not_fit_are_a_422_naming_the_field(any_addon, atlassian, field, value, limit):
    site = atlassian.new_site()
    response = site.install(any_addon.url, body=site.lifecycle_body() | {field: value})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_body" and field in error["message"]
    if limit:
        assert limit in error["message"]
    assert tenant(any_addon, site.client_key) is None


def test_install_fields_at_their_limits_are_stored(any_addon, atlassian):
    site = atlassian.new_site()
    display_url = "https://jira.example.com/" + "x" * 230
    body = site.lifecycle_body() | {"displayUrl": display_url, "productType": "j" * 32}
    assert site.install(any_addon.url, body=body).status_code == 204
    stored = tenant(any_addon, site.client_key)
    assert (stored.display_url, stored.product_type) == (display_url, "j" * 32)
    other = atlassian.new_site()  # optional fields may be absent or null
    assert other.install(any_addon.url, body=other.lifecycle_body() | {"displayUrl": None,
                                                                        "productType": None}).status_code == 204
    assert (tenant(any_addon, other.client_key).display_url, tenant(any_addon, other.client_key).product_type) \
        == (None, None)


def _refuse_new_tenants(addon) -> None:
    """Make the database itself refuse a tenant row, as an unexpected database error would."""
    with addon.runtime.engine.begin() as conn:
        if addon.runtime.engine.dialect.name == "sqlite":
            conn.execute(text("CREATE TRIGGER refuse_tenants BEFORE INSERT ON tenants "
                              "BEGIN SELECT RAISE(ABORT, 'no new tenants'); END"))
        else:  # PostgreSQL's error quotes the whole failing row in its DETAIL
            conn.execute(text("ALTER TABLE tenants ADD CONSTRAINT refuse_tenants CHECK (id < 0) NOT VALID"))


def test_a_database_error_never_logs_the_shared_secret(any_addon, atlassian, caplog):
    caplog.set_level(logging.INFO)  # SQLAlchemy's statement log too, had anyone turned it on
    _refuse_new_tenants(any_addon)
    site = atlassian.new_site()
    response = site.install(any_addon.url)
    assert response.status_code == 500
    assert response.json()["error"] == {"code": "internal_error", "message": "an unexpected error occurred"}
    assert site.shared_secret not in response.text
    logged = "\n".join(f"{r.getMessage()}\n{r.exc_text or ''}" for r in caplog.records) + caplog.text
    assert site.shared_secret not in logged
    assert "unhandled database error: IntegrityError" in logged  # the error is logged, by its kind and place
    assert "addon/connect/lifecycle.py:" in logged
    assert tenant(any_addon, site.client_key) is None


def _post_all_at_once(requests_to_send: list[tuple[str, dict, dict]]) -> list[int]:
    """POST every (url, body, headers) from its own thread, released together; the status codes in order."""
    barrier = threading.Barrier(len(requests_to_send))
    statuses: list[int] = [0] * len(requests_to_send)

    def send(i: int, url: str, body: dict, headers: dict) -> None:
        barrier.wait()
        statuses[i] = requests.post(url, json=body, headers=headers, timeout=30).status_code

    threads = [threading.Thread(target=send, args=(i, *r)) for i, r in enumerate(requests_to_send)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def test_concurrent_installs_of_a_new_client_key_all_succeed(pg_addon, atlassian):
    addon = pg_addon
    assert atlassian.new_site().install(addon.url).status_code == 204  # the install key is fetched and cached
    for _ in range(4):
        site = atlassian.new_site()
        url = f"{addon.url}/lifecycle/installed"
        sends = [(url, site.lifecycle_body(), {"Authorization": "JWT " + atlassian.install_token(
            addon.url, "/lifecycle/installed", issuer=site.client_key)}) for _ in range(8)]
        assert _post_all_at_once(sends) == [204] * 8
        with addon.sessions() as session:
            assert session.scalar(select(func.count()).select_from(Tenant)
                                  .where(Tenant.client_key == site.client_key)) == 1
        assert site.call(addon.url, "POST", "/lifecycle/enabled", json_body={}).status_code == 204


def test_one_install_token_sent_many_times_at_once_installs_once(pg_addon, atlassian):
    addon = pg_addon
    assert atlassian.new_site().install(addon.url).status_code == 204
    for _ in range(4):
        site = atlassian.new_site()
        token = atlassian.install_token(addon.url, "/lifecycle/installed", issuer=site.client_key)
        sends = [(f"{addon.url}/lifecycle/installed", site.lifecycle_body(), {"Authorization": f"JWT {token}"})] * 8
        assert sorted(_post_all_at_once(sends)) == [204] + [401] * 7
        assert tenant(addon, site.client_key).state == TenantState.INSTALLED


def test_an_install_token_replayed_later_is_still_refused(addon, atlassian):
    """Until it expires: after an uninstall and housekeeping, replaying the old install token must not revive
    the tenant (nor replaying the uninstall token remove it again)."""
    site = atlassian.new_site()
    install = atlassian.install_token(addon.url, "/lifecycle/installed", issuer=site.client_key)
    installed = {"Authorization": f"JWT {install}"}
    assert requests.post(f"{addon.url}/lifecycle/installed", json=site.lifecycle_body(), headers=installed,
                         timeout=10).status_code == 204
    uninstall = atlassian.install_token(addon.url, "/lifecycle/uninstalled", issuer=site.client_key)
    uninstalled = {"Authorization": f"JWT {uninstall}"}
    assert requests.post(f"{addon.url}/lifecycle/uninstalled", json=site.lifecycle_body("uninstalled"),
                         headers=uninstalled, timeout=10).status_code == 204
    time.sleep(1.5)
    prune_used_install_tokens(addon.runtime)
    replay = requests.post(f"{addon.url}/lifecycle/installed", json=site.lifecycle_body(), headers=installed,
                           timeout=10)
    assert replay.status_code == 401 and "already been used" in replay.json()["error"]["message"]
    assert tenant(addon, site.client_key).state == TenantState.UNINSTALLED
    assert site.install(addon.url).status_code == 204  # a fresh signed install is fine
    replay = requests.post(f"{addon.url}/lifecycle/uninstalled", json=site.lifecycle_body("uninstalled"),
                           headers=uninstalled, timeout=10)
    assert replay.status_code == 401
    assert tenant(addon, site.client_key).state == TenantState.INSTALLED
