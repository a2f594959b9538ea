"""The Outgoing webhooks page (CONTRACT §7) in headless Chromium, used as a Jira administrator would use it.

The page is loaded as Jira loads its iframe (a qsh-bound `jwt` for the exact path and query), with a stand-in for
Atlassian's `all.js` that hands out real context tokens; webhooks point at a real HTTPS receiver whose CA the
add-on trusts. Every state is checked with axe-core (no serious or critical violation) and photographed
(`test-artifacts/`, or `ADMIN_PAGE_SCREENSHOTS=docs/screenshots` for the README's).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select, update

from addon.outbox.store import enqueue_event
from addon.storage.engine import transaction
from addon.storage.models import Attempt, Delivery, DeliveryStatus, ProjectSnapshot, Webhook
from tests.conftest import make_settings
from tests.receivers import Receiver
from tests.support.addon_server import AddonServer, wait_for
from tests.support.admin import AdminClient
from tests.support.atlassian import FakeAtlassian, FakeSite
from tests.support.browser import AdminPage, admin_page_url, axe_violations, chromium  # noqa: F401 - a fixture
from tests.support.intake import install_and_enable

expect = pytest.importorskip("playwright.sync_api").expect
expect.set_options(timeout=10_000)


@dataclass
class World:
    atlassian: FakeAtlassian
    receiver: Receiver
    addon: AddonServer
    site: FakeSite


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    """One add-on (trusting the receiver's CA), one HTTPS receiver and one installed site for the module."""
    atlassian = FakeAtlassian()
    receiver = Receiver().start()
    database = tmp_path_factory.mktemp("admin-page") / "addon.db"
    addon = AddonServer(make_settings(atlassian, f"sqlite:///{database}", ca_bundle=receiver.ca_path))
    try:
        site = atlassian.new_site()
        site.admins.add("admin-account")
        site.add_project(10000, "DEMO", "Demo project")
        site.add_project(10001, "OPS", "Operations")
        install_and_enable(site, addon)
        # the install snapshot names the project of test deliveries
        wait_for(lambda: _count(addon, select(func.count()).select_from(ProjectSnapshot)) == 2,
                 message="the install snapshot")
        yield World(atlassian, receiver, addon, site)
    finally:
        addon.stop()
        receiver.stop()
        atlassian.stop()


def _open_page(chromium, world: World, width: int = 1280, account_id: str = "admin-account"):  # noqa: F811
    context = chromium.new_context(viewport={"width": width, "height": 900}, locale="en-GB", timezone_id="UTC",
                                   permissions=["clipboard-read", "clipboard-write"])
    try:
        yield AdminPage(context.new_page(), world.addon.url, world.site, account_id).install()
    finally:
        context.close()


@pytest.fixture
def admin_page(chromium, world) -> Iterator[AdminPage]:  # noqa: F811 - the fixture imported above
    yield from _open_page(chromium, world)


@pytest.fixture
def narrow_page(chromium, world) -> Iterator[AdminPage]:  # noqa: F811
    """Jira's admin iframe is about 800 px wide."""
    yield from _open_page(chromium, world, width=800)


@pytest.fixture
def api(world) -> AdminClient:
    return AdminClient(world.addon.url, world.site)


def _count(addon: AddonServer, query) -> int:  # type: ignore[no-untyped-def]
    with addon.sessions() as session:
        return session.scalar(query)


def _webhook(addon: AddonServer, webhook_id: int) -> Webhook:
    with addon.sessions() as session:
        return session.get(Webhook, webhook_id)


def _attempts(addon: AddonServer, webhook_id: int) -> int:
    return _count(addon, select(func.count()).select_from(Attempt).where(Attempt.webhook_id == webhook_id))


def _live_webhooks(addon: AddonServer) -> int:
    return _count(addon, select(func.count()).select_from(Webhook).where(Webhook.deleted_at.is_(None)))


def _row(page, webhook_id: int):  # type: ignore[no-untyped-def]
    return page.locator(f'[data-testid="webhook-row"][data-webhook-id="{webhook_id}"]')


def _no_serious_violations(page, state: str) -> None:  # type: ignore[no-untyped-def]
    found = axe_violations(page)
    assert found == [], f"axe-core, {state}:\n" + "\n".join(found)


def _focused_testid(page) -> str | None:  # type: ignore[no-untyped-def]
    return page.evaluate("document.activeElement && document.activeElement.getAttribute('data-testid')")


def _tab_to(page, locator, limit: int = 80) -> None:  # type: ignore[no-untyped-def]
    """Move focus with the Tab key, as a keyboard user does, until `locator` has it."""
    for _ in range(limit):
        if locator.evaluate("(node) => node === document.activeElement"):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"{limit} presses of Tab never reached {locator}")


def _menu(page, webhook_id: int, item: str) -> None:  # type: ignore[no-untyped-def]
    """Open the row's "•••" menu and pick an item."""
    _row(page, webhook_id).get_by_test_id("row-menu--trigger").click()
    page.get_by_test_id(item).click()


def _create(page, name: str, url: str) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    """Create a webhook through the form; returns its id and the secret shown once."""
    before = page.get_by_test_id("webhook-row").count()
    page.get_by_test_id("create-name").fill(name)
    page.get_by_test_id("create-url").fill(url)
    page.get_by_test_id("create-submit").click()
    panel = page.get_by_test_id("secret-panel")
    expect(panel).to_be_visible()
    expect(panel).to_contain_text(name)
    expect(page.get_by_test_id("secret-value")).to_have_text(re.compile(r"^whsec_[A-Za-z0-9+/]{43}=$"))
    secret = page.get_by_test_id("secret-value").text_content()
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    rows = page.get_by_test_id("webhook-row")
    expect(rows).to_have_count(before + 1)
    webhook_id = int(rows.nth(before).get_attribute("data-webhook-id"))
    expect(_row(page, webhook_id).get_by_test_id("webhook-name")).to_have_text(name)
    expect(page.get_by_test_id("create-name")).to_have_value("")
    page.get_by_test_id("secret-dismiss").click()
    expect(panel).to_have_count(0)
    expect(page.get_by_test_id("secret-value")).to_have_count(0)
    # focus is back on the button that opened it, not on <body>
    expect(page.get_by_test_id("create-submit")).to_be_focused()
    return webhook_id, secret


def _flag_titles(admin_page: AdminPage) -> list[str]:
    return [f["title"] for f in admin_page.flags()]


def test_administrator_manages_webhooks_and_follows_deliveries(world, admin_page):
    page, addon, receiver, site = admin_page.page, world.addon, world.receiver, world.site
    receiver.behave("/broken", status=500, body=b'{"error":"receiver is down"}')

    admin_page.open()
    expect(page.get_by_test_id("list-state")).to_contain_text("No webhooks yet")
    _no_serious_violations(page, "no webhooks yet")
    admin_page.screenshot("admin-page-empty.png")

    # Create: the secret is shown once, the webhook is listed, it has never run, and a flag says so.
    page.get_by_test_id("create-name").fill("Finance sync")
    page.get_by_test_id("create-url").fill(receiver.url("/finance"))
    page.get_by_test_id("create-submit").click()
    expect(page.get_by_test_id("secret-panel")).to_be_visible()
    _no_serious_violations(page, "the secret shown once")
    admin_page.screenshot("admin-page-secret.png")
    page.get_by_test_id("secret-dismiss").click()
    expect(page.get_by_test_id("create-submit")).to_be_focused()
    finance_id = int(page.get_by_test_id("webhook-row").first.get_attribute("data-webhook-id"))
    finance_secret = None
    wait_for(lambda: "“Finance sync” created" in _flag_titles(admin_page), message="the creation flag")
    expect(page.get_by_test_id("announcer")).to_contain_text("“Finance sync” created")
    # the secret from the API is the one the receiver will verify with: rotate to learn it through the page
    finance = _row(page, finance_id)
    expect(finance.get_by_test_id("webhook-url")).to_have_text(receiver.url("/finance"))
    expect(finance.get_by_test_id("webhook-status")).to_have_text("NEVER RUN")
    expect(finance.get_by_test_id("webhook-last-execution")).to_have_text("Never")
    expect(finance.get_by_test_id("action-toggle--input")).to_be_checked()
    expect(page.get_by_test_id("webhook-count")).to_have_text("(1)")
    _, finance_secret = _rotate(page, finance_id, keep_old=False)

    # Names say which webhook: the switch, the log button and the menu are named after it.
    expect(finance.get_by_role("checkbox", name="Finance sync enabled")).to_have_count(1)
    expect(finance.get_by_role("button", name="Deliveries of Finance sync")).to_have_count(1)
    expect(finance.get_by_role("button", name="More actions for Finance sync")).to_have_count(1)

    # A test delivery from the "•••" menu: its result is in the row, announced, and the receiver got it signed.
    _menu(page, finance_id, "action-test")
    result = finance.get_by_test_id("test-result")
    expect(result).to_have_attribute("data-status", "OK")
    expect(result).to_contain_text("HTTP 200 OK")
    expect(page.get_by_test_id("announcer")).to_contain_text("Test of Finance sync: OK, HTTP 200")
    expect(finance.get_by_test_id("row-menu--trigger")).to_be_focused()
    [test_request] = receiver.wait_for(1, path="/finance")
    test_payload = Receiver.verify(test_request, [finance_secret])
    assert test_payload["data"]["event"] == "test"
    assert test_payload["data"]["project"] == {"id": 10000, "key": "DEMO", "name": "Demo project"}

    # The latest status, and when it ran: the exact time is one keyboard focus away.
    expect(finance.get_by_test_id("webhook-status")).to_have_text("OK")
    expect(finance.get_by_test_id("webhook-status-detail")).to_have_text("HTTP 200 OK")
    last = finance.get_by_test_id("webhook-last-execution")
    expect(last).to_have_text("just now")
    _tab_to(page, last)
    expect(page.get_by_role("tooltip")).to_contain_text(re.compile(r"\(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\)"))

    # A second webhook whose receiver fails.
    broken_id, broken_secret = _create(page, "Broken receiver", receiver.url("/broken"))
    broken = _row(page, broken_id)

    # A real event through the outbox, signed by the site as Projectrak's backend does.
    change = {"project": {"key": "DEMO"}, "timestamp": 1675182117615,
              "changes": [{"field": {"id": 12345, "name": "Budget", "type": "number"},
                           "previous": 25000, "current": "23000.0"}]}
    accepted = site.call(addon.url, "POST", "/events/projectrak/field-changes", json_body=change)
    assert accepted.status_code == 202, accepted.text
    change_request = receiver.wait_for(2, path="/finance")[1]
    Receiver.verify(receiver.wait_for(1, path="/broken")[0], [broken_secret])
    wait_for(lambda: _attempts(addon, finance_id) == 2, message="the finance attempt recorded")
    wait_for(lambda: _webhook(addon, broken_id).last_status == "ERROR", message="the failed attempt recorded")

    admin_page.open()
    expect(finance.get_by_test_id("webhook-status")).to_have_text("OK")
    expect(broken.get_by_test_id("webhook-status")).to_have_text("ERROR")
    expect(broken.get_by_test_id("webhook-status-detail")).to_have_text("HTTP 500 Internal Server Error")
    # the 24-hour charts count the attempts, and say so to the keyboard
    chart = finance.get_by_test_id("webhook-chart")
    expect(chart).to_have_attribute("data-ok", "2")
    expect(chart).to_have_attribute("data-error", "0")
    expect(broken.get_by_test_id("webhook-chart")).to_have_attribute("data-error", re.compile(r"^[1-9]\d*$"))
    page.get_by_test_id("create-name").focus()
    _tab_to(page, chart)
    expect(page.get_by_role("tooltip")).to_contain_text("2 OK, 0 ERROR")
    expect(chart).to_have_attribute("aria-label", re.compile(r"^Finance sync, last 24 hours: 2 OK, 0 ERROR\."))
    _no_serious_violations(page, "two webhooks, one failing")
    admin_page.screenshot("admin-page.png")

    # The delivery log: one row per delivery, with its event, project and state; attempts nested under it.
    opener = finance.get_by_test_id("action-deliveries")
    opener.click()
    log = page.get_by_test_id("delivery-log")
    deliveries = log.get_by_test_id("delivery-row")
    expect(deliveries).to_have_count(2)
    newest, oldest = deliveries.nth(0), deliveries.nth(1)
    expect(newest.get_by_test_id("delivery-event")).to_have_text("updated")
    expect(newest.get_by_test_id("delivery-project")).to_have_text("DEMO · Demo project")
    expect(newest.get_by_test_id("delivery-state")).to_have_text("DELIVERED")
    expect(oldest.get_by_test_id("delivery-event")).to_have_text("test")
    newest.get_by_test_id("attempts-toggle").click()
    expect(newest.get_by_test_id("attempts-toggle")).to_have_attribute("aria-expanded", "true")
    attempts = newest.get_by_test_id("attempt-row")
    expect(attempts).to_have_count(1)
    expect(attempts.first.get_by_test_id("attempt-status")).to_have_text("OK")
    expect(attempts.first.get_by_test_id("attempt-http-code")).to_have_text("HTTP 200 OK")
    expect(attempts.first.get_by_test_id("attempt-response-body")).to_have_text('{"received":true}')
    expect(newest.get_by_test_id("delivery-webhook-id")).to_have_text(change_request.headers["webhook-id"])
    newest.get_by_test_id("delivery-details").locator("summary").click()
    expect(newest.get_by_test_id("delivery-request-body")).to_contain_text('"Budget"')
    _no_serious_violations(page, "the delivery log")
    admin_page.screenshot("admin-page-log.png")

    # Redeliver: asked first, naming where it goes; then queued, and it shows up in the open log by itself,
    # marked as a redelivery, with the opened delivery still open.
    newest.get_by_test_id("action-redeliver").click()
    confirm = page.get_by_test_id("confirm-dialog")
    expect(confirm).to_contain_text("Redeliver to “Finance sync”?")
    expect(confirm).to_contain_text(receiver.url("/finance"))
    _no_serious_violations(page, "the redelivery confirmation")
    admin_page.screenshot("admin-page-redeliver-confirm.png")
    assert len(receiver.requests_for("/finance")) == 2, "nothing is sent before confirming"
    confirm.get_by_test_id("confirm-yes").click()
    expect(confirm).to_have_count(0)
    expect(newest.get_by_test_id("action-redeliver")).to_be_focused()
    wait_for(lambda: "Redelivery queued" in _flag_titles(admin_page), message="the redelivery flag")
    redelivered = receiver.wait_for(3, path="/finance")[2]
    assert redelivered.headers["webhook-id"] == change_request.headers["webhook-id"]
    expect(newest.get_by_test_id("delivery-redelivered")).to_have_text("REDELIVERY")
    expect(newest.get_by_test_id("attempt-row")).to_have_count(2, timeout=15_000)
    expect(newest.get_by_test_id("attempt-row").first.get_by_test_id("attempt-redelivery")).to_have_text("(redelivery)")
    expect(newest.get_by_test_id("attempts-toggle")).to_have_attribute("aria-expanded", "true")
    expect(deliveries).to_have_count(2)
    log.get_by_test_id("deliveries-close").click()
    expect(log).to_have_count(0)
    expect(opener).to_be_focused()

    # The failing webhook's log: "failed only" keeps what failed; the state says it is retrying, and when.
    broken.get_by_test_id("action-deliveries").click()
    failed = log.get_by_test_id("delivery-row").first
    expect(failed.get_by_test_id("delivery-state")).to_have_text(re.compile("RETRYING|GAVE UP"))
    expect(failed.get_by_test_id("delivery-next")).to_have_text(re.compile(r"^(retrying at \d\d:\d\d|gave up)$"))
    failed.get_by_test_id("attempts-toggle").click()
    expect(failed.get_by_test_id("attempt-row").first.get_by_test_id("attempt-response-body")).to_have_text(
        '{"error":"receiver is down"}')
    log.get_by_test_id("failed-only--checkbox-label").click()
    expect(log.get_by_test_id("failed-only--hidden-checkbox")).to_be_checked()
    expect(log.get_by_test_id("delivery-row")).to_have_count(1)
    _no_serious_violations(page, "the failing webhook's log, failed only")
    admin_page.screenshot("admin-page-log-failed-only.png")
    page.keyboard.press("Escape")
    expect(log).to_have_count(0)
    expect(broken.get_by_test_id("action-deliveries")).to_be_focused()

    # Edit the name: saved, flagged, focus back on the row's menu.
    _menu(page, finance_id, "action-edit")
    page.get_by_test_id("edit-name").fill("Finance sync (EU)")
    _no_serious_violations(page, "editing")
    page.get_by_test_id("edit-save").click()
    expect(finance.get_by_test_id("webhook-name")).to_have_text("Finance sync (EU)")
    expect(page.get_by_test_id("edit-name")).to_have_count(0)
    expect(finance.get_by_test_id("row-menu--trigger")).to_be_focused()
    wait_for(lambda: "“Finance sync (EU)” saved" in _flag_titles(admin_page), message="the save flag")
    wait_for(lambda: _webhook(addon, finance_id).name == "Finance sync (EU)", message="the new name saved")

    # Disable the failing one with its switch: flagged, its retries stop, and a paused webhook says so.
    broken.get_by_test_id("action-toggle").click()
    expect(broken.get_by_test_id("action-toggle--input")).not_to_be_checked()
    expect(broken.get_by_test_id("webhook-status")).to_have_text("DISABLED")
    expect(broken.get_by_test_id("webhook-disabled-reason")).to_have_text("Paused by an administrator.")
    expect(broken).to_have_attribute("data-enabled", "false")
    wait_for(lambda: "“Broken receiver” disabled" in _flag_titles(admin_page), message="the disable flag")
    stored = wait_for(lambda: (w := _webhook(addon, broken_id)) and not w.enabled and w, message="disabled")
    assert stored.disabled_reason == "manual"
    assert _count(addon, select(func.count()).select_from(Delivery).where(
        Delivery.webhook_id == broken_id, Delivery.status == DeliveryStatus.PENDING)) == 0

    # Delete it, after a confirmation that names it; focus lands on the list's heading.
    _menu(page, broken_id, "action-delete")
    dialog = page.get_by_test_id("confirm-dialog")
    expect(dialog).to_contain_text("Delete “Broken receiver”?")
    _no_serious_violations(page, "the delete confirmation")
    dialog.get_by_test_id("confirm-yes").click()
    expect(broken).to_have_count(0)
    expect(page.locator("#list-title")).to_be_focused()
    wait_for(lambda: "“Broken receiver” deleted" in _flag_titles(admin_page), message="the delete flag")
    assert _webhook(addon, broken_id).deleted_at is not None
    expect(page.get_by_test_id("webhook-row")).to_have_count(1)

    assert page.evaluate("window.__apResizeCalls") > 0, "the page never asked Jira to size its iframe"
    assert admin_page.problems() == {}


def _rotate(page, webhook_id: int, *, keep_old: bool) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """Rotate from the row's menu; returns the note shown with the new secret, and the secret."""
    _menu(page, webhook_id, "action-rotate")
    dialog = page.get_by_test_id("rotate-dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_test_id("rotate-24h" if keep_old else "rotate-now").click()
    expect(page.get_by_test_id("secret-value")).to_have_text(re.compile(r"^whsec_"))
    note = page.get_by_test_id("secret-rotation-note").text_content()
    secret = page.get_by_test_id("secret-value").text_content()
    page.get_by_test_id("secret-dismiss").click()
    expect(page.get_by_test_id("secret-panel")).to_have_count(0)
    expect(_row(page, webhook_id).get_by_test_id("row-menu--trigger")).to_be_focused()
    return note, secret


def test_rotation_stops_the_old_secret_now_or_in_24_hours(world, admin_page, api):
    page, addon = admin_page.page, world.addon
    webhook = api.create("Rotating receiver", "https://93.184.215.14/rotate")
    admin_page.open()
    row = _row(page, webhook["id"])
    expect(row.get_by_test_id("old-secret-until")).to_have_count(0)

    _menu(page, webhook["id"], "action-rotate")
    _no_serious_violations(page, "the rotation choice")
    admin_page.screenshot("admin-page-rotate.png")
    page.keyboard.press("Escape")

    note, _ = _rotate(page, webhook["id"], keep_old=True)
    assert note.startswith("The old secret keeps signing beside it until ")
    stored = _webhook(addon, webhook["id"])
    assert stored.previous_secret is not None
    expires = stored.previous_secret_expires_at
    expect(row.get_by_test_id("old-secret-until")).to_have_text(
        f"Old secret valid until {expires.day} {expires.strftime('%b')}, {expires.strftime('%H:%M')}")
    _no_serious_violations(page, "an old secret still valid")
    admin_page.screenshot("admin-page-old-secret.png")

    note, _ = _rotate(page, webhook["id"], keep_old=False)
    assert note == "The old secret no longer signs anything: requests carry only this one."
    expect(row.get_by_test_id("old-secret-until")).to_have_count(0)
    assert _webhook(addon, webhook["id"]).previous_secret is None
    assert admin_page.problems() == {}


def test_a_webhook_the_add_on_disabled_says_why_and_can_be_re_enabled(world, admin_page, api):
    page, addon = admin_page.page, world.addon
    webhook = api.create("Gone receiver", "https://93.184.215.14/gone")
    with addon.sessions() as session:  # as the worker leaves it after a 410
        session.execute(update(Webhook).where(Webhook.id == webhook["id"]).values(
            enabled=False, disabled_reason="gone", last_status="ERROR", last_status_code=410, last_error="HTTP 410"))
        session.commit()
    admin_page.open()
    row = _row(page, webhook["id"])
    expect(row.get_by_test_id("webhook-status")).to_have_text("DISABLED")
    expect(row.get_by_test_id("webhook-disabled-reason")).to_have_text(
        "The receiver answered 410 Gone, so sending stopped.")
    expect(row.get_by_test_id("webhook-status-detail")).to_have_count(0)  # no ERROR as if it were retrying
    _no_serious_violations(page, "a webhook the add-on disabled")
    admin_page.screenshot("admin-page-disabled.png")

    # No redelivery where it cannot work.
    row.get_by_test_id("action-deliveries").click()
    log = page.get_by_test_id("delivery-log")
    expect(log.get_by_test_id("redeliver-off")).to_be_visible()
    expect(log.get_by_test_id("action-redeliver")).to_have_count(0)
    log.get_by_test_id("deliveries-close").click()

    reenable = row.get_by_test_id("action-reenable")
    expect(reenable).to_have_accessible_name("Re-enable Gone receiver")
    reenable.click()
    # enabled again, it shows the last result it had (until the next delivery)
    expect(row.get_by_test_id("webhook-status")).to_have_text("ERROR")
    expect(row.get_by_test_id("webhook-status-detail")).to_have_text("HTTP 410 Gone")
    expect(row.get_by_test_id("action-toggle--input")).to_be_checked()
    expect(row.get_by_test_id("action-toggle--input")).to_be_focused()
    wait_for(lambda: "“Gone receiver” enabled" in _flag_titles(admin_page), message="the enable flag")
    stored = _webhook(addon, webhook["id"])
    assert stored.enabled and stored.disabled_reason is None
    assert admin_page.problems() == {}


@pytest.mark.parametrize(("name", "url", "field", "message"), [
    ("Plain HTTP", "http://hooks.example.com/in", "url", "Use an address that starts with https://."),
    ("", "https://hooks.example.com/in", "name", "Give the webhook a name."),
    ("No address", "", "url", "Enter the address your receiver listens on, starting with https://."),
    ("Bad host", "https://hooks..example.com/in", "url",
     "This is not a web address we can send to. Check it, e.g. https://example.com/webhook."),
    ("With password", "https://me:secret@hooks.example.com/in", "url",
     "Leave the user name and password out of the address."),
])
def test_a_refused_field_is_explained_in_plain_words_beside_it(world, admin_page, name, url, field, message):
    page = admin_page.page
    live = _live_webhooks(world.addon)
    admin_page.open()
    expect(page.get_by_test_id("webhook-row")).to_have_count(live)

    page.get_by_test_id("create-name").fill(name)
    page.get_by_test_id("create-url").fill(url)
    page.get_by_test_id("create-submit").click()
    error = page.get_by_test_id("create-error")
    expect(error).to_have_text(message)
    expect(error).to_have_attribute("data-field", field)
    expect(error).to_have_attribute("role", "alert")
    expect(page.locator(f"#create-{field}-field").get_by_test_id("create-error")).to_have_count(1)
    field_input = page.get_by_test_id(f"create-{field}")
    expect(field_input).to_have_attribute("aria-invalid", "true")
    expect(field_input).to_have_attribute("aria-describedby", f"create-{field}-error")
    expect(field_input).to_be_focused()
    expect(page.get_by_test_id("secret-panel")).to_have_count(0)
    expect(page.get_by_test_id("webhook-row")).to_have_count(live)
    _no_serious_violations(page, f"a refused {field}")
    if field == "url" and url.startswith("http:"):
        admin_page.screenshot("admin-page-field-error.png")
    # what was typed stays, to be corrected; correcting the field clears the error
    expect(page.get_by_test_id("create-name")).to_have_value(name)
    field_input.fill(field_input.input_value() + "x")
    expect(error).to_have_count(0)
    status = 400 if field == "url" and url else 422
    assert admin_page.problems(expected_api_failures=(f"POST /api/webhooks -> {status}",)) == {}


def test_a_refused_row_action_is_explained_once_in_its_row(world, admin_page, api):
    page, receiver = admin_page.page, world.receiver
    webhook = api.create("Tested a lot", receiver.url("/tested-a-lot"))
    for _ in range(10):  # the most a minute
        assert api.request("POST", f"/api/webhooks/{webhook['id']}/test").status_code == 200
    admin_page.open()
    row = _row(page, webhook["id"])
    _menu(page, webhook["id"], "action-test")
    error = row.get_by_test_id("row-error")
    message = "The test of “Tested a lot” did not work: Too many tests in a minute. Wait a minute, then try again."
    expect(error).to_have_text(message)
    expect(error).to_have_attribute("data-code", "rate_limited")
    expect(page.get_by_test_id("announcer")).to_have_text(message)
    expect(page.get_by_text("Too many tests in a minute")).to_have_count(2)  # the row, and its announcement only
    expect(row.get_by_test_id("row-menu--trigger")).to_be_focused()
    _no_serious_violations(page, "a refused test")
    admin_page.screenshot("admin-page-row-error.png")
    assert admin_page.problems(expected_api_failures=(f"POST /api/webhooks/{webhook['id']}/test -> 429",)) == {}


def test_a_non_administrator_sees_why_and_no_form(chromium, world):  # noqa: F811
    world.site.admins.discard("viewer-account")
    for admin_page in _open_page(chromium, world, account_id="viewer-account"):
        page = admin_page.page
        admin_page.open()
        state = page.get_by_test_id("forbidden-state")
        expect(state).to_contain_text("Only Jira administrators can manage outgoing webhooks")
        expect(page.get_by_test_id("create-name")).to_have_count(0)
        expect(page.get_by_test_id("webhooks-table")).to_have_count(0)
        _no_serious_violations(page, "a non-administrator")
        admin_page.screenshot("admin-page-forbidden.png")
        assert admin_page.problems(expected_api_failures=("GET /api/webhooks -> 403",)) == {}


def test_jira_unavailable_is_a_retrying_warning_that_clears_by_itself(chromium, world, api):  # noqa: F811
    api.create("Survives an outage", "https://93.184.215.14/outage")
    site = world.site
    site.admins.add("second-admin")  # not in the add-on's cache of administrators: each call asks Jira
    for admin_page in _open_page(chromium, world, account_id="second-admin"):
        page = admin_page.page
        site.down = True
        try:
            admin_page.open()
            warning = page.get_by_test_id("retrying")
            expect(warning).to_contain_text("Jira is not answering: retrying")
            expect(page.get_by_test_id("load-state")).to_have_attribute("aria-live", "polite")  # announced
            expect(page.get_by_test_id("load-state").get_by_test_id("retrying")).to_have_count(1)
            expect(page.get_by_test_id("load-error")).to_have_count(0)
            _no_serious_violations(page, "Jira unavailable")
            admin_page.screenshot("admin-page-retrying.png")
        finally:
            site.down = False
        expect(warning).to_have_count(0, timeout=20_000)
        expect(page.get_by_test_id("webhook-row")).to_have_count(_live_webhooks(world.addon))
        expect(page.get_by_test_id("announcer")).to_contain_text("Jira is answering again")
        assert admin_page.problems(expected_api_failures=("GET /api/webhooks -> 503",)) == {}


def test_the_page_fits_jiras_800_px_iframe(world, narrow_page, api):
    page = narrow_page.page
    if _live_webhooks(world.addon) < 2:
        api.create("Narrow one", "https://93.184.215.14/a-rather-long/path/for/the/receiver?with=query&and=more")
        api.create("Narrow two", "https://93.184.215.14/two")
    narrow_page.open()
    expect(page.get_by_test_id("webhook-row")).to_have_count(_live_webhooks(world.addon))
    # every column keeps its header and nothing scrolls sideways
    for name in ("Webhook", "Status", "Last run", "Last 24 hours", "Enabled"):
        expect(page.get_by_role("columnheader", name=name, exact=True)).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 800
    box = page.get_by_test_id("row-menu--trigger").first.bounding_box()
    assert box["x"] + box["width"] <= 800
    # one switch, one button and one menu per row: three tab stops, not five buttons
    row = page.get_by_test_id("webhook-row").first
    assert row.locator("button").count() == 2
    _no_serious_violations(page, "800 px wide")
    narrow_page.screenshot("admin-page-800px.png")
    assert narrow_page.problems() == {}


def test_the_page_shows_in_the_sites_iframe_and_nowhere_else(world, admin_page):
    """`frame-ancestors` lets the tenant's Jira site frame the page, and no other site. The embedding pages are
    real loopback answers (Chromium's local network access checks stop a routed page from framing 127.0.0.1)."""
    page, site = admin_page.page, world.site
    src = admin_page_url(world.addon.url, site)
    embed = "(src) => { document.body.replaceChildren(); const f = document.createElement('iframe'); " \
            "f.id = 'app'; f.width = 1200; f.height = 800; f.src = src; document.body.append(f); }"

    # any page of the site's origin will do as Jira's (the fake Jira answers it 401: not what is checked here)
    page.goto(f"{site.base_url}/jira/plugins/servlet/ac/projectrak-outgoing-webhooks/outgoing-webhooks")
    admin_page.forget_problems()
    page.evaluate(embed, src)
    framed = page.frame_locator("#app")
    expect(framed.get_by_test_id("create-name")).to_be_visible()
    expect(framed.get_by_test_id("webhook-row")).to_have_count(_live_webhooks(world.addon))
    assert admin_page.tokens_minted > 0
    assert admin_page.problems() == {}

    elsewhere = site.base_url.replace("://127.0.0.1:", "://localhost:")  # same server, another origin
    page.goto(f"{elsewhere}/jira")
    admin_page.forget_problems()
    with page.expect_event("framenavigated", predicate=lambda f: f.parent_frame is not None) as navigated:
        page.evaluate(embed, src)
    frame = navigated.value
    expect(page.frame_locator("#app").get_by_test_id("create-name")).to_have_count(0)
    assert not frame.url.startswith(world.addon.url), frame.url  # Chromium's error page instead
    assert any("frame-ancestors" in m for m in admin_page.console_errors + admin_page.csp_violations), \
        admin_page.console_errors


def test_a_long_request_body_is_cut_in_the_log_and_shown_whole_on_demand(world, admin_page):
    """The log lists a body's first 2,048 characters; "View full body" fetches the attempt's whole body. The chart
    lists the attempts without bodies."""
    addon, receiver, page = world.addon, world.receiver, admin_page.page
    listed: list[str] = []
    page.on("request", lambda request: listed.append(request.url) if "/deliveries" in request.url else None)
    admin_page.open()
    expect(page.get_by_test_id("webhook-row")).to_have_count(_live_webhooks(addon))  # the earlier tests' webhooks
    hook_id, _ = _create(page, "Long bodies", receiver.url("/long"))
    tenant_id = _webhook(addon, hook_id).tenant_id
    body = {"data": {"event": "updated", "note": "a" * 5000 + "END-OF-BODY"}}
    with transaction(addon.sessions) as session:
        enqueue_event(session, tenant_id=tenant_id, source="projectrak", body=body, webhook_ids=[hook_id])
    addon.runtime.deliveries_committed.notify()
    wait_for(lambda: _attempts(addon, hook_id) == 1, message="the attempt recorded")

    admin_page.open()  # the charts load again, with the attempt
    row = _row(page, hook_id)
    expect(row.get_by_test_id("webhook-chart")).to_have_attribute("data-ok", "1")
    row.get_by_test_id("action-deliveries").click()
    entry = page.get_by_test_id("delivery-log").get_by_test_id("delivery-row").first
    entry.get_by_test_id("attempts-toggle").click()
    entry.get_by_test_id("delivery-details").locator("summary").click()
    shown = entry.get_by_test_id("delivery-request-body")
    expect(entry.get_by_test_id("delivery-request-body-cut")).to_be_visible()
    assert "END-OF-BODY" not in shown.text_content()
    entry.get_by_test_id("delivery-request-body-full").click()
    expect(shown).to_contain_text("END-OF-BODY")
    expect(shown).to_contain_text('"event": "updated"')  # whole, it is JSON again, shown indented
    expect(entry.get_by_test_id("delivery-request-body-cut")).to_have_count(0)
    _no_serious_violations(page, "a whole request body")

    charts = [url for url in listed if "limit=200" in url or "bodies=0" in url]
    assert charts and all("bodies=0" in url for url in charts), listed
    assert admin_page.problems() == {}
