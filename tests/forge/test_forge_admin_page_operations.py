"""The admin page's operations (CONTRACT §10.3–§10.5) as Forge Custom UI: the same bundle as the Connect page
(tests/admin/test_admin_page_operations.py), every call through `invokeRemote` to the add-on's Forge door."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator

import pytest
from sqlalchemy import update

from addon.storage.engine import transaction
from addon.storage.models import Webhook, utcnow
from tests.forge.test_forge_admin_page import _menu, _open, _row, forge_build, world  # noqa: F401 - fixtures
from tests.support.browser import axe_violations, chromium  # noqa: F401 - chromium is a fixture
from tests.support.forge_ui import ForgeAdminPage

expect = pytest.importorskip("playwright.sync_api").expect
expect.set_options(timeout=10_000)


@pytest.fixture
def forge_page(chromium, forge_build, world) -> Iterator[ForgeAdminPage]:  # noqa: F811
    installation = world.installation
    yield from _open(chromium, forge_build, world, lambda: {
        "Authorization": f"Bearer {installation.fit(principal='admin-account', module_type='jira:adminPage')}",
        "x-forge-oauth-system": installation.system_tokens[-1]})


def test_banner_headers_recovery_and_operational_webhook_through_invoke_remote(world, forge_page):  # noqa: F811
    page, receiver = forge_page.page, world.receiver
    forge_page.open()
    page.get_by_test_id("create-name").fill("Stock sync")
    page.get_by_test_id("create-url").fill(receiver.url("/forge-stock"))
    page.get_by_test_id("create-submit").click()
    page.get_by_test_id("secret-dismiss").click()
    rows = page.get_by_test_id("webhook-row")
    expect(rows).to_have_count(1)
    webhook_id = int(rows.first.get_attribute("data-webhook-id"))

    # The banner, once the add-on has marked the webhook failing for 24 hours.
    with transaction(world.addon.sessions) as session:
        since = utcnow() - dt.timedelta(hours=26)
        session.execute(update(Webhook).where(Webhook.id == webhook_id).values(
            failing_since=since, alert_state="failing", alert_reason="failing", alert_since=since, alert_shown=True))
    forge_page.open()
    expect(page.get_by_test_id("alert-item")).to_contain_text("Stock sync has had only failed deliveries")

    # A header, sent with the test delivery; its value never comes back to the page.
    _menu(page, webhook_id, "action-edit")
    page.get_by_test_id("header-add").click()
    page.get_by_test_id("header-name").fill("X-Api-Key")
    page.get_by_test_id("header-value").fill("forge-key-3318")
    page.get_by_test_id("edit-save").click()
    expect(page.get_by_test_id("edit-dialog")).to_have_count(0)
    _menu(page, webhook_id, "action-test")
    expect(_row(page, webhook_id).get_by_test_id("test-result")).to_have_attribute("data-status", "OK")
    assert receiver.wait_for(1, path="/forge-stock")[0].headers["x-api-key"] == "forge-key-3318"
    _menu(page, webhook_id, "action-edit")
    expect(page.get_by_test_id("header-name")).to_have_value("X-Api-Key")
    expect(page.get_by_test_id("header-value")).to_have_value("")
    page.get_by_test_id("edit-cancel").click()
    assert "forge-key-3318" not in page.content()

    # Resend failed since…: nothing failed, and the page says so.
    _menu(page, webhook_id, "action-recover")
    page.get_by_test_id("recover-submit").click()
    expect(page.get_by_test_id("recover-result")).to_contain_text("Nothing to resend since then.")
    page.get_by_test_id("recover-close").click()

    # The operational webhook: its secret shown once.
    page.get_by_test_id("settings-url").fill(receiver.url("/forge-ops"))
    page.get_by_test_id("settings-save").click()
    expect(page.get_by_test_id("secret-value")).to_have_text(re.compile(r"^whsec_[A-Za-z0-9+/]{43}=$"))
    assert not axe_violations(page), axe_violations(page)
    page.get_by_test_id("secret-dismiss").click()
    expect(page.get_by_test_id("settings-current")).to_contain_text(receiver.url("/forge-ops"))

    assert "GET /api/settings" in forge_page.calls and "PATCH /api/settings" in forge_page.calls
    assert f"POST /api/webhooks/{webhook_id}/recover" in forge_page.calls
    assert forge_page.problems() == {}
