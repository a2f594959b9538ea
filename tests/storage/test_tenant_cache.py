"""The intake remembers tenants (`TenantCache`), yet a re-install, disable or uninstall handled by another process
takes effect at once: two add-on servers on one database stand for two processes, each with its own cache."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from addon.storage.models import Delivery, Event
from tests.conftest import make_settings
from tests.support.addon_server import AddonServer
from tests.support.atlassian import FakeAtlassian, FakeSite
from tests.support.intake import add_webhook, count, install_and_enable, post_changes

CHANGE = {"project": {"id": 10000},
          "changes": [{"field": {"id": 1, "name": "Budget", "type": "number"}, "previous": 1, "current": 2}]}
BAD_CHANGE = {"project": {"id": 10000},
              "changes": [{"field": {"id": 1, "name": "Budget", "type": "no-such-type"}, "current": 2}]}
NEW_SECRET = "the-re-installed-shared-secret-of-32-bytes-or-more"


@pytest.fixture
def processes(atlassian: FakeAtlassian, database_url: str) -> Iterator[tuple[AddonServer, AddonServer]]:
    """`first` handles Jira's lifecycle calls; `second` takes the field changes (and caches the tenant)."""
    first = AddonServer(make_settings(atlassian, database_url), background=False)
    second = AddonServer(make_settings(atlassian, database_url), background=False)
    yield first, second
    second.stop()
    first.stop()


@pytest.fixture
def site(atlassian: FakeAtlassian, processes: tuple[AddonServer, AddonServer]) -> FakeSite:
    first, second = processes
    site = atlassian.new_site()
    site.add_project(10000, "DEMO", "Demo project")
    install_and_enable(site, first)
    add_webhook(first, site)
    assert post_changes(site, second, CHANGE).status_code == 202  # the second process now remembers the tenant
    return site


def stored(addon: AddonServer) -> tuple[int, int]:
    return count(addon, Event), count(addon, Delivery)


def test_a_reinstall_elsewhere_stops_the_old_secret_at_once(processes, site):
    first, second = processes
    old_secret = site.shared_secret
    site.shared_secret = NEW_SECRET
    assert site.install(first.url).status_code == 204
    before = stored(first)

    assert post_changes(site, second, BAD_CHANGE, secret=old_secret).status_code == 401  # not a 422
    assert post_changes(site, second, CHANGE, secret=old_secret).status_code == 401
    assert stored(first) == before

    accepted = post_changes(site, second, CHANGE)
    assert accepted.status_code == 202, accepted.text
    assert stored(first) == (before[0] + 1, before[1] + 1)


def test_a_disable_elsewhere_refuses_changes_at_once_and_an_enable_takes_them_again(processes, site):
    first, second = processes
    assert site.call(first.url, "POST", "/lifecycle/disabled", json_body=site.lifecycle_body("disabled")
                     ).status_code == 204
    before = stored(first)

    refused = post_changes(site, second, CHANGE)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "tenant_disabled"
    assert stored(first) == before

    assert site.call(first.url, "POST", "/lifecycle/enabled", json_body=site.lifecycle_body("enabled")
                     ).status_code == 204
    assert post_changes(site, second, CHANGE).status_code == 202


def test_an_uninstall_elsewhere_refuses_the_tenant_at_once(processes, site):
    first, second = processes
    assert site.install(first.url, event="uninstalled").status_code == 204
    before = stored(first)

    assert post_changes(site, second, BAD_CHANGE).status_code == 401
    assert post_changes(site, second, CHANGE).status_code == 401
    assert stored(first) == before
