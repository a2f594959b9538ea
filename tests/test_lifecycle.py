"""Signed install and uninstall, enabled and disabled, against the fake Atlassian over real HTTP."""

from __future__ import annotations

import requests
from sqlalchemy import select

from addon.models import Tenant, TenantState
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
