"""The Outgoing webhooks page (CONTRACT §7) in headless Chromium, used as a Jira administrator would use it.

The page is loaded as Jira loads its iframe (a qsh-bound `jwt` for the exact path and query), with a stand-in for
Atlassian's `all.js` that hands out real context tokens; webhooks point at a real HTTPS receiver whose CA the
add-on trusts. Screenshots are kept in `test-artifacts/`.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select

from addon.outbox.store import enqueue_event
from addon.storage.engine import transaction
from addon.storage.models import Attempt, Delivery, DeliveryStatus, ProjectSnapshot, Webhook
from tests.conftest import make_settings
from tests.receivers import Receiver
from tests.support.addon_server import AddonServer, wait_for
from tests.support.atlassian import FakeAtlassian, FakeSite
from tests.support.browser import AdminPage, admin_page_url, chromium  # noqa: F401 - chromium is a fixture

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
        assert site.install(addon.url).status_code == 204
        enabled = site.call(addon.url, "POST", "/lifecycle/enabled", json_body=site.lifecycle_body("enabled"))
        assert enabled.status_code == 204
        # the install snapshot names the project of test deliveries
        wait_for(lambda: _count(addon, select(func.count()).select_from(ProjectSnapshot)) == 2,
                 message="the install snapshot")
        yield World(atlassian, receiver, addon, site)
    finally:
        addon.stop()
        receiver.stop()
        atlassian.stop()


@pytest.fixture
def admin_page(chromium, world) -> Iterator[AdminPage]:  # noqa: F811 - the fixture imported above
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB", timezone_id="UTC")
    page = context.new_page()
    try:
        yield AdminPage(page, world.addon.url, world.site).install()
    finally:
        context.close()


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
    # the form is ready for the next one; the secret goes away once saved
    expect(page.get_by_test_id("create-name")).to_have_value("")
    page.get_by_test_id("secret-dismiss").click()
    expect(panel).to_be_hidden()
    expect(page.get_by_test_id("secret-value")).to_have_text("")
    return webhook_id, secret


def test_administrator_manages_webhooks_and_follows_deliveries(world, admin_page):
    page, addon, receiver, site = admin_page.page, world.addon, world.receiver, world.site
    receiver.behave("/broken", status=500, body=b'{"error":"receiver is down"}')

    admin_page.open()
    expect(page.get_by_test_id("list-state")).to_contain_text("No webhooks yet")

    # Create: the secret is shown once, the webhook is listed and has never run.
    finance_id, finance_secret = _create(page, "Finance sync", receiver.url("/finance"))
    finance = _row(page, finance_id)
    expect(finance.get_by_test_id("webhook-url")).to_have_text(receiver.url("/finance"))
    expect(finance.get_by_test_id("webhook-status")).to_have_text("NEVER RUN")
    expect(finance.get_by_test_id("webhook-last-execution")).to_have_text("Never")
    expect(finance.get_by_test_id("action-toggle")).to_have_attribute("aria-checked", "true")
    expect(page.get_by_test_id("webhook-count")).to_have_text("(1)")

    # A test delivery: its result is shown, and the receiver got a signed request.
    finance.get_by_test_id("action-test").click()
    result = finance.get_by_test_id("test-result")
    expect(result).to_have_attribute("data-status", "OK")
    expect(result.get_by_test_id("test-status")).to_have_text("OK")
    expect(result).to_contain_text("HTTP 200 OK")
    [test_request] = receiver.wait_for(1, path="/finance")
    test_payload = Receiver.verify(test_request, [finance_secret])
    assert test_payload["data"]["event"] == "test"
    assert test_payload["data"]["project"] == {"id": 10000, "key": "DEMO", "name": "Demo project"}
    assert test_payload["data"]["user"] == "admin-account"

    # Opened again (as Jira would, with a new token): the latest status and when it ran.
    admin_page.open()
    expect(finance.get_by_test_id("webhook-status")).to_have_text("OK")
    expect(finance.get_by_test_id("webhook-status-detail")).to_have_text("HTTP 200 OK")
    last = finance.get_by_test_id("webhook-last-execution")
    expect(last).to_have_text("just now")
    expect(last).to_have_attribute("title", re.compile(r"\(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\)$"))

    # A second webhook whose receiver fails.
    broken_id, broken_secret = _create(page, "Broken receiver", receiver.url("/broken"))
    broken = _row(page, broken_id)
    expect(broken.get_by_test_id("webhook-status")).to_have_text("NEVER RUN")

    # A real event through the outbox: a Projectrak field change, signed by the site as Projectrak's backend does.
    change = {"project": {"key": "DEMO"}, "timestamp": 1675182117615,
              "changes": [{"field": {"id": 12345, "name": "Budget", "type": "number"},
                           "previous": 25000, "current": "23000.0"}]}
    accepted = site.call(addon.url, "POST", "/events/projectrak/field-changes", json_body=change)
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["deliveries"] == 2
    change_request = receiver.wait_for(2, path="/finance")[1]
    change_payload = Receiver.verify(change_request, [finance_secret])
    assert change_payload["data"]["event"] == "updated"
    assert change_payload["data"]["fields"] == [
        {"id": 12345, "name": "Budget", "type": "number", "value": {"current": "23000", "previous": "25000"}}]
    Receiver.verify(receiver.wait_for(1, path="/broken")[0], [broken_secret])
    wait_for(lambda: _attempts(addon, finance_id) == 2, message="the finance attempt recorded")
    wait_for(lambda: _webhook(addon, broken_id).last_status == "ERROR", message="the failed attempt recorded")

    admin_page.open()
    expect(finance.get_by_test_id("webhook-status")).to_have_text("OK")
    expect(broken.get_by_test_id("webhook-status")).to_have_text("ERROR")
    expect(broken.get_by_test_id("webhook-status")).to_have_class(re.compile(r"\blozenge-removed\b"))
    expect(finance.get_by_test_id("webhook-status")).to_have_class(re.compile(r"\blozenge-success\b"))
    expect(broken.get_by_test_id("webhook-status-detail")).to_have_text("HTTP 500 Internal Server Error")
    # the 24-hour charts count the attempts
    expect(finance.get_by_test_id("webhook-chart")).to_have_attribute("data-ok", "2")
    expect(finance.get_by_test_id("webhook-chart")).to_have_attribute("data-error", "0")
    expect(broken.get_by_test_id("webhook-chart")).to_have_attribute("data-error", re.compile(r"^[1-9]\d*$"))

    # The delivery log: newest first, each attempt with its status and code.
    finance.get_by_test_id("action-deliveries").click()
    log_rows = finance.get_by_test_id("delivery-row")
    expect(log_rows).to_have_count(2)
    newest, oldest = log_rows.nth(0), log_rows.nth(1)
    assert int(newest.get_attribute("data-attempt-id")) > int(oldest.get_attribute("data-attempt-id"))
    for row in (newest, oldest):
        expect(row.get_by_test_id("delivery-status")).to_have_text("OK")
        expect(row.get_by_test_id("delivery-http-code")).to_have_text("200")
    expect(newest.get_by_test_id("delivery-request-body")).to_contain_text('"event": "updated"')
    expect(oldest.get_by_test_id("delivery-request-body")).to_contain_text('"event": "test"')
    newest.get_by_test_id("delivery-details").locator("summary").click()
    expect(newest.get_by_test_id("delivery-request-body")).to_be_visible()
    expect(newest.get_by_test_id("delivery-request-body")).to_contain_text('"Budget"')
    expect(newest.get_by_test_id("delivery-details")).to_contain_text(change_request.headers["webhook-id"])
    expect(newest.get_by_test_id("delivery-response-body")).to_have_text('{"received":true}')
    print("screenshot:", admin_page.screenshot("admin-page.png"))

    # Redeliver the field change: queued, and the receiver gets it again with the same webhook-id.
    newest.get_by_test_id("action-redeliver").click()
    expect(newest.get_by_test_id("redeliver-result")).to_have_text("queued")
    redelivered = receiver.wait_for(3, path="/finance")[2]
    assert redelivered.headers["webhook-id"] == change_request.headers["webhook-id"]
    assert Receiver.verify(redelivered, [finance_secret]) == change_payload
    wait_for(lambda: _attempts(addon, finance_id) == 3, message="the redelivery recorded")
    finance.get_by_test_id("deliveries-refresh").click()
    expect(log_rows).to_have_count(3)
    expect(log_rows.nth(0).get_by_test_id("delivery-details")).to_contain_text(change_request.headers["webhook-id"])

    # The failing webhook's log: ERROR with the receiver's code and the start of its answer.
    broken.get_by_test_id("action-deliveries").click()
    expect(finance.get_by_test_id("deliveries-panel")).to_have_count(0)
    failed = broken.get_by_test_id("delivery-row").first
    expect(failed.get_by_test_id("delivery-status")).to_have_text("ERROR")
    expect(failed.get_by_test_id("delivery-http-code")).to_have_text("500")
    failed.get_by_test_id("delivery-details").locator("summary").click()
    expect(failed.get_by_test_id("delivery-response-body")).to_have_text('{"error":"receiver is down"}')
    admin_page.screenshot("admin-page-error-log.png")
    broken.get_by_test_id("deliveries-close").click()
    expect(broken.get_by_test_id("deliveries-panel")).to_have_count(0)

    # Edit the name.
    finance.get_by_test_id("action-edit").click()
    page.get_by_test_id("edit-name").fill("Finance sync (EU)")
    page.get_by_test_id("edit-save").click()
    expect(finance.get_by_test_id("webhook-name")).to_have_text("Finance sync (EU)")
    expect(page.get_by_test_id("edit-name")).to_have_count(0)
    wait_for(lambda: _webhook(addon, finance_id).name == "Finance sync (EU)", message="the new name saved")

    # Disable the failing one: its retries stop.
    broken.get_by_test_id("action-toggle").click()
    expect(broken.get_by_test_id("action-toggle")).to_have_attribute("aria-checked", "false")
    expect(broken.get_by_test_id("webhook-disabled-reason")).to_have_text("disabled")
    expect(broken).to_have_attribute("data-enabled", "false")
    stored = wait_for(lambda: (w := _webhook(addon, broken_id)) and not w.enabled and w, message="disabled")
    assert stored.disabled_reason == "manual"
    assert _count(addon, select(func.count()).select_from(Delivery).where(
        Delivery.webhook_id == broken_id, Delivery.status == DeliveryStatus.PENDING)) == 0

    # Delete it, after confirming.
    broken.get_by_test_id("action-delete").click()
    dialog = broken.get_by_test_id("confirm-dialog")
    expect(dialog).to_contain_text("Broken receiver")
    dialog.get_by_test_id("confirm-yes").click()
    expect(broken).to_have_count(0)
    expect(page.get_by_test_id("webhook-row")).to_have_count(1)
    assert _webhook(addon, broken_id).deleted_at is not None
    admin_page.open()
    expect(page.get_by_test_id("webhook-row")).to_have_count(1)
    expect(finance.get_by_test_id("webhook-name")).to_have_text("Finance sync (EU)")

    assert page.evaluate("window.__apResizeCalls") > 0, "the page never asked Jira to size its iframe"
    assert admin_page.tokens_minted > 0
    assert admin_page.problems() == {}


def test_an_http_url_is_refused_beside_the_url_field(world, admin_page):
    page = admin_page.page
    live = _live_webhooks(world.addon)
    admin_page.open()
    expect(page.get_by_test_id("webhook-row")).to_have_count(live)
    if not live:
        expect(page.get_by_test_id("list-state")).to_contain_text("No webhooks yet")

    page.get_by_test_id("create-name").fill("Plain HTTP")
    page.get_by_test_id("create-url").fill("http://hooks.example.com/in")
    page.get_by_test_id("create-submit").click()
    error = page.get_by_test_id("create-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("https://")
    expect(error).to_have_attribute("data-field", "url")
    expect(page.locator("#create-url-field").get_by_test_id("create-error")).to_have_count(1)
    expect(page.get_by_test_id("create-url")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_test_id("secret-panel")).to_be_hidden()
    expect(page.get_by_test_id("webhook-row")).to_have_count(live)
    # what was typed stays, to be corrected; correcting the URL clears the error
    expect(page.get_by_test_id("create-name")).to_have_value("Plain HTTP")
    page.get_by_test_id("create-url").fill("https://hooks.example.com/in")
    expect(error).to_be_hidden()

    assert admin_page.problems(expected_api_failures=("POST /api/webhooks -> 400",)) == {}


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
    entry = row.get_by_test_id("delivery-row").first
    entry.get_by_test_id("delivery-details").locator("summary").click()
    shown = entry.get_by_test_id("delivery-request-body")
    expect(entry.get_by_test_id("delivery-request-body-cut")).to_be_visible()
    assert "END-OF-BODY" not in shown.text_content()
    entry.get_by_test_id("delivery-request-body-full").click()
    expect(shown).to_contain_text("END-OF-BODY")
    expect(shown).to_contain_text('"event": "updated"')  # whole, it is JSON again, shown indented
    expect(entry.get_by_test_id("delivery-request-body-cut")).to_have_count(0)

    charts = [url for url in listed if "limit=200" in url or "bodies=0" in url]
    assert charts and all("bodies=0" in url for url in charts), listed
    assert admin_page.problems() == {}
