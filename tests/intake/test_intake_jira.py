"""`POST /events/jira/<event>` end to end: receipt, de-duplication, the inbox processor and project snapshots."""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from collections.abc import Iterator

import pytest
import requests
from sqlalchemy import select, update

from addon.app import build_runtime
from addon.intake.inbox import (
    MAX_ATTEMPTS,
    InboxProcessor,
    LeaseLost,
    RetryPolicy,
    claim_next,
    fence,
    prune,
)
from addon.intake.jira_attributes import (
    CATEGORY,
    DEFAULT_ASSIGNEE,
    DESCRIPTION,
    KEY,
    LEAD,
    NAME,
    TYPE,
    URL,
)
from addon.storage.engine import transaction
from addon.storage.models import Event, JiraInboxEvent, ProjectSnapshot, SeenJiraWebhook, utcnow
from tests.conftest import make_settings
from tests.support.addon_server import AddonServer, wait_for
from tests.support.atlassian import FakeAtlassian, FakeSite
from tests.support.intake import (
    add_webhook,
    bodies,
    count,
    deliveries,
    events,
    inbox,
    install_and_enable,
    post_changes,
    snapshot,
    tenant_id,
    wait_inbox_done,
)

DEMO_RECORDED = {KEY: "DEMO", NAME: "Demo project", TYPE: "software", URL: None, LEAD: "lead-account-1",
                 DEFAULT_ASSIGNEE: "UNASSIGNED", CATEGORY: None, DESCRIPTION: None}


@pytest.fixture
def db_site(atlassian: FakeAtlassian, db_addon: AddonServer) -> FakeSite:
    site = atlassian.new_site()
    site.add_project(10000, "DEMO", "Demo project")
    site.add_project(10001, "OPS", "Operations")
    install_and_enable(site, db_addon)
    wait_inbox_done(db_addon, site)
    return site


def send(site: FakeSite, addon: AddonServer, event: str, project_id: int | str = 10000, **kwargs) -> None:
    response = site.send_webhook(addon.url, event, project_id, **kwargs)
    assert response.status_code == 204, response.text


# The install snapshot.


def test_install_records_every_project_page_by_page(addon, atlassian):
    site = atlassian.new_site()
    for i in range(120):
        site.add_project(20000 + i, f"P{i}", f"Project {i}", description=f"About {i}", category="Ops" if i % 2 else "",
                         url=f"https://example.com/{i}" if i % 3 == 0 else "", assigneeType="PROJECT_LEAD")
    install_and_enable(site, addon)
    wait_inbox_done(addon, site)
    assert len(site.calls_to("GET", "/rest/api/3/project/search")) == 3
    for i in (0, 1, 119):
        assert snapshot(addon, site, 20000 + i) == {
            KEY: f"P{i}", NAME: f"Project {i}", TYPE: "software",
            URL: f"https://example.com/{i}" if i % 3 == 0 else None,
            LEAD: "lead-account-1", DEFAULT_ASSIGNEE: "PROJECT_LEAD", CATEGORY: "Ops" if i % 2 else None,
            DESCRIPTION: f"About {i}"}
    assert count(addon, ProjectSnapshot, ProjectSnapshot.tenant_id == tenant_id(addon, site)) == 120

    # The snapshot primed the project cache: intake needs no project call.
    before = len(site.calls_to("GET", "/rest/api/3/project/P7"))
    body = {"project": {"key": "P7"}, "changes": [{"field": {"id": 1, "name": "N", "type": "number"},
                                                   "previous": 1, "current": 2}]}
    assert post_changes(site, addon, body).status_code == 202
    assert len(site.calls_to("GET", "/rest/api/3/project/P7")) == before == 0


def test_install_snapshot_is_retried_while_jira_is_down(addon, atlassian):
    site = atlassian.new_site()
    site.add_project(10000, "DEMO", "Demo project")
    site.down = True
    install_and_enable(site, addon)
    wait_for(lambda: (rows := inbox(addon, site)) and rows[0].attempts >= 1 and rows[0].error, message="a failure")
    assert snapshot(addon, site, 10000) is None
    site.down = False
    wait_inbox_done(addon, site)
    assert snapshot(addon, site, 10000) == DEMO_RECORDED


def test_an_attribute_the_install_snapshot_lacked_is_recorded_not_reported(addon, atlassian):
    """project/search may leave assigneeType out (GET project/{id} has it): no false null -> value change."""
    site = atlassian.new_site()
    site.search_omits = {"assigneeType"}
    site.add_project(10000, "DEMO", "Demo project", assigneeType="PROJECT_LEAD")
    install_and_enable(site, addon)
    wait_inbox_done(addon, site)
    assert snapshot(addon, site, 10000) == {k: v for k, v in DEMO_RECORDED.items() if k != DEFAULT_ASSIGNEE}

    site.update_project(10000, name="Renamed")
    send(site, addon, "project_updated", timestamp=1)
    wait_inbox_done(addon, site)
    assert [[(f["id"], f["value"]) for f in b["data"]["fields"]] for b in bodies(addon)] == [
        [(-2, {"current": "Renamed", "previous": "Demo project"})]]
    assert snapshot(addon, site, 10000)[DEFAULT_ASSIGNEE] == "PROJECT_LEAD"

    site.update_project(10000, assigneeType="UNASSIGNED")  # now known on both sides: a real change is reported
    send(site, addon, "project_updated", timestamp=2)
    wait_for(lambda: len(events(addon)) == 2, message="the second event")
    assert [(f["id"], f["value"]) for f in bodies(addon)[1]["data"]["fields"]] == [
        (-6, {"current": "UNASSIGNED", "previous": "PROJECT_LEAD"})]


# project_updated.


def test_project_updated_emits_the_changed_attributes_in_table_order(db_addon, db_site):
    webhook = add_webhook(db_addon, db_site)
    assert snapshot(db_addon, db_site, 10000) == DEMO_RECORDED
    db_site.update_project(10000, description="Now described", lead="lead-account-2", name="Demo renamed",
                           category="Internal", assigneeType="PROJECT_LEAD")
    send(db_site, db_addon, "project_updated", sub="jira-user", timestamp=1675182117615)

    [event] = wait_for(lambda: events(db_addon), message="the event")
    assert json.loads(event.body) == {"data": {
        "event": "updated", "user": "jira-user", "timestamp": 1675182117615,
        "project": {"id": 10000, "key": "DEMO", "name": "Demo renamed"},
        "fields": [
            {"id": -2, "name": "Name", "type": "text",
             "value": {"current": "Demo renamed", "previous": "Demo project"}},
            {"id": -5, "name": "Lead", "type": "user",
             "value": {"current": "lead-account-2", "previous": "lead-account-1"}},
            {"id": -6, "name": "Default Assignee", "type": "text",
             "value": {"current": "PROJECT_LEAD", "previous": "UNASSIGNED"}},
            {"id": -7, "name": "Category", "type": "list", "value": {"current": "Internal", "previous": None}},
            {"id": -9, "name": "Description", "type": "multiline_text",
             "value": {"current": "Now described", "previous": None}},
        ],
    }}
    assert event.source == "jira" and event.project_id == "10000"
    assert [d.webhook_id for d in deliveries(db_addon, event.id)] == [webhook]
    assert snapshot(db_addon, db_site, 10000)[NAME] == "Demo renamed"
    [row] = [r for r in inbox(db_addon, db_site) if r.event == "project_updated"]
    assert row.processed_at is not None and row.user_account_id == "jira-user"


def test_key_type_and_url_changes_and_no_sub_means_null_user(addon, site):
    wait_inbox_done(addon, site)
    site.update_project(10001, key="OPS2", projectTypeKey="business", url="https://ops.example.com")
    send(site, addon, "project_updated", 10001, timestamp=42)
    [data] = [b["data"] for b in wait_for(lambda: bodies(addon), message="the event")]
    assert data["user"] is None and data["timestamp"] == 42
    assert data["project"] == {"id": 10001, "key": "OPS2", "name": "Operations"}
    assert [(f["id"], f["value"]) for f in data["fields"]] == [
        (-1, {"current": "OPS2", "previous": "OPS"}),
        (-3, {"current": "business", "previous": "software"}),
        (-4, {"current": "https://ops.example.com", "previous": None}),
    ]


def test_project_updated_without_changes_emits_nothing(addon, site):
    wait_inbox_done(addon, site)
    site.update_project(10000, description="")  # "" is null, as recorded
    send(site, addon, "project_updated")
    wait_inbox_done(addon, site)
    assert events(addon) == []


def test_project_updated_without_a_recorded_state_records_it_and_emits_nothing(addon, site):
    wait_inbox_done(addon, site)
    site.add_project(10002, "LATE", "Created while we were not looking")
    send(site, addon, "project_updated", 10002)
    wait_inbox_done(addon, site)
    assert events(addon) == []
    assert snapshot(addon, site, 10002)[KEY] == "LATE"
    site.update_project(10002, name="Renamed")
    send(site, addon, "project_updated", 10002)
    wait_for(lambda: events(addon), message="the event")
    assert [f["id"] for f in bodies(addon)[0]["data"]["fields"]] == [-2]


def test_updates_of_one_project_are_compared_in_arrival_order(addon, site):
    wait_inbox_done(addon, site)
    # Each read of the project shows the next state, so the order of the reads shows in the events.
    names = [f"Name {i}" for i in range(1, 7)]
    site.scripted_changes["10000"] = [{"name": name} for name in names]
    for i in range(len(names)):
        send(site, addon, "project_updated", timestamp=1000 + i)
    wait_for(lambda: len(events(addon)) == len(names), message="one event per update")
    seen = sorted((b["data"]["timestamp"], b["data"]["fields"][0]["value"]) for b in bodies(addon))
    previous = ["Demo project", *names[:-1]]
    assert seen == [(1000 + i, {"current": names[i], "previous": previous[i]}) for i in range(len(names))]


def test_strict_per_project_order_across_processors(atlassian, database_url):
    """Two runtimes on one database (as two processes), three threads each, events of three projects."""
    server = AddonServer(make_settings(atlassian, database_url), background=False)
    second = build_runtime(server.settings)
    processors: list[InboxProcessor] = []
    try:
        site = atlassian.new_site()
        projects = [10000, 10001, 10002]
        for project_id in projects:
            site.add_project(project_id, f"K{project_id}", f"Project {project_id}")
        install_and_enable(site, server)
        processors.append(InboxProcessor(server.runtime, threads=3).start())
        wait_inbox_done(server, site)
        rounds = 5
        for project_id in projects:
            site.scripted_changes[str(project_id)] = [{"name": f"{project_id}-{i}"} for i in range(rounds)]
        processors[0].stop()
        for i in range(rounds):  # interleaved arrivals, stored while nothing processes them
            for project_id in projects:
                send(site, server, "project_updated", project_id, timestamp=1 + i)
        processors[0] = InboxProcessor(server.runtime, threads=3).start()
        processors.append(InboxProcessor(second, threads=3).start())
        wait_for(lambda: len(events(server)) == rounds * len(projects), timeout=30, message="all events")
        for project_id in projects:
            changes = sorted((b["data"]["timestamp"], b["data"]["fields"][0]["value"]) for b in bodies(server)
                             if b["data"]["project"]["id"] == project_id)
            names = [f"Project {project_id}"] + [f"{project_id}-{i}" for i in range(rounds)]
            assert changes == [(1 + i, {"current": names[i + 1], "previous": names[i]}) for i in range(rounds)]
    finally:
        for processor in processors:
            processor.stop()
        second.close()
        server.stop()


def test_an_expired_lease_is_taken_over_and_the_stale_holder_writes_nothing(atlassian, database_url):
    server = AddonServer(make_settings(atlassian, database_url), background=False)
    try:
        site = atlassian.new_site()
        site.add_project(10000, "DEMO", "Demo project")
        install_and_enable(site, server)
        processor = InboxProcessor(server.runtime)
        assert processor.run_once()  # the install snapshot
        site.update_project(10000, name="Renamed")
        send(site, server, "project_updated")
        send(site, server, "project_deleted")

        with transaction(server.sessions) as session:
            held = claim_next(session, lease_s=60)
        assert held is not None and held.event == "project_updated"
        with transaction(server.sessions) as session:
            assert claim_next(session, lease_s=60) is None  # leased head; the delete waits behind it

        with transaction(server.sessions) as session:  # the holder stalls past its lease
            fence(session, held, lease_until=utcnow() - dt.timedelta(seconds=1))
        assert processor.run_once()  # taken over and handled
        assert [b["data"]["fields"][0]["value"]["current"] for b in bodies(server)] == ["Renamed"]
        with pytest.raises(LeaseLost), transaction(server.sessions) as session:
            fence(session, held, processed_at=utcnow())
        assert processor.run_once()  # then the delete
        assert not processor.run_once()
        assert snapshot(server, site, 10000) is None
        assert len(events(server)) == 1
    finally:
        server.stop()


# Created, restored, deleted.


def test_created_then_updated_then_deleted(addon, site):
    wait_inbox_done(addon, site)
    site.add_project(10002, "NEW", "New project", description="Fresh", category="Cat", url="https://new.example")
    send(site, addon, "project_created", 10002)
    wait_inbox_done(addon, site)
    assert events(addon) == []
    assert snapshot(addon, site, 10002) == {KEY: "NEW", NAME: "New project", TYPE: "software",
                                            URL: "https://new.example", LEAD: "lead-account-1",
                                            DEFAULT_ASSIGNEE: "UNASSIGNED", CATEGORY: "Cat", DESCRIPTION: "Fresh"}
    assert site.calls_to("GET", "/rest/api/3/project/10002")  # what the body lacks came from REST

    site.update_project(10002, category=None, description="Changed")
    send(site, addon, "project_updated", 10002, sub="editor")
    wait_for(lambda: events(addon), message="the event")
    [data] = [b["data"] for b in bodies(addon)]
    assert data["user"] == "editor"
    assert [(f["id"], f["value"]) for f in data["fields"]] == [
        (-7, {"current": None, "previous": "Cat"}), (-9, {"current": "Changed", "previous": "Fresh"})]

    send(site, addon, "project_deleted", 10002)
    wait_inbox_done(addon, site)
    assert snapshot(addon, site, 10002) is None
    assert len(events(addon)) == 1


@pytest.mark.parametrize("forgetting", ["project_soft_deleted", "project_archived"])
def test_forget_then_restore(addon, site, forgetting):
    wait_inbox_done(addon, site)
    send(site, addon, forgetting, 10001)
    wait_inbox_done(addon, site)
    assert snapshot(addon, site, 10001) is None
    site.update_project(10001, name="Back again")
    restoring = "project_restored_deleted" if forgetting == "project_soft_deleted" else "project_restored_archived"
    send(site, addon, restoring, 10001)
    wait_inbox_done(addon, site)
    assert snapshot(addon, site, 10001)[NAME] == "Back again"
    assert events(addon) == []


def test_a_project_gone_from_jira_is_not_retried_forever(addon, site):
    wait_inbox_done(addon, site)
    body_project = site.webhook_project(10001)
    site.remove_project(10001)
    send(site, addon, "project_updated", 10001, project=body_project)
    [*_, row] = wait_inbox_done(addon, site)
    assert row.error and "no longer exists" in row.error
    assert events(addon) == []


# Jira down.


def test_jira_down_delays_a_project_s_events_and_loses_none(addon, site):
    wait_inbox_done(addon, site)
    add_webhook(addon, site)
    site.update_project(10000, name="Renamed while down")
    site.down = True
    send(site, addon, "project_updated", timestamp=1)
    send(site, addon, "project_deleted", timestamp=2)  # must wait behind the update
    send(site, addon, "project_archived", 10001)  # another project is not held up
    wait_for(lambda: snapshot(addon, site, 10001) is None, message="the other project's event")
    first = wait_for(lambda: (rows := [r for r in inbox(addon, site) if r.event == "project_updated"])
                     and rows[0].attempts >= 1 and rows[0].error and rows[0], message="a failed attempt")
    assert first.processed_at is None and first.not_before is not None
    assert snapshot(addon, site, 10000) is not None  # the delete has not overtaken the update
    assert events(addon) == []

    site.down = False
    wait_for(lambda: events(addon), timeout=15, message="the event after Jira came back")
    wait_inbox_done(addon, site)
    [data] = [b["data"] for b in bodies(addon)]
    assert data["timestamp"] == 1 and data["fields"][0]["value"]["current"] == "Renamed while down"
    assert snapshot(addon, site, 10000) is None


# Jira refusing for a while (429, 401, 403): the event waits, however long it takes.


@pytest.fixture
def manual(atlassian: FakeAtlassian, database_url: str) -> Iterator[tuple[AddonServer, FakeSite, InboxProcessor]]:
    """An add-on whose inbox is processed by hand (with 1 ms backoff), one site, its install snapshot taken."""
    server = AddonServer(make_settings(atlassian, database_url), background=False)
    try:
        site = atlassian.new_site()
        site.add_project(10000, "DEMO", "Demo project")
        install_and_enable(site, server)
        processor = InboxProcessor(server.runtime, retry=RetryPolicy(base_s=0.001, max_s=0.001))
        assert processor.run_once()  # the install snapshot
        yield server, site, processor
    finally:
        server.stop()


def _updated_row(server: AddonServer, site: FakeSite) -> JiraInboxEvent:
    [row] = [r for r in inbox(server, site) if r.event == "project_updated"]
    return row


def test_a_rate_limited_or_refusing_jira_is_waited_for_and_the_event_never_given_up(manual):
    server, site, processor = manual
    add_webhook(server, site)
    site.update_project(10000, name="Renamed")
    send(site, server, "project_updated", timestamp=5)

    site.refusal, site.refusal_headers = 429, {"Retry-After": "120"}
    assert processor.run_once()
    row = _updated_row(server, site)
    assert row.processed_at is None and "429" in row.error
    assert 110 <= (row.not_before - utcnow()).total_seconds() <= 120  # Jira's Retry-After, not the 1 ms backoff
    assert not processor.run_once()  # nothing is claimable before then

    with transaction(server.sessions) as session:  # two minutes later
        session.execute(update(JiraInboxEvent).where(JiraInboxEvent.id == row.id).values(not_before=None))
    site.refusal_headers = {}
    for attempt in range(2 * MAX_ATTEMPTS):  # far past the limit other failures get
        site.refusal = (429, 401, 403)[attempt % 3]
        wait_for(processor.run_once, timeout=5, interval=0.005, message="the retried event")
    row = _updated_row(server, site)
    assert row.processed_at is None and row.attempts > 2 * MAX_ATTEMPTS and "403" in row.error
    assert events(server) == []

    site.refusal = None
    wait_for(processor.run_once, timeout=5, interval=0.005, message="the event once Jira answers")
    [data] = [b["data"] for b in bodies(server)]
    assert data["timestamp"] == 5 and data["fields"][0]["value"] == {"current": "Renamed", "previous": "Demo project"}
    [event] = events(server)
    assert len(deliveries(server, event.id)) == 1
    assert _updated_row(server, site).processed_at is not None


def test_a_refusing_jira_stops_being_asked_once_the_tenant_is_uninstalled(manual):
    server, site, processor = manual
    site.refusal = 401
    send(site, server, "project_updated")
    assert processor.run_once()
    assert _updated_row(server, site).processed_at is None
    assert site.install(server.url, event="uninstalled", body=site.lifecycle_body("uninstalled")).status_code == 204
    asked = len(site.calls)
    wait_for(processor.run_once, timeout=5, interval=0.005, message="the row after the uninstall")
    row = _updated_row(server, site)
    assert row.processed_at is not None and "uninstalled" in row.error
    assert len(site.calls) == asked and events(server) == []


def test_a_final_jira_refusal_is_given_up_after_a_few_attempts(manual):
    server, site, processor = manual
    site.refusal = 400  # our request is at fault: asking again will not help
    send(site, server, "project_updated")
    for _ in range(MAX_ATTEMPTS):
        wait_for(processor.run_once, timeout=5, interval=0.005, message="the retried event")
    row = _updated_row(server, site)
    assert row.processed_at is not None and row.attempts == MAX_ATTEMPTS and "400" in row.error
    assert not processor.run_once()


# Receipt: de-duplication and refusals.


def test_a_retry_with_the_same_identifier_does_not_double_anything(db_addon, db_site):
    add_webhook(db_addon, db_site)
    db_site.update_project(10000, name="Once")
    identifier = str(uuid.uuid4())
    for _ in range(3):
        send(db_site, db_addon, "project_updated", identifier=identifier)
    wait_inbox_done(db_addon, db_site)
    assert len([r for r in inbox(db_addon, db_site) if r.event == "project_updated"]) == 1
    assert count(db_addon, SeenJiraWebhook) == 1
    [event] = events(db_addon)
    assert len(deliveries(db_addon, event.id)) == 1


def test_concurrent_duplicates_store_one_event(db_addon, db_site):
    identifier = str(uuid.uuid4())
    statuses: list[int] = []
    barrier = threading.Barrier(8)

    def deliver() -> None:
        barrier.wait()
        statuses.append(db_site.send_webhook(db_addon.url, "project_updated", 10000, identifier=identifier)
                        .status_code)

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [204] * 8
    assert len([r for r in inbox(db_addon, db_site) if r.event == "project_updated"]) == 1


def test_identifiers_are_per_tenant(addon, site, atlassian):
    other = atlassian.new_site()
    other.add_project(10000, "DEMO", "Demo project")
    install_and_enable(other, addon)
    send(site, addon, "project_updated", identifier="shared-id")
    send(other, addon, "project_updated", identifier="shared-id")
    assert count(addon, JiraInboxEvent, JiraInboxEvent.event == "project_updated") == 2


def test_a_project_id_given_as_a_string_is_accepted(addon, site):
    project = {**site.webhook_project(10000), "id": "10000"}
    send(site, addon, "project_updated", project=project)
    [row] = [r for r in inbox(addon, site) if r.event == "project_updated"]
    assert row.project_id == "10000"


def test_an_unknown_event_is_404(addon, site):
    response = site.call(addon.url, "POST", "/events/jira/issue_created", json_body={"project": {"id": 1}})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(("body", "path"), [
    ([], "body"),
    ({"timestamp": 1}, "project"),
    ({"project": "10000"}, "project"),
    ({"project": {"key": "DEMO"}}, "project.id"),
    ({"project": {"id": "DEMO"}}, "project.id"),
    ({"project": {"id": True}}, "project.id"),
    ({"project": {"id": 0}}, "project.id"),
    ({"project": {"id": 10000}, "timestamp": "yesterday"}, "timestamp"),
    ({"project": {"id": 10000.0}}, "project.id"),
    ({"project": {"id": float("nan")}}, "project.id"),
    ({"project": {"id": 10000}, "timestamp": 1675182117615.5}, "timestamp"),
    ({"project": {"id": 10000}, "timestamp": float("inf")}, "timestamp"),
])
def test_bodies_that_do_not_fit_are_422_and_store_nothing(addon, site, body, path):
    response = site.call(addon.url, "POST", "/events/jira/project_updated", data=json.dumps(body).encode(),
                         headers={"X-Atlassian-Webhook-Identifier": "id-1", "Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["message"].startswith(f"{path}: ")
    assert count(addon, JiraInboxEvent, JiraInboxEvent.event == "project_updated") == 0
    assert count(addon, SeenJiraWebhook) == 0


def test_numbers_with_a_fraction_elsewhere_in_the_body_are_kept(addon, site):
    wait_inbox_done(addon, site)
    site.update_project(10000, name="Renamed")
    body = {"timestamp": 3, "project": {**site.webhook_project(10000), "avatarScale": 1.25, "odd": float("nan")}}
    response = site.call(addon.url, "POST", "/events/jira/project_updated", data=json.dumps(body).encode(),
                         headers={"Content-Type": "application/json"})
    assert response.status_code == 204, response.text
    [*_, row] = wait_inbox_done(addon, site)
    assert row.error is None and json.loads(row.body)["project"]["avatarScale"] == 1.25
    assert [f["value"]["current"] for f in bodies(addon)[0]["data"]["fields"]] == ["Renamed"]


def test_bad_json_is_400(addon, site):
    response = site.call(addon.url, "POST", "/events/jira/project_created", data=b"{",
                         headers={"Content-Type": "application/json"})
    assert response.status_code == 400


def test_authentication_and_disabled_tenant(addon, site):
    body = {"timestamp": 1, "project": site.webhook_project(10000)}
    path = "/events/jira/project_updated"
    assert requests.post(addon.url + path, json=body, timeout=10).status_code == 401
    assert site.call(addon.url, "POST", path, json_body=body, token=site.context_token()).status_code == 401
    assert site.call(addon.url, "POST", path, json_body=body, qsh_value="0" * 64).status_code == 401
    assert site.call(addon.url, "POST", "/lifecycle/disabled", json_body={}).status_code == 204
    assert site.send_webhook(addon.url, "project_updated", 10000).status_code == 403
    assert count(addon, JiraInboxEvent, JiraInboxEvent.event == "project_updated") == 0


# Housekeeping.


def test_prune_drops_week_old_processed_rows_and_identifiers(addon, site):
    wait_inbox_done(addon, site)
    tid = tenant_id(addon, site)
    old = utcnow() - dt.timedelta(days=8)
    with addon.sessions() as session, session.begin():
        session.add_all([
            JiraInboxEvent(tenant_id=tid, event="project_updated", project_id="1", body="{}", processed_at=old),
            JiraInboxEvent(tenant_id=tid, event="project_updated", project_id="2", body="{}", received_at=old,
                           not_before=utcnow() + dt.timedelta(hours=1)),
            SeenJiraWebhook(tenant_id=tid, identifier="old", seen_at=old),
            SeenJiraWebhook(tenant_id=tid, identifier="new"),
        ])
    prune(addon.runtime)
    with addon.sessions() as session:
        assert session.scalars(select(SeenJiraWebhook.identifier)).all() == ["new"]
        rows = session.scalars(select(JiraInboxEvent.project_id).where(JiraInboxEvent.project_id != "")).all()
    assert rows == ["2"]  # unprocessed rows are never pruned


def test_an_expired_identifier_counts_as_new(addon, site):
    tid = tenant_id(addon, site)
    with addon.sessions() as session, session.begin():
        session.add(SeenJiraWebhook(tenant_id=tid, identifier="again", seen_at=utcnow() - dt.timedelta(days=8)))
    send(site, addon, "project_updated", identifier="again")
    assert count(addon, JiraInboxEvent, JiraInboxEvent.event == "project_updated") == 1


def test_retry_policy_backs_off_and_caps():
    policy = RetryPolicy(base_s=1, max_s=300)
    assert 0.8 <= policy.delay(1) <= 1.2
    assert 6.4 <= policy.delay(4) <= 9.6
    assert 240 <= policy.delay(50) <= 360


def test_an_event_body_is_stored_compactly(addon, site):
    send(site, addon, "project_updated", timestamp=7)
    [row] = [r for r in inbox(addon, site) if r.event == "project_updated"]
    assert json.loads(row.body) == {"timestamp": 7, "project": site.webhook_project(10000)}
    assert count(addon, Event) == 0
