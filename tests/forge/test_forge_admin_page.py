"""The admin page as Forge Custom UI (CONTRACT.md section 9.2), in headless Chromium: the build of ui/ (the admin
page's one bundle, the same the Connect page loads, with the real @forge/bridge), with the Forge host played by the test
(tests/support/forge_ui.py). Its `invokeRemote` calls reach the real add-on over HTTP.

The headers Forge's proxy adds are minted by the test as Forge mints them: a Forge Invocation Token of the app's
installation with the administrator as `principal`, and the app system token in `x-forge-oauth-system`; the add-on
checks them through its Forge door.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select

from addon.storage.models import ProjectSnapshot, Webhook
from tests.conftest import make_settings
from tests.receivers import Receiver
from tests.support.addon_server import AddonServer, wait_for
from tests.support.atlassian import FakeAtlassian, FakeSite
from tests.support.browser import axe_violations, chromium, screenshot  # noqa: F401 - chromium is a fixture
from tests.support.forge import FakeForge, FakeInstallation
from tests.support.forge_ui import ForgeAdminPage, build_forge_page

expect = pytest.importorskip("playwright.sync_api").expect
expect.set_options(timeout=10_000)


@dataclass
class World:
    receiver: Receiver
    addon: AddonServer
    site: FakeSite
    installation: FakeInstallation


@pytest.fixture(scope="module")
def forge_build(tmp_path_factory) -> object:
    return build_forge_page(tmp_path_factory.mktemp("forge-ui") / "admin")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    atlassian = FakeAtlassian()
    forge = FakeForge(atlassian)
    receiver = Receiver().start()
    database = tmp_path_factory.mktemp("forge-admin-page") / "addon.db"
    addon = AddonServer(make_settings(atlassian, f"sqlite:///{database}", ca_bundle=receiver.ca_path,
                                      forge_app_id=forge.app_id, forge_jwks_url=forge.jwks_url,
                                      forge_api_hosts=("127.0.0.1",)))
    try:
        site = atlassian.new_site()
        site.admins.add("admin-account")
        site.add_project(10000, "DEMO", "Demo project")
        installation = forge.install(site)
        assert installation.invoke(addon.url + "/forge/lifecycle", installation.lifecycle_body()).status == 204
        # the install snapshot names the project of test deliveries
        wait_for(lambda: _count(addon, select(func.count()).select_from(ProjectSnapshot)) == 1,
                 message="the install snapshot")
        yield World(receiver, addon, site, installation)
    finally:
        addon.stop()
        receiver.stop()
        forge.stop()
        atlassian.stop()


def _count(addon: AddonServer, query) -> int:  # type: ignore[no-untyped-def]
    with addon.sessions() as session:
        return session.scalar(query)


def _open(chromium, forge_build, world: World, headers) -> Iterator[ForgeAdminPage]:  # noqa: F811
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB", timezone_id="UTC")
    try:
        yield ForgeAdminPage(context.new_page(), forge_build, world.addon.url, headers).install()
    finally:
        context.close()


@pytest.fixture
def forge_page(chromium, forge_build, world) -> Iterator[ForgeAdminPage]:  # noqa: F811
    installation = world.installation
    yield from _open(chromium, forge_build, world, lambda: {
        "Authorization": f"Bearer {installation.fit(principal='admin-account', module_type='jira:adminPage')}",
        "x-forge-oauth-system": installation.system_tokens[-1]})


def _row(page, webhook_id: int):  # type: ignore[no-untyped-def]
    return page.locator(f'[data-testid="webhook-row"][data-webhook-id="{webhook_id}"]')


def _menu(page, webhook_id: int, item: str) -> None:  # type: ignore[no-untyped-def]
    _row(page, webhook_id).get_by_test_id("row-menu--trigger").click()
    page.get_by_test_id(item).click()


def test_administrator_creates_tests_redelivers_edits_and_deletes_through_invoke_remote(world, forge_page):
    page, receiver = forge_page.page, world.receiver
    forge_page.open()
    expect(page.get_by_test_id("list-state")).to_contain_text("No webhooks yet")

    # Create: the secret is shown once, the webhook is listed, and Forge shows the flag.
    page.get_by_test_id("create-name").fill("Finance sync")
    page.get_by_test_id("create-url").fill(receiver.url("/forge-finance"))
    page.get_by_test_id("create-submit").click()
    expect(page.get_by_test_id("secret-value")).to_have_text(re.compile(r"^whsec_[A-Za-z0-9+/]{43}=$"))
    secret = page.get_by_test_id("secret-value").text_content()
    assert not axe_violations(page), axe_violations(page)
    page.get_by_test_id("secret-dismiss").click()
    rows = page.get_by_test_id("webhook-row")
    expect(rows).to_have_count(1)
    webhook_id = int(rows.first.get_attribute("data-webhook-id"))
    with world.addon.sessions() as session:
        stored = session.get(Webhook, webhook_id)
        assert (stored.name, stored.url) == ("Finance sync", receiver.url("/forge-finance"))
    wait_for(lambda: "“Finance sync” created" in [f["title"] for f in forge_page.flags()], message="Forge's flag")

    # Opened again: the list comes from the add-on.
    forge_page.open()
    row = _row(page, webhook_id)
    expect(row.get_by_test_id("webhook-name")).to_have_text("Finance sync")
    expect(row.get_by_test_id("webhook-status")).to_have_text("NEVER RUN")

    # A test delivery reaches the receiver, signed with the secret shown once.
    _menu(page, webhook_id, "action-test")
    expect(row.get_by_test_id("test-result")).to_have_attribute("data-status", "OK")
    [delivered] = receiver.wait_for(1, path="/forge-finance")
    assert Receiver.verify(delivered, [secret])["data"]["event"] == "test"

    # The delivery log, and a confirmed redelivery with the same webhook-id, shown in the log as it happens.
    row.get_by_test_id("action-deliveries").click()
    logged = page.get_by_test_id("delivery-log").get_by_test_id("delivery-row")
    expect(logged).to_have_count(1)
    expect(logged.first.get_by_test_id("delivery-event")).to_have_text("test")
    expect(logged.first.get_by_test_id("delivery-state")).to_have_text("DELIVERED")
    assert not axe_violations(page), axe_violations(page)
    forge_page_screenshot = screenshot(page, "admin-page-forge-log.png")
    assert forge_page_screenshot.is_file()
    logged.first.get_by_test_id("action-redeliver").click()
    page.get_by_test_id("confirm-dialog").get_by_test_id("confirm-yes").click()
    redelivered = receiver.wait_for(2, path="/forge-finance")[1]
    assert redelivered.headers["webhook-id"] == delivered.headers["webhook-id"]
    expect(logged.first.get_by_test_id("delivery-redelivered")).to_have_text("REDELIVERY")
    page.get_by_test_id("deliveries-close").click()

    # Edit, then delete after confirming.
    _menu(page, webhook_id, "action-edit")
    page.get_by_test_id("edit-name").fill("Finance sync (EU)")
    page.get_by_test_id("edit-save").click()
    expect(row.get_by_test_id("webhook-name")).to_have_text("Finance sync (EU)")
    _menu(page, webhook_id, "action-delete")
    page.get_by_test_id("confirm-dialog").get_by_test_id("confirm-yes").click()
    expect(page.get_by_test_id("webhook-row")).to_have_count(0)
    with world.addon.sessions() as session:
        assert session.get(Webhook, webhook_id).deleted_at is not None

    # Every call went through invokeRemote, to the admin API's paths on the remote.
    assert "POST /api/webhooks" in forge_page.calls
    assert "GET /api/webhooks" in forge_page.calls
    assert f"POST /api/webhooks/{webhook_id}/test" in forge_page.calls
    assert f"PATCH /api/webhooks/{webhook_id}" in forge_page.calls
    assert f"DELETE /api/webhooks/{webhook_id}" in forge_page.calls
    assert any(call.startswith(f"GET /api/webhooks/{webhook_id}/delivery-log?") for call in forge_page.calls)
    assert any(call.startswith("POST /api/deliveries/") and call.endswith("/redeliver") for call in forge_page.calls)
    assert forge_page.problems() == {}


def test_a_call_the_add_on_refuses_shows_its_message(chromium, forge_build, world):  # noqa: F811
    for forge_page in _open(chromium, forge_build, world, lambda: {}):
        forge_page.open()
        error = forge_page.page.get_by_test_id("load-error")
        # the add-on's 401 came back through invokeRemote as an answer, and the page says what to do
        expect(error).to_contain_text("The webhooks could not be loaded")
        expect(error).to_contain_text("Jira could not confirm who you are. Reload the page.")
        expect(error).to_have_attribute("data-code", "unauthorized")
        expect(forge_page.page.get_by_test_id("list-state")).to_have_count(0)
        assert not axe_violations(forge_page.page), axe_violations(forge_page.page)
        screenshot(forge_page.page, "admin-page-load-error.png")
        assert forge_page.calls and forge_page.calls[0] == "GET /api/webhooks"
        assert forge_page.page_errors == []
