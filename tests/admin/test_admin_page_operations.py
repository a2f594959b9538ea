"""The admin page's operations (CONTRACT §10.3–§10.5) in headless Chromium, through the Connect door: the banner for
webhooks the add-on disabled or that fail for 24 hours, the custom headers editor (names shown, values write-only),
"Resend failed since…", and the operational webhook's settings (secret shown once, rotation, removal). The same
bundle under Forge is checked in tests/forge/test_forge_admin_page_operations.py."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator

import pytest
from sqlalchemy import select, update

from addon.outbox.store import enqueue_event
from addon.storage.engine import transaction
from addon.storage.models import Delivery, DeliveryStatus, Tenant, Webhook, utcnow
from tests.admin.test_admin_page import World, _menu, _no_serious_violations, _open_page, _row, world  # noqa: F401
from tests.support.addon_server import wait_for
from tests.support.admin import AdminClient
from tests.support.browser import AdminPage, chromium  # noqa: F401 - a fixture

expect = pytest.importorskip("playwright.sync_api").expect
expect.set_options(timeout=10_000)

SECRET_FORM = re.compile(r"^whsec_[A-Za-z0-9+/]{43}=$")


@pytest.fixture
def admin_page(chromium, world) -> Iterator[AdminPage]:  # noqa: F811
    yield from _open_page(chromium, world)


@pytest.fixture
def api(world) -> AdminClient:  # noqa: F811
    return AdminClient(world.addon.url, world.site)


def _tenant_id(world: World) -> int:  # noqa: F811
    with world.addon.sessions() as session:
        return session.scalar(select(Tenant.id).where(Tenant.client_key == world.site.client_key))


def _failed_deliveries(world: World, webhook_id: int, count: int) -> list[str]:  # noqa: F811
    """`count` events whose deliveries to the webhook were given up an hour ago; returns their webhook-ids."""
    tenant_id = _tenant_id(world)
    body = {"data": {"event": "updated", "user": None, "timestamp": 1675182117615,
                     "project": {"id": 10000, "key": "DEMO", "name": "Demo project"}, "fields": []}}
    ids = []
    with transaction(world.addon.sessions) as session:
        for _ in range(count):
            event_id, _ = enqueue_event(session, tenant_id=tenant_id, source="projectrak", body=body,
                                        webhook_ids=[webhook_id])
            session.execute(update(Delivery).where(Delivery.event_id == event_id).values(
                status=DeliveryStatus.FAILED, attempt_count=8, finished_at=utcnow(), next_attempt_at=utcnow(),
                created_at=utcnow() - dt.timedelta(hours=1)))
            ids.append(session.scalar(select(Delivery.message_id).where(Delivery.event_id == event_id)))
    return ids


def test_the_banner_names_each_webhook_disabled_or_failing_with_since_when(world, admin_page, api):  # noqa: F811
    page = admin_page.page
    gone = api.create("Gone receiver", "https://93.184.215.14/gone")["id"]
    failing = api.create("Flaky receiver", "https://93.184.215.14/flaky")["id"]
    since = utcnow() - dt.timedelta(hours=30)
    with transaction(world.addon.sessions) as session:  # as outcomes leave them
        session.execute(update(Webhook).where(Webhook.id == gone).values(
            enabled=False, disabled_reason="gone", alert_state="disabled", alert_reason="gone", alert_since=since,
            alert_shown=True))
        session.execute(update(Webhook).where(Webhook.id == failing).values(
            failing_since=since, alert_state="failing", alert_reason="failing", alert_since=since, alert_shown=True))
    admin_page.open()
    banner = page.get_by_test_id("alert-banner")
    expect(banner).to_contain_text("2 webhooks need attention")
    gone_item = banner.locator(f'[data-testid="alert-item"][data-webhook-id="{gone}"]')
    expect(gone_item).to_contain_text("Gone receiver was disabled: its receiver answered 410 Gone.")
    expect(gone_item).to_contain_text(since.strftime("%Y-%m-%dT%H:%M"))
    expect(banner.locator(f'[data-testid="alert-item"][data-webhook-id="{failing}"]')).to_contain_text(
        "Flaky receiver has had only failed deliveries for more than 24 hours")
    _no_serious_violations(page, "the alert banner")
    admin_page.screenshot("admin-page-alerts.png")

    # Changed by an administrator (re-enabled): its alert leaves the page; the other stays.
    _row(page, gone).get_by_test_id("action-reenable").click()
    expect(_row(page, gone).get_by_test_id("action-toggle--input")).to_be_checked()
    admin_page.open()
    expect(page.get_by_test_id("alert-item")).to_have_count(1)
    expect(page.get_by_test_id("alert-item")).to_have_attribute("data-webhook-id", str(failing))
    for webhook_id in (gone, failing):
        assert api.request("DELETE", f"/api/webhooks/{webhook_id}").status_code == 204
    admin_page.open()
    expect(page.get_by_test_id("alert-banner")).to_have_count(0)
    # The page open while they were deleted may still have asked for their charts.
    assert admin_page.problems(expected_api_failures=tuple(
        f"/api/webhooks/{webhook_id}/deliveries -> 404" for webhook_id in (gone, failing))) == {}


def test_headers_are_edited_by_name_and_their_values_never_come_back(world, admin_page, api):  # noqa: F811
    page, receiver = admin_page.page, world.receiver
    webhook_id = api.create("Gateway", receiver.url("/gateway"), headers={"X-Api-Key": "stored-key-81723"})["id"]
    admin_page.open()
    _menu(page, webhook_id, "action-edit")
    dialog = page.get_by_test_id("edit-dialog")
    rows = dialog.get_by_test_id("header-row")
    expect(rows).to_have_count(1)
    expect(rows.first.get_by_test_id("header-name")).to_have_value("X-Api-Key")
    expect(rows.first.get_by_test_id("header-value")).to_have_value("")  # write-only: empty keeps it
    assert "stored-key-81723" not in page.content()
    _no_serious_violations(page, "the headers editor")
    admin_page.screenshot("admin-page-headers.png")
    dialog.get_by_test_id("header-add").click()
    expect(rows).to_have_count(2)
    rows.nth(1).get_by_test_id("header-name").fill("X-Region")
    rows.nth(1).get_by_test_id("header-value").fill("eu-west")
    dialog.get_by_test_id("edit-save").click()
    expect(page.get_by_test_id("edit-dialog")).to_have_count(0)

    _menu(page, webhook_id, "action-test")
    expect(_row(page, webhook_id).get_by_test_id("test-result")).to_have_attribute("data-status", "OK")
    [sent] = receiver.wait_for(1, path="/gateway")
    assert sent.headers["x-api-key"] == "stored-key-81723" and sent.headers["x-region"] == "eu-west"
    assert "stored-key-81723" not in page.content() and "eu-west" not in page.content()

    # A header removed in the editor is no longer sent.
    _menu(page, webhook_id, "action-edit")
    page.get_by_test_id("edit-dialog").get_by_test_id("header-row").first.get_by_test_id("header-remove").click()
    page.get_by_test_id("edit-dialog").get_by_test_id("edit-save").click()
    expect(page.get_by_test_id("edit-dialog")).to_have_count(0)
    assert api.request("GET", f"/api/webhooks/{webhook_id}").json()["headers"] == {"X-Region": None}
    assert admin_page.problems() == {}
    page.close()  # before the webhook goes: the page would ask for its chart again
    assert api.request("DELETE", f"/api/webhooks/{webhook_id}").status_code == 204


def test_resend_failed_since_queues_them_again_and_says_how_many(world, admin_page, api):  # noqa: F811
    page, receiver = admin_page.page, world.receiver
    webhook_id = api.create("Ledger", receiver.url("/ledger"))["id"]
    message_ids = _failed_deliveries(world, webhook_id, 2)
    admin_page.open()
    _menu(page, webhook_id, "action-recover")
    dialog = page.get_by_test_id("recover-dialog")
    since = dialog.get_by_test_id("recover-since")
    expect(since).to_have_value(re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d$"))  # 24 hours ago by default
    _no_serious_violations(page, "resend failed since")
    dialog.get_by_test_id("recover-submit").click()
    expect(dialog.get_by_test_id("recover-result")).to_contain_text("2 deliveries queued.")
    sent = receiver.wait_for(2, timeout=20, path="/ledger")
    assert sorted(r.headers["webhook-id"] for r in sent) == sorted(message_ids)
    admin_page.screenshot("admin-page-recover.png")
    dialog.get_by_test_id("recover-close").click()
    expect(page.get_by_test_id("recover-dialog")).to_have_count(0)

    # A later time than anything failed: nothing to resend.
    _menu(page, webhook_id, "action-recover")
    page.get_by_test_id("recover-since").fill((dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5))
                                              .strftime("%Y-%m-%dT%H:%M"))
    page.get_by_test_id("recover-submit").click()
    expect(page.get_by_test_id("recover-result")).to_contain_text("Nothing to resend since then.")
    page.get_by_test_id("recover-close").click()
    assert admin_page.problems() == {}
    page.close()  # before the webhook goes: the page would ask for its chart again
    assert api.request("DELETE", f"/api/webhooks/{webhook_id}").status_code == 204


def test_the_operational_webhook_is_set_its_secret_shown_once_rotated_and_removed(world, admin_page, api):  # noqa: F811
    page, receiver = admin_page.page, world.receiver
    admin_page.open()
    settings = page.get_by_test_id("settings")
    expect(settings.get_by_test_id("settings-current")).to_have_text("No operational webhook is set.")
    settings.get_by_test_id("settings-url").fill("http://alerts.example.com/in")
    settings.get_by_test_id("settings-save").click()
    expect(settings.get_by_test_id("field-error")).to_have_text("Use an address that starts with https://.")

    settings.get_by_test_id("settings-url").fill(receiver.url("/ops"))
    settings.get_by_test_id("settings-save").click()
    expect(page.get_by_test_id("secret-value")).to_have_text(SECRET_FORM)
    first = page.get_by_test_id("secret-value").text_content()
    _no_serious_violations(page, "the operational webhook's secret")
    page.get_by_test_id("secret-dismiss").click()
    expect(page.get_by_test_id("secret-value")).to_have_count(0)
    expect(settings.get_by_test_id("settings-save")).to_be_focused()
    expect(settings.get_by_test_id("settings-current")).to_contain_text(receiver.url("/ops"))
    assert api.request("GET", "/api/settings").json() == {"operational_url": receiver.url("/ops")}
    admin_page.open()  # opened again: the URL, never the secret
    expect(settings.get_by_test_id("settings-current")).to_contain_text(receiver.url("/ops"))
    assert first not in page.content()
    admin_page.screenshot("admin-page-operational.png")

    settings.get_by_test_id("settings-rotate").click()
    expect(page.get_by_test_id("secret-value")).to_have_text(SECRET_FORM)
    assert page.get_by_test_id("secret-value").text_content() != first
    expect(page.get_by_test_id("secret-rotation-note")).to_contain_text("The old secret keeps signing")
    page.get_by_test_id("secret-dismiss").click()

    settings.get_by_test_id("settings-remove").click()
    expect(settings.get_by_test_id("settings-current")).to_have_text("No operational webhook is set.")
    wait_for(lambda: api.request("GET", "/api/settings").json() == {"operational_url": None},
             message="the operational webhook removed")
    assert admin_page.problems(expected_api_failures=("PATCH /api/settings -> 400",)) == {}
