"""`Projectrak-Sequence` (CONTRACT §10.2): every delivery carries its event's number in its project, which grows
with each accepted event of that project of that tenant, in acceptance order: through the intake's HTTP door, in
the delivery log and attempts API, across a restart, and under concurrent intake from two `addon serve` processes
on PostgreSQL."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, select

from addon.storage.models import Delivery, Event
from tests.conftest import PG_SKIP_REASON, PG_URL, make_settings
from tests.receivers import Receiver
from tests.support.addon_server import AddonServer, wait_for
from tests.support.admin import AdminClient
from tests.support.atlassian import FakeAtlassian, FakeSite
from tests.support.http import free_port
from tests.support.intake import install_and_enable, post_changes
from tests.support.migrations import migrate_to
from tests.support.processes import AddonProcess, addon_env
from tests.support.rows import site_with_webhooks

FERNET_KEY = Fernet.generate_key().decode()
PROJECTS = {13647: "DEMO", 20000: "OPS"}


def change(project_id: int, n: int) -> dict[str, Any]:
    return {"project": {"id": project_id}, "timestamp": 1675182117615 + n,
            "changes": [{"field": {"id": 12345, "name": "Budget", "type": "number"}, "previous": n, "current": n + 1}]}


def new_site(atlassian: FakeAtlassian) -> FakeSite:
    site = atlassian.new_site()
    site.admins.add("admin-account")
    for project_id, key in PROJECTS.items():
        site.add_project(project_id, key, f"{key} project")
    return site


@pytest.fixture
def make_addon(atlassian: FakeAtlassian, receiver: Receiver) -> Iterator[Any]:
    servers: list[AddonServer] = []

    def make(database_url: str) -> AddonServer:
        server = AddonServer(make_settings(atlassian, database_url, ca_bundle=receiver.ca_path,
                                           secret_key=FERNET_KEY))
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def project_of(body: bytes) -> int:
    import json

    return json.loads(body)["data"]["project"]["id"]


def sequences_by_project(receiver: Receiver) -> dict[int, list[int]]:
    seen: dict[int, list[int]] = defaultdict(list)
    for request in receiver.requests:
        seen[project_of(request.body)].append(int(request.headers["projectrak-sequence"]))
    return dict(seen)


def test_each_delivery_carries_its_projects_sequence_and_the_log_shows_it(database_url, make_addon, atlassian,
                                                                         receiver):
    addon = make_addon(database_url)
    site = new_site(atlassian)
    install_and_enable(site, addon)
    admin = AdminClient(addon.url, site)
    webhook = admin.create(url=receiver.url("/seq"))
    for n, project_id in enumerate([13647, 13647, 20000, 13647, 20000]):
        assert post_changes(site, addon, change(project_id, n)).status_code == 202
    receiver.wait_for(5)
    # One at a time through one web process: each project counts from 1, in the order its events were accepted.
    assert {p: sorted(s) for p, s in sequences_by_project(receiver).items()} == {13647: [1, 2, 3], 20000: [1, 2]}

    log = admin.request("GET", f"/api/webhooks/{webhook['id']}/delivery-log").json()["items"]
    assert sorted((item["project"]["id"], item["sequence"]) for item in log) == [
        (13647, 1), (13647, 2), (13647, 3), (20000, 1), (20000, 2)]
    attempts = admin.request("GET", f"/api/webhooks/{webhook['id']}/deliveries").json()["items"]
    by_delivery = {item["delivery_id"]: item["sequence"] for item in log}
    assert all(a["sequence"] == by_delivery[a["delivery_id"]] for a in attempts) and len(attempts) == 5
    one = admin.request("GET", f"/api/attempts/{attempts[0]['id']}").json()
    assert one["sequence"] == attempts[0]["sequence"]

    # A test delivery is no project's change: 0, below every project's first number.
    receiver.clear()
    test = admin.request("POST", f"/api/webhooks/{webhook['id']}/test")
    assert test.status_code == 200, test.text
    assert test.json()["sequence"] == 0
    [sent] = receiver.wait_for(1)
    assert sent.headers["projectrak-sequence"] == "0"

    # A redelivery keeps the number it had.
    receiver.clear()
    first = next(item for item in log if item["sequence"] == 2 and item["project"]["id"] == 13647)
    assert admin.request("POST", f"/api/deliveries/{first['delivery_id']}/redeliver").status_code == 202
    [again] = receiver.wait_for(1)
    assert (again.headers["webhook-id"], again.headers["projectrak-sequence"]) == (first["webhook_id_header"], "2")


def test_the_sequence_goes_on_after_a_restart(database_url, make_addon, atlassian, receiver):
    addon = make_addon(database_url)
    site = new_site(atlassian)
    install_and_enable(site, addon)
    AdminClient(addon.url, site).create(url=receiver.url("/restart"))
    for n in range(3):
        assert post_changes(site, addon, change(13647, n)).status_code == 202
    receiver.wait_for(3)
    addon.stop()

    again = make_addon(database_url)
    site.install(again.url)  # the same site, now talking to the new process (same database)
    for n in range(3, 5):
        assert post_changes(site, again, change(13647, n)).status_code == 202
    receiver.wait_for(5)
    assert sorted(sequences_by_project(receiver)[13647]) == [1, 2, 3, 4, 5]


@pytest.mark.skipif(not PG_URL, reason=PG_SKIP_REASON)
@pytest.mark.timeout(240)
def test_two_serve_processes_number_one_projects_concurrent_events_in_acceptance_order(pg_url, atlassian, receiver,
                                                                                       tmp_path: Path):
    """Two `addon serve` processes on one PostgreSQL database take one project's events at the same time: every
    number is used once, and each client's events (sent one after another, so accepted in that order) get growing
    numbers."""
    processes: list[AddonProcess] = []
    urls = []
    try:
        for name in ("a", "b"):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            env = addon_env(PORT=str(port), ADDON_BASE_URL=url, DATABASE_URL=pg_url, ADDON_SECRET_KEY=FERNET_KEY,
                            ADDON_INSTALL_KEYS_URL=atlassian.keys_url, ADDON_JIRA_HOSTS="127.0.0.1",
                            OUTGOING_ALLOW_PRIVATE_NETWORKS="1", OUTGOING_CA_BUNDLE=receiver.ca_path,
                            )
            process = AddonProcess(["serve", "--port", str(port), "--workers", "2", "--no-worker"], env, tmp_path,
                                   tmp_path / f"serve-{name}.log")
            processes.append(process)
            process.wait_healthy(url)
            urls.append(url)
        site = new_site(atlassian)
        assert site.install(urls[0]).status_code == 204
        enabled = site.call(urls[0], "POST", "/lifecycle/enabled", json_body=site.lifecycle_body("enabled"))
        assert enabled.status_code == 204
        AdminClient(urls[0], site).create(url=receiver.url("/two"))

        per_client = 30
        accepted: dict[int, list[int]] = {}
        errors: list[str] = []

        def client(index: int) -> None:
            event_ids = []
            for n in range(per_client):
                response = site.call(urls[index % 2], "POST", "/events/projectrak/field-changes",
                                     json_body=change(13647, index * 1000 + n), sub="user-account")
                if response.status_code != 202:
                    errors.append(response.text)
                    return
                event_ids.append(response.json()["event_id"])
            accepted[index] = event_ids

        threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert errors == []
        engine = create_engine(pg_url)
        try:
            with engine.connect() as connection:
                sequence_of = dict(connection.execute(select(Event.id, Event.sequence)).all())
                delivered = dict(connection.execute(select(Delivery.event_id, Delivery.sequence)).all())
        finally:
            engine.dispose()
        numbers = sorted(sequence_of.values())
        assert numbers == list(range(1, 4 * per_client + 1))  # each used once, none skipped without a failure
        for event_ids in accepted.values():
            mine = [sequence_of[event_id] for event_id in event_ids]
            assert mine == sorted(mine)  # one client's events, accepted one after another, in order
        assert delivered == sequence_of  # each delivery carries its event's number
    finally:
        for process in processes:
            process.stop()


def test_numbers_are_per_tenant(database_url, make_addon, atlassian, receiver):
    addon = make_addon(database_url)
    sites = [new_site(atlassian) for _ in range(2)]
    for site in sites:
        install_and_enable(site, addon)
        assert post_changes(site, addon, change(13647, 0)).status_code == 202
    assert post_changes(sites[1], addon, change(13647, 1)).status_code == 202
    wait_for(lambda: len(_events(addon)) == 3)
    assert sorted(e.sequence for e in _events(addon)) == [1, 1, 2]


def _events(addon: AddonServer) -> list[Event]:
    with addon.sessions() as session:
        return list(session.scalars(select(Event)))


def test_the_migration_gives_what_was_stored_before_its_line(empty_database_url):
    """The migration writes no row (every stored delivery gets number 0 by its column's default). Deliveries stored
    before lines existed, or by an older add-on while the upgrade ran, get their event's project and their project
    its counter when their webhook is made ordered, or when they are queued again on an ordered webhook (a
    redelivery, a recovery)."""
    from alembic import command
    from sqlalchemy import text
    from sqlalchemy.orm import Session

    from addon.delivery.outcomes import line_up, recover_deliveries, restart_delivery
    from addon.storage.engine import make_engine
    from addon.storage.migrate import upgrade
    from addon.storage.models import Webhook, utcnow

    engine = make_engine(empty_database_url)
    try:
        migrate_to(engine, command.upgrade, "0007")
        with engine.begin() as connection:
            site_with_webhooks(connection)
            for event_id, project_id, status in ((1, "13647", "pending"), (2, "13647", "failed"), (3, None, "pending"),
                                                 (4, "13648", "failed"), (5, None, "cancelled")):
                connection.execute(text(
                    "INSERT INTO events (id, tenant_id, source, project_id, body, created_at) "
                    "VALUES (:id, 1, 'projectrak', :project, '{}', CURRENT_TIMESTAMP)"),
                    {"id": event_id, "project": project_id})
                connection.execute(text(
                    "INSERT INTO deliveries (tenant_id, event_id, webhook_id, message_id, status, attempt_count, "
                    "next_attempt_at, created_at, schedule_started_at) VALUES (1, :id, 1, :message, :status, 0, "
                    "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"),
                    {"id": event_id, "message": f"msg_{event_id}", "status": status})
        upgrade(engine)

        def lines() -> list[tuple]:
            with engine.connect() as connection:
                return [tuple(row) for row in connection.execute(text(
                    "SELECT event_id, status, project_id, sequence FROM deliveries ORDER BY event_id"))]

        assert lines() == [(1, "pending", None, 0), (2, "failed", None, 0), (3, "pending", None, 0),
                           (4, "failed", None, 0), (5, "cancelled", None, 0)]  # the migration wrote no row

        def counters() -> list[tuple]:
            with engine.connect() as connection:
                return sorted(tuple(row) for row in connection.execute(text(
                    "SELECT project_id, last_sequence FROM project_sequences")))

        assert counters() == []
        with engine.begin() as connection:  # an older add-on's write while the upgrade ran
            connection.execute(text(
                "INSERT INTO events (id, tenant_id, source, project_id, body, created_at) "
                "VALUES (6, 1, 'projectrak', '13649', '{}', CURRENT_TIMESTAMP)"))
            connection.execute(text(
                "INSERT INTO deliveries (tenant_id, event_id, webhook_id, message_id, status, attempt_count, "
                "next_attempt_at, created_at, schedule_started_at) VALUES (1, 6, 1, 'msg_6', 'pending', 0, "
                "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
        with Session(engine) as session, session.begin():  # redelivered while unordered: no line needed yet
            restart_delivery(session.scalars(select(Delivery).where(Delivery.event_id == 2)).one(), utcnow())
        assert lines()[1] == (2, "pending", None, 0)
        with Session(engine) as session, session.begin():  # made ordered (PATCH): what is pending gets its line
            webhook = session.get_one(Webhook, 1)
            assert webhook.ordered is False
            webhook.ordered = True
            line_up(session, webhook)
        assert [row for row in lines() if row[1] == "pending"] == [
            (1, "pending", "13647", 0), (2, "pending", "13647", 0), (3, "pending", "", 0), (6, "pending", "13649", 0)]
        with Session(engine) as session, session.begin():  # recovered on an ordered webhook
            assert recover_deliveries(session, 1, utcnow().replace(year=2000)) == (2, 0)
            line_up(session, session.get_one(Webhook, 1))
        assert lines()[3:5] == [(4, "pending", "13648", 0), (5, "pending", "", 0)]
        assert counters() == [("", 0), ("13647", 0), ("13648", 0), ("13649", 0)]
    finally:
        engine.dispose()
