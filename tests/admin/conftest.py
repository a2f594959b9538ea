"""The admin tests' add-on: serving on both databases with its delivery worker, trusting the test receiver's CA, with
one installed site and its administrator."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.conftest import make_settings
from tests.receivers import Receiver
from tests.support.addon_server import AddonServer
from tests.support.admin import AdminClient
from tests.support.atlassian import FakeAtlassian, FakeSite
from tests.support.delivery import tenant_id_of


@contextmanager
def hooked_addon(atlassian: FakeAtlassian, database_url: str, receiver: Receiver,
                 **changes: object) -> Iterator[tuple[AddonServer, AdminClient, int, FakeSite]]:
    """The add-on (worker running) trusting the receiver's CA; an installed site with one project; its admin."""
    server = AddonServer(make_settings(atlassian, database_url, ca_bundle=receiver.ca_path, outgoing_timeout_s=5.0,
                                       **changes))
    try:
        site = atlassian.new_site()
        site.admins.add("admin-account")
        site.add_project(10000, "DEMO", "Demo project")
        assert site.install(server.url).status_code == 204
        yield server, AdminClient(server.url, site), tenant_id_of(server, site.client_key), site
    finally:
        server.stop()


@pytest.fixture
def hooked(atlassian: FakeAtlassian, database_url: str,
           receiver: Receiver) -> Iterator[tuple[AddonServer, AdminClient, int]]:
    """`hooked_addon` on both databases: (the add-on, the admin's client, the tenant's id)."""
    with hooked_addon(atlassian, database_url, receiver) as (server, admin, tenant_id, _site):
        yield server, admin, tenant_id
