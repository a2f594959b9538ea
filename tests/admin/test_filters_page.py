"""Editing a webhook's filter on the admin page (CONTRACT §10.1), in headless Chromium, through both doors: projects
found in Jira by name and added, fields ticked by name from `GET /api/fields`, saved with the webhook, shown in its
row, and cleared again by ticking "Every project"."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests

from addon.storage.models import Webhook
from tests.conftest import make_settings
from tests.receivers import Receiver
from tests.support.addon_server import AddonServer
from tests.support.admin import AdminClient
from tests.support.atlassian import FakeAtlassian
from tests.support.browser import AdminPage, axe_violations, chromium  # noqa: F401 - chromium is a fixture
from tests.support.forge import FakeForge
from tests.support.forge_ui import ForgeAdminPage, build_forge_page
from tests.support.intake import install_and_enable, post_changes

expect = pytest.importorskip("playwright.sync_api").expect
expect.set_options(timeout=10_000)

BUDGET = {"field": {"id": 12345, "name": "Budget", "type": "number"}, "previous": 1, "current": 2}


def _stored(addon: AddonServer, webhook_id: int) -> tuple[list | None, list | None]:
    with addon.sessions() as session:
        webhook = session.get(Webhook, webhook_id)
        projects = None if webhook.filter_projects is None else [p["id"] for p in json.loads(webhook.filter_projects)]
        fields = None if webhook.filter_fields is None else json.loads(webhook.filter_fields)
        return projects, fields


def _edit_filter(page, webhook_id: int) -> None:  # type: ignore[no-untyped-def]
    """Open the row's Edit dialog and choose the OPS project (found by its name) and the Budget field."""
    row = page.locator(f'[data-testid="webhook-row"][data-webhook-id="{webhook_id}"]')
    row.get_by_test_id("row-menu--trigger").click()
    page.get_by_test_id("action-edit").click()
    dialog = page.get_by_test_id("edit-dialog")
    dialog.get_by_test_id("filter-all-projects--checkbox-label").click()
    dialog.get_by_test_id("filter-project-search").fill("Oper")
    add = dialog.get_by_role("button", name="Add Operations")
    expect(add).to_have_count(1)
    expect(dialog.get_by_role("button", name="Add Demo project")).to_have_count(0)  # not what was searched
    add.click()
    expect(dialog.get_by_test_id("filter-project-chosen")).to_have_text([r"Operations (OPS) Remove"])
    dialog.get_by_test_id("filter-all-fields--checkbox-label").click()
    dialog.get_by_test_id("filter-field-search").fill("budg")
    expect(dialog.get_by_test_id("filter-field")).to_have_count(1)
    dialog.get_by_test_id("filter-field-12345--checkbox-label").click()
    expect(dialog.get_by_test_id("filter-field-12345--hidden-checkbox")).to_be_checked()


def _clear_projects(page, webhook_id: int) -> None:  # type: ignore[no-untyped-def]
    row = page.locator(f'[data-testid="webhook-row"][data-webhook-id="{webhook_id}"]')
    row.get_by_test_id("row-menu--trigger").click()
    page.get_by_test_id("action-edit").click()
    dialog = page.get_by_test_id("edit-dialog")
    expect(dialog.get_by_test_id("filter-project-chosen")).to_have_count(1)  # the saved filter is shown
    dialog.get_by_test_id("filter-all-projects--checkbox-label").click()
    dialog.get_by_test_id("edit-save").click()
    expect(row.get_by_test_id("webhook-filter")).to_have_text("Only 1 field")


# Connect.


@pytest.fixture(scope="module")
def connect_world(tmp_path_factory) -> Iterator[tuple[AddonServer, object]]:
    atlassian = FakeAtlassian()
    receiver = Receiver().start()
    database = tmp_path_factory.mktemp("filters-page") / "addon.db"
    addon = AddonServer(make_settings(atlassian, f"sqlite:///{database}", ca_bundle=receiver.ca_path))
    try:
        site = atlassian.new_site()
        site.admins.add("admin-account")
        site.add_project(10000, "DEMO", "Demo project")
        site.add_project(10001, "OPS", "Operations")
        install_and_enable(site, addon)
        assert post_changes(site, addon, {"project": {"key": "DEMO"}, "changes": [BUDGET]}).status_code == 202
        yield addon, site
    finally:
        addon.stop()
        receiver.stop()
        atlassian.stop()


def test_connect_page_edits_a_filter(chromium, connect_world):  # noqa: F811
    addon, site = connect_world
    webhook = AdminClient(addon.url, site).create("Finance", "https://93.184.215.14/finance")
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB", timezone_id="UTC")
    try:
        admin_page = AdminPage(context.new_page(), addon.url, site).install()
        admin_page.open()
        page = admin_page.page
        row = page.locator(f'[data-testid="webhook-row"][data-webhook-id="{webhook["id"]}"]')
        expect(row.get_by_test_id("webhook-filter")).to_have_count(0)
        _edit_filter(page, webhook["id"])
        found = axe_violations(page)
        assert found == [], "\n".join(found)
        admin_page.screenshot("admin-page-filter.png")
        page.get_by_test_id("edit-dialog").get_by_test_id("edit-save").click()
        expect(row.get_by_test_id("webhook-filter")).to_have_text("Only projects OPS · 1 field")
        assert _stored(addon, webhook["id"]) == (["10001"], [12345])

        _clear_projects(page, webhook["id"])
        assert _stored(addon, webhook["id"]) == (None, [12345])
        assert admin_page.problems() == {}
    finally:
        context.close()


# Forge.


@pytest.fixture(scope="module")
def forge_build(tmp_path_factory) -> object:
    return build_forge_page(tmp_path_factory.mktemp("forge-filters-ui") / "admin")


@pytest.fixture(scope="module")
def forge_world(tmp_path_factory) -> Iterator[tuple[AddonServer, object]]:
    atlassian = FakeAtlassian()
    forge = FakeForge(atlassian)
    database = tmp_path_factory.mktemp("forge-filters-page") / "addon.db"
    addon = AddonServer(make_settings(atlassian, f"sqlite:///{database}", forge_app_id=forge.app_id,
                                      forge_jwks_url=forge.jwks_url, forge_api_hosts=("127.0.0.1",)))
    try:
        site = atlassian.new_site()
        site.admins.add("admin-account")
        site.add_project(10000, "DEMO", "Demo project")
        site.add_project(10001, "OPS", "Operations")
        installation = forge.install(site)
        assert installation.invoke(addon.url + "/forge/lifecycle", installation.lifecycle_body()).status == 204
        answer = requests.post(addon.url + "/events/projectrak/field-changes", timeout=30,
                               json={"project": {"key": "DEMO"}, "changes": [BUDGET]},
                               headers={"Authorization": f"Bearer {installation.fit(principal='someone')}",
                                        "x-forge-oauth-system": installation.system_tokens[-1]})
        assert answer.status_code == 202, answer.text
        yield addon, installation
    finally:
        addon.stop()
        forge.stop()
        atlassian.stop()


def test_forge_page_edits_a_filter(chromium, forge_build, forge_world):  # noqa: F811
    addon, installation = forge_world
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB", timezone_id="UTC")
    try:
        forge_page = ForgeAdminPage(context.new_page(), forge_build, addon.url, lambda: {
            "Authorization": f"Bearer {installation.fit(principal='admin-account', module_type='jira:adminPage')}",
            "x-forge-oauth-system": installation.system_tokens[-1]}).install()
        page = forge_page.page
        forge_page.open()
        page.get_by_test_id("create-name").fill("Finance")
        page.get_by_test_id("create-url").fill("https://93.184.215.14/finance")
        page.get_by_test_id("create-submit").click()
        page.get_by_test_id("secret-dismiss").click()
        rows = page.get_by_test_id("webhook-row")
        expect(rows).to_have_count(1)
        webhook_id = int(rows.first.get_attribute("data-webhook-id"))

        _edit_filter(page, webhook_id)
        page.get_by_test_id("edit-dialog").get_by_test_id("edit-save").click()
        expect(rows.first.get_by_test_id("webhook-filter")).to_have_text("Only projects OPS · 1 field")
        assert _stored(addon, webhook_id) == (["10001"], [12345])
        assert "GET /api/fields" in forge_page.calls
        assert any(call.startswith("GET /api/projects?query=Oper") for call in forge_page.calls)
        _clear_projects(page, webhook_id)
        assert _stored(addon, webhook_id) == (None, [12345])
        assert forge_page.problems() == {}
    finally:
        context.close()
