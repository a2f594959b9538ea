"""The ordered switch (CONTRACT §10.2) on the admin page in headless Chromium: set when creating, changed in the
edit dialog, and each delivery's `Projectrak-Sequence` in the delivery log."""

from __future__ import annotations

import pytest

from tests.admin.test_admin_page import (  # noqa: F401 - fixtures
    _create,
    _menu,
    _no_serious_violations,
    _row,
    _webhook,
    admin_page,
    world,
)
from tests.support.addon_server import wait_for
from tests.support.browser import chromium  # noqa: F401 - a fixture

expect = pytest.importorskip("playwright.sync_api").expect
expect.set_options(timeout=10_000)


def test_the_ordered_switch_and_each_deliverys_sequence(world, admin_page):  # noqa: F811
    page, addon, receiver, site = admin_page.page, world.addon, world.receiver, world.site
    admin_page.open()

    # Created in order, from the form.
    page.get_by_test_id("create-ordered--checkbox-label").click()
    webhook_id, _ = _create(page, "Mirror", receiver.url("/mirror"))
    assert _webhook(addon, webhook_id).ordered is True
    expect(page.get_by_test_id("create-ordered--hidden-checkbox")).not_to_be_checked()  # the form starts afresh

    # Two changes of one project: the log shows each one's number in its project.
    for n in range(2):
        change = {"project": {"key": "OPS"}, "timestamp": 1675182117615 + n,
                  "changes": [{"field": {"id": 12345, "name": "Budget", "type": "number"},
                               "previous": n, "current": n + 1}]}
        accepted = site.call(addon.url, "POST", "/events/projectrak/field-changes", json_body=change)
        assert accepted.status_code == 202, accepted.text
    receiver.wait_for(2, path="/mirror")
    row = _row(page, webhook_id)
    row.get_by_test_id("action-deliveries").click()
    log = page.get_by_test_id("delivery-log")
    expect(log.get_by_test_id("delivery-sequence")).to_have_text(["#2", "#1"])  # newest first
    _no_serious_violations(page, "the log with sequence numbers")
    page.keyboard.press("Escape")

    # Switched off in the edit dialog, which shows the saved setting.
    _menu(page, webhook_id, "action-edit")
    switch = page.get_by_test_id("edit-ordered--hidden-checkbox")
    expect(switch).to_be_checked()
    _no_serious_violations(page, "editing an ordered webhook")
    page.get_by_test_id("edit-ordered--checkbox-label").click()
    page.get_by_test_id("edit-save").click()
    expect(page.get_by_test_id("edit-name")).to_have_count(0)
    wait_for(lambda: _webhook(addon, webhook_id).ordered is False, message="the setting saved")
    assert admin_page.problems() == {}
