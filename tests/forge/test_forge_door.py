"""The Forge door over real HTTP, played by the fake Forge (CONTRACT §9): the FIT matrix on every route it guards,
lifecycle, project events and Forge's retries, the admin API and the intake with FITs, the closed door, the
uninstall inference, and the same outgoing body as the Connect door for the same change."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import logging
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import requests
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import serialization
from sqlalchemy import func, select, update

from addon.admin.tenants import copy_webhooks, list_tenants
from addon.delivery.housekeeping import infer_forge_uninstalls
from addon.storage.models import (
    Delivery,
    Event,
    JiraInboxEvent,
    ProjectSnapshot,
    SeenJiraWebhook,
    Tenant,
    TenantState,
    Webhook,
    utcnow,
)
from tests.conftest import make_settings
from tests.receivers import Receiver
from tests.support.addon_server import AddonServer, wait_for
from tests.support.atlassian import FakeAtlassian, new_rsa_key
from tests.support.forge import DROP, FakeForge, FakeInstallation, new_app_id
from tests.support.intake import install_and_enable

LIFECYCLE = "/forge/lifecycle"
EVENTS = "/forge/events/jira"
WEBHOOKS = "/api/webhooks"
FIELD_CHANGES = "/events/projectrak/field-changes"
ADMIN = "admin-account"
SECRET_KEY = Fernet.generate_key().decode()  # system tokens are sealed with it


def forge_settings(atlassian: FakeAtlassian, forge: FakeForge, database_url: str, **changes: Any):
    return make_settings(atlassian, database_url, forge_app_id=forge.app_id, forge_jwks_url=forge.jwks_url,
                         forge_api_hosts=("127.0.0.1",), secret_key=SECRET_KEY, **changes)


@pytest.fixture
def server(atlassian: FakeAtlassian, forge: FakeForge, database_url: str) -> Iterator[AddonServer]:
    addon = AddonServer(forge_settings(atlassian, forge, database_url))
    yield addon
    addon.stop()


@pytest.fixture
def inst(forge: FakeForge) -> FakeInstallation:
    installation = forge.install()
    installation.site.admins.add(ADMIN)
    installation.site.add_project(10000, "DEMO", "Demo project")
    installation.site.add_project(10001, "OPS", "Operations")
    return installation


def forge_tenant(server: AddonServer, inst: FakeInstallation) -> Tenant | None:
    with server.sessions() as session:
        return session.scalar(select(Tenant).where(Tenant.installation_id == inst.installation_id))


def inbox_rows(server: AddonServer, tenant_id: int) -> list[JiraInboxEvent]:
    with server.sessions() as session:
        return list(session.scalars(select(JiraInboxEvent).where(JiraInboxEvent.tenant_id == tenant_id)
                                    .order_by(JiraInboxEvent.id)))


def wait_processed(server: AddonServer, tenant_id: int) -> list[JiraInboxEvent]:
    return wait_for(lambda: (rows := inbox_rows(server, tenant_id)) and all(r.processed_at for r in rows) and rows,
                    15.0, message="the inbox to be processed")


def events_of(server: AddonServer, tenant_id: int) -> list[Event]:
    with server.sessions() as session:
        return list(session.scalars(select(Event).where(Event.tenant_id == tenant_id).order_by(Event.id)))


def install(server: AddonServer, inst: FakeInstallation, *, wrapped: bool = False) -> Tenant:
    invocation = inst.invoke(server.url + LIFECYCLE, inst.lifecycle_body(), wrapped=wrapped)
    assert [a.status for a in invocation.attempts] == [204], invocation.attempts[-1].body
    tenant = forge_tenant(server, inst)
    assert tenant is not None
    wait_processed(server, tenant.id)
    return tenant


def admin_call(server: AddonServer, inst: FakeInstallation, method: str, path: str, body: Any = None,
               principal: str | None = ADMIN) -> requests.Response:
    return inst.invoke_remote(server.url, path, method=method, body=body, principal=principal)


# The FIT matrix: every failure is 401 on every route of the door, and changes nothing.


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hs256_with_public_key(forge: FakeForge, inst: FakeInstallation) -> str:
    public_pem = forge.keys[forge.current_kid].public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    signing_input = (_b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": forge.current_kid}).encode()) + "."
                     + _b64(json.dumps(inst.fit_claims(principal=ADMIN)).encode()))
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64(signature)


def _bad_authorization(case: str, forge: FakeForge, inst: FakeInstallation) -> str | None:
    fit = inst.fit
    tokens = {
        "missing": lambda: None,
        "malformed": lambda: "Bearer not.a.jwt",
        "alg none": lambda: "Bearer " + jwt.encode(inst.fit_claims(principal=ADMIN), None, algorithm="none",
                                                   headers={"kid": forge.current_kid}),
        "HS256 with the public key": lambda: "Bearer " + _hs256_with_public_key(forge, inst),
        "expired": lambda: "Bearer " + fit(principal=ADMIN, iat_offset=-400),
        "not yet valid": lambda: "Bearer " + fit(principal=ADMIN, iat_offset=400),
        "wrong iss": lambda: "Bearer " + fit(principal=ADMIN, changes={"iss": "forge/someone-else"}),
        "wrong aud": lambda: "Bearer " + fit(principal=ADMIN, changes={"aud": new_app_id()}),
        "unknown kid": lambda: "Bearer " + fit(principal=ADMIN, kid="forge/invocation-token/unknown"),
        "known kid, other key": lambda: "Bearer " + fit(principal=ADMIN, key=new_rsa_key()[0]),
        "icLabel": lambda: "Bearer " + fit(principal=ADMIN, changes={"icLabel": "isolated-1"}),
        "no installationId": lambda: "Bearer " + fit(principal=ADMIN, changes={"app.installationId": DROP}),
        "foreign apiBaseUrl": lambda: "Bearer " + fit(
            principal=ADMIN, changes={"app.apiBaseUrl": "https://api.example.com/ex/jira/x"}),
        "another app's token": lambda: "Bearer " + forge.install(inst.site, app_id=new_app_id()).fit(
            principal=ADMIN),
    }
    return tokens[case]()


FIT_ATTACKS = ["missing", "malformed", "alg none", "HS256 with the public key", "expired", "not yet valid",
               "wrong iss", "wrong aud", "unknown kid", "known kid, other key", "icLabel", "no installationId",
               "foreign apiBaseUrl", "another app's token"]
ROUTES = {
    LIFECYCLE: lambda inst: inst.lifecycle_body(),
    EVENTS: lambda inst: inst.project_event_body("avi:jira:updated:project", 10000),
    WEBHOOKS: lambda inst: {"name": "attacker", "url": "https://example.com/hook"},
    FIELD_CHANGES: lambda inst: {"project": {"id": 10000}, "changes": [
        {"field": {"id": 1, "name": "Budget", "type": "number"}, "previous": 1, "current": 2}]},
}


def database_state(server: AddonServer) -> tuple:
    with server.sessions() as session:
        counts = tuple(session.scalar(select(func.count()).select_from(model))
                       for model in (Tenant, Webhook, Event, Delivery, JiraInboxEvent, SeenJiraWebhook))
        tenants = tuple(session.execute(select(Tenant.id, Tenant.state, Tenant.forge_token,
                                               Tenant.forge_token_received_at, Tenant.api_base_url)).all())
    return counts, tenants


@pytest.fixture(scope="module")
def matrix_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AddonServer, FakeForge,
                                                                         FakeInstallation]]:
    """One add-on (SQLite) with one installed Forge tenant, shared by the whole matrix."""
    atlassian = FakeAtlassian()
    forge = FakeForge(atlassian)
    database = tmp_path_factory.mktemp("matrix") / "addon.db"
    addon = AddonServer(forge_settings(atlassian, forge, f"sqlite:///{database}"))
    installation = forge.install()
    installation.site.admins.add(ADMIN)
    installation.site.add_project(10000, "DEMO", "Demo project")
    install(addon, installation)
    yield addon, forge, installation
    addon.stop()
    forge.stop()
    atlassian.stop()


@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("case", FIT_ATTACKS)
def test_every_bad_fit_is_401_and_changes_nothing(matrix_env, route: str, case: str) -> None:
    addon, forge, inst = matrix_env
    before = database_state(addon)
    authorization = _bad_authorization(case, forge, inst)
    headers = {"x-forge-oauth-system": inst.issue_system_token()}
    if authorization is not None:
        headers["Authorization"] = authorization
    response = requests.post(addon.url + route, json=ROUTES[route](inst), headers=headers, timeout=30)
    assert response.status_code == 401, (case, route, response.text)
    error = response.json()["error"]
    assert error["code"] == "unauthorized" and error["message"]
    if case == "icLabel":
        assert "isolated cloud" in error["message"]
    assert database_state(addon) == before


@pytest.mark.parametrize("route", list(ROUTES))
def test_the_same_request_with_a_valid_fit_gets_through(matrix_env, route: str) -> None:
    """The matrix's control: only the token differs between these requests and the refused ones."""
    addon, _forge, inst = matrix_env
    response = requests.post(addon.url + route, json=ROUTES[route](inst), timeout=30, headers={
        "Authorization": f"Bearer {inst.fit(principal=ADMIN)}", "x-forge-oauth-system": inst.issue_system_token()})
    assert response.status_code in (201, 202, 204), (route, response.text)


def test_the_key_set_unreachable_is_503_with_retry_after(server: AddonServer, forge: FakeForge,
                                                         inst: FakeInstallation) -> None:
    forge.jwks_down = True
    response = requests.post(server.url + LIFECYCLE, json=inst.lifecycle_body(),
                             headers={"Authorization": f"Bearer {inst.fit()}"}, timeout=30)
    assert response.status_code == 503 and response.headers["Retry-After"]
    assert response.json()["error"]["code"] == "forge_keys_unavailable"
    assert forge_tenant(server, inst) is None


# Lifecycle.


@pytest.mark.parametrize("wrapped", [False, True])
def test_installed_creates_the_tenant_keeps_the_token_sealed_and_snapshots_every_project(
        server: AddonServer, inst: FakeInstallation, wrapped: bool, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    tenant = install(server, inst, wrapped=wrapped)
    assert tenant.door == "forge" and tenant.client_key is None and tenant.shared_secret is None
    assert tenant.state == TenantState.INSTALLED
    assert tenant.api_base_url == inst.api_base_url and tenant.base_url == inst.site_url
    token = inst.system_tokens[-1]
    assert tenant.forge_token and token not in tenant.forge_token  # sealed
    assert server.runtime.box.open(tenant.forge_token) == token
    assert token not in caplog.text
    with server.sessions() as session:
        recorded = set(session.scalars(select(ProjectSnapshot.project_id)
                                       .where(ProjectSnapshot.tenant_id == tenant.id)))
    assert recorded == {"10000", "10001"}
    searches = inst.site.calls_to("GET", "/rest/api/3/project/search")
    assert searches and all(call.claims["system_token"] == token for call in searches)


def test_upgraded_changes_only_the_token_and_unknown_lifecycle_events_are_acknowledged(
        server: AddonServer, inst: FakeInstallation) -> None:
    first = install(server, inst)
    upgraded = inst.invoke(server.url + LIFECYCLE, inst.lifecycle_body("avi:forge:upgraded:app"))
    assert upgraded.status == 204
    after = forge_tenant(server, inst)
    assert after is not None and after.id == first.id and after.installed_at == first.installed_at
    assert server.runtime.box.open(after.forge_token) == inst.system_tokens[-1] != \
        server.runtime.box.open(first.forge_token)
    assert len(inbox_rows(server, first.id)) == 1  # the install snapshot only
    assert inst.invoke(server.url + LIFECYCLE, inst.lifecycle_body("avi:forge:something:new")).status == 204


def test_a_valid_fit_of_an_unseen_installation_creates_its_tenant(server: AddonServer,
                                                                 inst: FakeInstallation) -> None:
    response = admin_call(server, inst, "GET", WEBHOOKS)
    assert response.status_code == 200 and response.json() == []
    tenant = forge_tenant(server, inst)
    assert tenant is not None and tenant.door == "forge"


# Events and Forge's retries.


def add_webhook_via_api(server: AddonServer, inst: FakeInstallation, url: str) -> dict:
    response = admin_call(server, inst, "POST", WEBHOOKS, {"name": "receiver", "url": url})
    assert response.status_code == 201, response.text
    return response.json()


@pytest.mark.parametrize("wrapped", [False, True])
def test_a_project_rename_emits_one_event_with_atlassian_id_as_user(server: AddonServer, inst: FakeInstallation,
                                                                   wrapped: bool) -> None:
    tenant = install(server, inst)
    add_webhook_via_api(server, inst, "https://127.0.0.1:9/hook")
    inst.site.update_project(10000, name="Demo renamed")
    body = inst.project_event_body("avi:jira:updated:project", 10000, atlassian_id="editor-1")
    body["timestamp"] = 1675182117615
    assert inst.invoke(server.url + EVENTS, body, wrapped=wrapped).status == 204
    wait_processed(server, tenant.id)
    [event] = wait_for(lambda: events_of(server, tenant.id), message="the event")
    data = json.loads(event.body)["data"]
    assert data["user"] == "editor-1" and data["timestamp"] == 1675182117615
    assert data["fields"] == [{"id": -2, "name": "Name", "type": "text",
                               "value": {"current": "Demo renamed", "previous": "Demo project"}}]


def test_without_atlassian_id_and_timestamp_user_is_null_and_time_is_receipt(server: AddonServer,
                                                                             inst: FakeInstallation) -> None:
    tenant = install(server, inst)
    inst.site.update_project(10001, name="Ops renamed")
    before = int(utcnow().timestamp() * 1000)
    body = inst.project_event_body("avi:jira:updated:project", 10001, with_attributes=False)
    assert inst.invoke(server.url + EVENTS, body).status == 204
    [event] = wait_for(lambda: events_of(server, tenant.id), message="the event")
    data = json.loads(event.body)["data"]
    assert data["user"] is None and before <= data["timestamp"] <= int(utcnow().timestamp() * 1000)


def test_the_seven_project_events_map_onto_connect_s_handling(server: AddonServer, inst: FakeInstallation) -> None:
    tenant = install(server, inst)
    inst.site.add_project(10002, "NEW", "New project")
    for event_type in ("created", "archived", "unarchived", "softdeleted", "restored", "deleted"):
        body = inst.project_event_body(f"avi:jira:{event_type}:project", 10002)
        assert inst.invoke(server.url + EVENTS, body).status == 204
    rows = wait_processed(server, tenant.id)
    assert [r.event for r in rows[1:]] == ["project_created", "project_archived", "project_restored_archived",
                                           "project_soft_deleted", "project_restored_deleted", "project_deleted"]
    with server.sessions() as session:
        assert session.scalar(select(ProjectSnapshot).where(ProjectSnapshot.tenant_id == tenant.id,
                                                            ProjectSnapshot.project_id == "10002")) is None


def test_unknown_event_types_are_acknowledged_and_stored_nowhere(server: AddonServer,
                                                                 inst: FakeInstallation) -> None:
    tenant = install(server, inst)
    body = {"eventType": "avi:jira:created:issue", "issue": {"id": "1"}}
    assert inst.invoke(server.url + EVENTS, body).status == 204
    assert len(inbox_rows(server, tenant.id)) == 1


def test_a_retry_after_a_slow_answer_sends_nothing_twice(server: AddonServer, forge: FakeForge,
                                                         inst: FakeInstallation, receiver: Receiver) -> None:
    tenant = install(server, inst)
    with server.sessions() as session, session.begin():
        session.add(Webhook(tenant_id=tenant.id, name="r", url=receiver.url(), enabled=True,
                            secret=server.runtime.box.seal("whsec_" + base64.b64encode(b"k" * 32).decode())))
    inst.site.update_project(10000, name="Slow rename")
    # Another web process, which has not read the key set yet, takes the event: its first attempt waits for the
    # key set past the invoker's timeout (and is finished anyway); the retry, with its retryContext, finds it stored.
    other = AddonServer(server.settings, background=False)
    try:
        forge.jwks_delays = [1.5]
        invocation = inst.invoke(other.url + EVENTS, inst.project_event_body("avi:jira:updated:project", 10000),
                                 wrapped=True, timeout_s=1.0)
    finally:
        other.stop()
    assert invocation.attempts[0].status is None and invocation.succeeded
    wait_processed(server, tenant.id)
    assert len([r for r in inbox_rows(server, tenant.id) if r.event == "project_updated"]) == 1
    assert len(events_of(server, tenant.id)) == 1


def test_a_retry_that_overtakes_the_attempt_is_still_one_event(server: AddonServer,
                                                               inst: FakeInstallation) -> None:
    tenant = install(server, inst)
    body = inst.project_event_body("avi:jira:updated:project", 10000)
    retry = {**body, "retryContext": {"retryCount": 1, "retryReason": "TIMEOUT", "retryData": {}}}
    token = inst.issue_system_token()
    assert inst.invoke(server.url + EVENTS, {"payload": retry}, system_token=token).status == 204
    assert inst.invoke(server.url + EVENTS, body, system_token=token).status == 204
    assert len([r for r in inbox_rows(server, tenant.id) if r.event == "project_updated"]) == 1


# The admin API and the intake with FITs.


def test_admin_api_with_fits(server: AddonServer, inst: FakeInstallation) -> None:
    install(server, inst)
    assert admin_call(server, inst, "GET", WEBHOOKS).status_code == 200
    outsider = f"outsider-{inst.cloud_id}"  # unique: the permission cache is per (tenant id, account) per process
    not_admin = admin_call(server, inst, "GET", WEBHOOKS, principal=outsider)
    assert not_admin.status_code == 403 and not_admin.json()["error"]["code"] == "forbidden"
    no_principal = admin_call(server, inst, "GET", WEBHOOKS, principal=None)
    assert no_principal.status_code == 403 and "principal" in no_principal.json()["error"]["message"]
    created = add_webhook_via_api(server, inst, "https://127.0.0.1:9/hook")
    assert created["secret"].startswith("whsec_")
    listed = admin_call(server, inst, "GET", WEBHOOKS).json()
    assert [w["id"] for w in listed] == [created["id"]]
    checks = inst.site.calls_to("POST", "/rest/api/3/permissions/check")
    # Asked for the principal, with the installation's system token (an administrator's answer may be cached).
    assert outsider in {c.body["accountId"] for c in checks} <= {ADMIN, outsider}
    assert all(c.claims["system_token"] in inst.system_tokens for c in checks)


def test_a_tenant_of_one_door_cannot_see_the_other_s_webhooks(server: AddonServer, atlassian: FakeAtlassian,
                                                              inst: FakeInstallation) -> None:
    site = atlassian.new_site()
    site.admins.add(ADMIN)
    site.add_project(10000, "DEMO", "Demo project")
    install_and_enable(site, server)
    install(server, inst)
    forge_hook = add_webhook_via_api(server, inst, "https://127.0.0.1:9/f")
    token = site.context_token(ADMIN)
    answer = requests.get(f"{server.url}{WEBHOOKS}/{forge_hook['id']}", headers={"Authorization": f"JWT {token}"},
                          timeout=30)
    assert answer.status_code == 404


def test_intake_with_fits(server: AddonServer, inst: FakeInstallation) -> None:
    tenant = install(server, inst)
    add_webhook_via_api(server, inst, "https://127.0.0.1:9/hook")
    body = {"project": {"key": "DEMO"}, "timestamp": 1675182117615, "changes": [
        {"field": {"id": 12345, "name": "Budget", "type": "number"}, "previous": 25000, "current": 23000}]}
    token = inst.issue_system_token()
    headers = {"x-forge-oauth-system": token}
    without = requests.post(server.url + FIELD_CHANGES, json=body, timeout=30,
                            headers={**headers, "Authorization": f"Bearer {inst.fit()}"})
    assert without.status_code == 401 and "principal" in without.json()["error"]["message"]
    accepted = requests.post(server.url + FIELD_CHANGES, json=body, timeout=30,
                             headers={**headers, "Authorization": f"Bearer {inst.fit(principal='actor-1')}"})
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["deliveries"] == 1
    [event] = events_of(server, tenant.id)
    data = json.loads(event.body)["data"]
    assert data["user"] == "actor-1" and data["project"] == {"id": 10000, "key": "DEMO", "name": "Demo project"}


# Background work and the system token.


def test_without_a_fresh_token_background_work_waits_and_says_why(server: AddonServer, inst: FakeInstallation,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    tenant = install(server, inst)
    with server.sessions() as session, session.begin():
        session.execute(update(Tenant).where(Tenant.id == tenant.id).values(
            forge_token_received_at=utcnow() - dt.timedelta(hours=2)))
    caplog.set_level(logging.WARNING)
    inst.site.update_project(10000, name="Renamed while waiting")
    # An event sent with no system token header cannot refresh the stored one.
    fit = inst.fit()
    response = requests.post(server.url + EVENTS, json=inst.project_event_body("avi:jira:updated:project", 10000),
                             headers={"Authorization": f"Bearer {fit}"}, timeout=30)
    assert response.status_code == 204
    wait_for(lambda: "waiting for a fresh Forge system token" in caplog.text, message="the log line")
    assert f"tenant={tenant.id}" in caplog.text
    [row] = [r for r in inbox_rows(server, tenant.id) if r.event == "project_updated"]
    assert row.processed_at is None and row.attempts >= 1
    # The next request of the installation brings a fresh token: the waiting event goes through.
    assert admin_call(server, inst, "GET", WEBHOOKS).status_code == 200
    server.runtime.jira_events_committed.notify()
    with server.sessions() as session, session.begin():
        session.execute(update(JiraInboxEvent).where(JiraInboxEvent.id == row.id).values(not_before=None))
    server.runtime.jira_events_committed.notify()
    wait_processed(server, tenant.id)


# Uninstall inference.


def test_uninstall_is_inferred_after_seven_days_of_refusals_and_revived_by_a_valid_request(
        server: AddonServer, inst: FakeInstallation) -> None:
    tenant = install(server, inst)
    inst.refusal = 401
    assert admin_call(server, inst, "GET", WEBHOOKS, principal=f"not-cached-{inst.cloud_id}").status_code == 403
    refused = forge_tenant(server, inst)
    assert refused is not None and refused.jira_refused_since is not None
    infer_forge_uninstalls(server.runtime)
    assert forge_tenant(server, inst).state == TenantState.INSTALLED  # not 7 days yet
    long_ago = utcnow() - dt.timedelta(days=8)
    with server.sessions() as session, session.begin():
        session.execute(update(Tenant).where(Tenant.id == tenant.id).values(jira_refused_since=long_ago,
                                                                            last_request_at=long_ago))
    infer_forge_uninstalls(server.runtime)
    gone = forge_tenant(server, inst)
    assert gone is not None and gone.state == TenantState.UNINSTALLED and gone.uninstalled_at is not None
    inst.refusal = None
    assert inst.invoke(server.url + EVENTS, inst.project_event_body("avi:jira:updated:project", 10000)).status == 204
    revived = forge_tenant(server, inst)
    assert revived is not None and revived.state == TenantState.INSTALLED and revived.jira_refused_since is None


def test_a_request_in_the_last_seven_days_keeps_the_tenant(server: AddonServer, inst: FakeInstallation) -> None:
    tenant = install(server, inst)
    with server.sessions() as session, session.begin():
        session.execute(update(Tenant).where(Tenant.id == tenant.id).values(
            jira_refused_since=utcnow() - dt.timedelta(days=8)))
    infer_forge_uninstalls(server.runtime)
    assert forge_tenant(server, inst).state == TenantState.INSTALLED


# The closed door.


def test_the_door_is_closed_without_forge_app_id(atlassian: FakeAtlassian, forge: FakeForge, sqlite_url: str,
                                                 inst: FakeInstallation) -> None:
    addon = AddonServer(make_settings(atlassian, sqlite_url, forge_jwks_url=forge.jwks_url,
                                      forge_api_hosts=("127.0.0.1",)))
    try:
        for path in (LIFECYCLE, EVENTS):
            answer = requests.post(addon.url + path, json=inst.lifecycle_body(),
                                   headers={"Authorization": f"Bearer {inst.fit()}"}, timeout=30)
            assert answer.status_code == 404 and answer.json()["error"]["code"]
        for path in (WEBHOOKS, FIELD_CHANGES):
            answer = requests.post(addon.url + path, json={}, timeout=30,
                                   headers={"Authorization": f"Bearer {inst.fit(principal=ADMIN)}"})
            assert answer.status_code == 401
        with addon.sessions() as session:
            assert session.scalar(select(func.count()).select_from(Tenant)) == 0
    finally:
        addon.stop()


# End to end: one site behind both doors sends the same body for the same change.


def test_a_rename_through_either_door_sends_the_same_body(atlassian: FakeAtlassian, forge: FakeForge,
                                                          database_url: str, receiver: Receiver) -> None:
    addon = AddonServer(forge_settings(atlassian, forge, database_url, ca_bundle=receiver.ca_path))
    try:
        site = atlassian.new_site()
        site.admins.add(ADMIN)
        site.add_project(10000, "DEMO", "Demo project")
        install_and_enable(site, addon)
        inst = forge.install(site)
        forge_tenant_row = install(addon, inst)
        connect_hook = requests.post(f"{addon.url}{WEBHOOKS}", json={"name": "c", "url": receiver.url("/connect")},
                                     headers={"Authorization": f"JWT {site.context_token(ADMIN)}"}, timeout=30)
        assert connect_hook.status_code == 201, connect_hook.text
        add_webhook_via_api(addon, inst, receiver.url("/forge"))
        with addon.sessions() as session:
            connect_id = session.scalar(select(Tenant.id).where(Tenant.client_key == site.client_key))
        wait_processed(addon, connect_id)

        site.update_project(10000, name="Demo renamed")
        timestamp = 1675182117615
        assert site.send_webhook(addon.url, "project_updated", 10000, sub="editor-1",
                                 timestamp=timestamp).status_code == 204
        body = inst.project_event_body("avi:jira:updated:project", 10000, atlassian_id="editor-1")
        body["timestamp"] = timestamp
        assert inst.invoke(addon.url + EVENTS, body, wrapped=True).status == 204

        [via_connect] = receiver.wait_for(1, timeout=20, path="/connect")
        [via_forge] = receiver.wait_for(1, timeout=20, path="/forge")
        assert via_forge.json() == via_connect.json()
        assert via_forge.json()["data"]["fields"] == [{"id": -2, "name": "Name", "type": "text", "value": {
            "current": "Demo renamed", "previous": "Demo project"}}]
        assert forge_tenant_row.id != connect_id
    finally:
        addon.stop()


def test_webhooks_of_a_connect_site_carry_over_to_its_forge_installation(server: AddonServer, forge: FakeForge,
                                                                        atlassian: FakeAtlassian) -> None:
    site = atlassian.new_site()
    site.admins.add(ADMIN)
    site.add_project(10000, "DEMO", "Demo project")
    install_and_enable(site, server)
    created = requests.post(f"{server.url}{WEBHOOKS}", json={"name": "c", "url": "https://127.0.0.1:9/c"},
                            headers={"Authorization": f"JWT {site.context_token(ADMIN)}"}, timeout=30)
    assert created.status_code == 201, created.text
    inst = forge.install(site)
    install(server, inst)
    assert copy_webhooks(server.runtime, site.client_key, inst.installation_id) == 1
    listed = admin_call(server, inst, "GET", WEBHOOKS).json()
    assert [(w["name"], w["url"]) for w in listed] == [("c", "https://127.0.0.1:9/c")]
    assert {t["door"] for t in list_tenants(server.runtime)} == {"connect", "forge"}
