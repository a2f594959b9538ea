"""`POST /events/projectrak/field-changes` end to end: real HTTP, the fake Jira, the stored §6.1 body."""

from __future__ import annotations

import json
import time

import pytest
import requests

from addon.storage.models import Delivery, Event
from tests.support.addon_server import AddonServer
from tests.support.atlassian import FakeAtlassian, FakeSite
from tests.support.intake import (
    FIELD_CHANGES,
    add_webhook,
    bodies,
    count,
    deliveries,
    events,
    install_and_enable,
    post_changes,
    wait_inbox_done,
)

CONTRACT_EXAMPLE = {
    "project": {"id": 13647},
    "timestamp": 1675182117615,
    "changes": [
        {"field": {"id": 12345, "name": "Budget", "type": "number"}, "previous": 25000, "current": 23000},
        {"field": {"id": 54321, "name": "Status", "type": "status"}, "previous": {"name": "On track"},
         "current": {"name": "Done"}},
    ],
}


@pytest.fixture
def demo_site(atlassian: FakeAtlassian, db_addon: AddonServer) -> FakeSite:
    site = atlassian.new_site()
    site.add_project(13647, "DEMO", "Demo project")
    install_and_enable(site, db_addon)
    return site


def nothing_stored(addon: AddonServer) -> bool:
    return count(addon, Event) == 0 and count(addon, Delivery) == 0


# The exact body.


def test_contract_example_is_stored_byte_for_byte(db_addon, demo_site):
    webhooks = [add_webhook(db_addon, demo_site, name=f"receiver {i}") for i in range(2)]
    add_webhook(db_addon, demo_site, enabled=False, name="disabled")

    response = post_changes(demo_site, db_addon, CONTRACT_EXAMPLE, sub="557058:f58131cb-b67d-43c7-b30d-6b58d40bd077")

    assert response.status_code == 202, response.text
    answer = response.json()
    [event] = events(db_addon)
    assert answer == {"event_id": event.id, "deliveries": 2}
    expected = {"data": {
        "event": "updated",
        "user": "557058:f58131cb-b67d-43c7-b30d-6b58d40bd077",
        "timestamp": 1675182117615,
        "project": {"id": 13647, "key": "DEMO", "name": "Demo project"},
        "fields": [
            {"id": 12345, "name": "Budget", "type": "number", "value": {"current": "23000", "previous": "25000"}},
            {"id": 54321, "name": "Status", "type": "status", "value": {"current": "Done", "previous": "On track"}},
        ],
    }}
    assert json.loads(event.body) == expected
    assert event.body == json.dumps(expected, separators=(",", ":"))  # compact, key order as in §6.1
    assert event.source == "projectrak" and event.project_id == "13647"
    assert sorted(d.webhook_id for d in deliveries(db_addon, event.id)) == webhooks
    assert len({d.message_id for d in deliveries(db_addon, event.id)}) == 2


def test_project_by_key_and_default_timestamp(addon, site):
    add_webhook(addon, site)
    before = int(time.time() * 1000)
    body = {"project": {"key": "OPS"}, "changes": [
        {"field": {"id": 1, "name": "Budget", "type": "number"}, "previous": None, "current": "1.50"}]}
    response = post_changes(site, addon, body, sub="someone")
    after = int(time.time() * 1000)
    assert response.status_code == 202, response.text
    [data] = [b["data"] for b in bodies(addon)]
    assert data["project"] == {"id": 10001, "key": "OPS", "name": "Operations"}
    assert data["user"] == "someone"
    assert before <= data["timestamp"] <= after
    assert data["fields"] == [{"id": 1, "name": "Budget", "type": "number", "value": {"current": "1.5",
                                                                                      "previous": None}}]


def test_project_id_as_a_string(addon, site):
    body = {"project": {"id": "10000"}, "changes": [
        {"field": {"id": 1, "name": "Note", "type": "text"}, "previous": "a", "current": "b"}]}
    response = post_changes(site, addon, body)
    assert response.status_code == 202, response.text
    assert response.json()["deliveries"] == 0  # the event is stored even when no webhook is configured
    assert bodies(addon)[0]["data"]["project"] == {"id": 10000, "key": "DEMO", "name": "Demo project"}


def test_every_type_in_one_request_keeps_the_input_order(addon, site):
    site.time_tracking = {"workingHoursPerDay": 6, "workingDaysPerWeek": 4}
    adf = {"type": "doc", "version": 1, "content": [{"type": "paragraph", "content": [{"type": "text",
                                                                                        "text": "Hi"}]}]}
    changes = [
        ("text", "Title", "old", "new"),
        ("multiline_text", "Notes", "*bold*", adf),
        ("number", "Budget", "25000", 23000.0),
        ("date", "Due", "2023-01-31", 1675182117615),
        ("date", "Start", "2023-02-01T23:30:00-05:00", None),
        ("duration", "Estimate", "2w 3d 4h 30m", "1d"),
        ("priority", "Priority", {"name": "High"}, "Low"),
        ("list", "Phase", {"value": "One"}, {"text": "Two"}),
        ("multi_list", "Tags", ["a", {"name": "b"}], []),
        ("user", "Owner", {"accountId": "acc-1"}, "acc-2"),
        ("multi_user", "Team", None, ["acc-1", {"accountId": "acc-3"}]),
        ("project", "Parent", "OPS", {"id": 10000}),
        ("multi_project", "Related", ["DEMO", 10001], [{"key": "OPS"}]),
        ("formula", "Computed", 1, 2),
        ("text", "Unchanged", "", None),
    ]
    body = {"project": {"id": 10000}, "timestamp": 0, "changes": [
        {"field": {"id": 100 + i, "name": name, "type": kind}, "previous": previous, "current": current}
        for i, (kind, name, previous, current) in enumerate(changes)]}
    response = post_changes(site, addon, body)
    assert response.status_code == 202, response.text
    fields = bodies(addon)[0]["data"]["fields"]
    day = 6 * 3_600_000  # the site's working day; its week has 4 of them
    estimate = 2 * 4 * day + 3 * day + 4 * 3_600_000 + 30 * 60_000
    assert [(f["id"], f["name"], f["type"], f["value"]["previous"], f["value"]["current"]) for f in fields] == [
        (100, "Title", "text", "old", "new"),
        (101, "Notes", "multiline_text", "*bold*", json.dumps(adf, separators=(",", ":"))),
        (102, "Budget", "number", "25000", "23000"),
        # 103: the same calendar date in two forms; 113: a formula; 114: "" and null are both empty.
        (104, "Start", "date", "2023-02-01", None),
        (105, "Estimate", "duration", str(estimate), str(day)),
        (106, "Priority", "priority", "High", "Low"),
        (107, "Phase", "list", "One", "Two"),
        (108, "Tags", "multi_list", ["a", "b"], []),
        (109, "Owner", "user", "acc-1", "acc-2"),
        (110, "Team", "multi_user", [], ["acc-1", "acc-3"]),
        (111, "Parent", "project", "10001", "10000"),
        (112, "Related", "multi_project", ["10000", "10001"], ["10001"]),
    ]
    assert list(fields[0]) == ["id", "name", "type", "value"] and list(fields[0]["value"]) == ["current", "previous"]


def test_default_time_tracking_reads_the_contract_example(addon, site):
    body = {"project": {"id": 10000}, "changes": [
        {"field": {"id": 7, "name": "Estimate", "type": "duration"}, "previous": None, "current": "2w 3d 4h 30m"}]}
    assert post_changes(site, addon, body).status_code == 202
    assert bodies(addon)[0]["data"]["fields"][0]["value"] == {"current": "390600000", "previous": None}


def _post_raw(site: FakeSite, addon: AddonServer, text: str) -> requests.Response:
    """A body sent exactly as written (JSON number literals, or the bare NaN/Infinity Python's json writes)."""
    return site.call(addon.url, "POST", FIELD_CHANGES, data=text.encode(), sub="user-account",
                     headers={"Content-Type": "application/json"})


def test_json_numbers_keep_the_literal_they_were_sent_as(addon, site):
    adf = ('{"type":"doc","version":1,"content":[{"type":"table","attrs":{"width":0.30000000000000001,'
           '"layout":"default"},"content":[]}]}')
    text = ('{"project": {"id": 10000}, "changes": ['
            '{"field": {"id": 1, "name": "A", "type": "number"}, "previous": 0.1, "current": 0.30000000000000001},'
            '{"field": {"id": 2, "name": "B", "type": "number"}, "previous": 1.50, "current": 12345678901234567890.5},'
            '{"field": {"id": 3, "name": "C", "type": "number"}, "previous": -0.0, "current": 1e21},'
            '{"field": {"id": 4, "name": "D", "type": "duration"}, "previous": 1.5e3, "current": 2.0},'
            '{"field": {"id": 5, "name": "E", "type": "date"}, "previous": null, "current": 1675182117615.9},'
            f'{{"field": {{"id": 6, "name": "F", "type": "multiline_text"}}, "previous": null, "current": {adf}}}'
            ']}')
    response = _post_raw(site, addon, text)
    assert response.status_code == 202, response.text
    values = [(f["id"], f["value"]) for f in bodies(addon)[0]["data"]["fields"]]
    assert values == [
        (1, {"current": "0.30000000000000001", "previous": "0.1"}),
        (2, {"current": "12345678901234567890.5", "previous": "1.5"}),
        (3, {"current": "1000000000000000000000", "previous": "0"}),
        (4, {"current": "2", "previous": "1500"}),
        (5, {"current": "2023-01-31", "previous": None}),
        (6, {"current": adf, "previous": None}),
    ]


@pytest.mark.parametrize(("text", "path"), [
    ('{"project": {"id": 10000.0}, "changes": []}', "project.id"),
    ('{"project": {"id": 1e4}, "changes": []}', "project.id"),
    ('{"project": {"id": 10000}, "timestamp": 1675182117615.0, "changes": []}', "timestamp"),
    ('{"project": {"id": 10000}, "changes": [{"field": {"id": 1.0, "name": "N", "type": "text"}}]}',
     "changes[0].field.id"),
    ('{"project": {"id": 10000}, "changes": [{"field": {"id": 1, "name": "P", "type": "project"}, '
     '"previous": null, "current": 10000.0}]}', "changes[0].current"),
    ('{"project": {"id": 10000}, "changes": [{"field": {"id": 1, "name": "D", "type": "duration"}, '
     '"previous": null, "current": 1.5}]}', "changes[0].current"),
    ('{"project": {"id": 10000}, "changes": [{"field": {"id": 1, "name": "N", "type": "number"}, '
     '"previous": null, "current": 1e400}]}', "changes[0].current"),
])
def test_a_fraction_where_an_integer_is_required_is_422(addon, site, text, path):
    response = _post_raw(site, addon, text)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["message"].startswith(f"{path}: ")
    assert nothing_stored(addon)


def _number_change(index: int, value: object, kind: str = "number") -> dict:
    return {"field": {"id": index, "name": f"F{index}", "type": kind}, "previous": None, "current": value}


@pytest.mark.parametrize(("body", "path"), [
    ({"project": float("nan")}, "project"),
    ({"project": {"id": float("inf")}, "changes": []}, "project.id"),
    ({"project": {"id": 10000}, "timestamp": float("nan"), "changes": []}, "timestamp"),
    ({"project": {"id": 10000}, "changes": [_number_change(1, 5), _number_change(2, float("nan"))]},
     "changes[1].current"),
    ({"project": {"id": 10000}, "changes": [_number_change(1, float("inf"))]}, "changes[0].current"),
    ({"project": {"id": 10000}, "changes": [_number_change(1, float("-inf"))]}, "changes[0].current"),
    ({"project": {"id": 10000}, "changes": [_number_change(1, float("nan"), "date")]}, "changes[0].current"),
    ({"project": {"id": 10000}, "changes": [_number_change(1, float("inf"), "duration")]}, "changes[0].current"),
    ({"project": {"id": 10000}, "changes": [_number_change(1, {"type": "doc", "n": float("nan")},
                                                            "multiline_text")]}, "changes[0].current"),
    ({"project": {"id": 10000}, "changes": [_number_change(1, [float("nan")], "multi_project")]},
     "changes[0].current[0]"),
])
def test_nan_and_infinities_as_python_writes_them_are_422_naming_the_path(addon, site, body, path):
    text = json.dumps(body)
    assert "NaN" in text or "Infinity" in text  # what Python's json (and requests' data=) send
    response = _post_raw(site, addon, text)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_body" and error["message"].startswith(f"{path}: "), error["message"]
    assert nothing_stored(addon)


# Nothing to send.


@pytest.mark.parametrize("changes", [
    [],
    [{"field": {"id": 1, "name": "F", "type": "formula"}, "previous": 1, "current": {"anything": [2]}}],
    [{"field": {"id": 1, "name": "N", "type": "number"}, "previous": "1.50", "current": 1.5},
     {"field": {"id": 2, "name": "T", "type": "text"}, "previous": "", "current": None},
     {"field": {"id": 3, "name": "D", "type": "date"}, "previous": "2023-01-31T10:00:00Z", "current": "2023-01-31"},
     {"field": {"id": 4, "name": "P", "type": "project"}, "previous": "DEMO", "current": 10000},
     {"field": {"id": 5, "name": "F", "type": "formula"}, "previous": None, "current": 3}],
], ids=["empty", "formula-only", "no-op"])
def test_nothing_changed_sends_and_stores_nothing(addon, site, changes):
    add_webhook(addon, site)
    response = post_changes(site, addon, {"project": {"id": 10000}, "changes": changes})
    assert response.status_code == 202, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"event_id": None, "deliveries": 0}
    assert nothing_stored(addon)


def test_nothing_to_send_is_still_checked_in_full(addon, site):
    formula = {"field": {"id": 1, "name": "F", "type": "formula"}, "previous": 1, "current": 2}
    unknown_project = post_changes(site, addon, {"project": {"id": 99999}, "changes": [formula]})
    assert unknown_project.status_code == 422 and unknown_project.json()["error"]["message"].startswith("project.id: ")
    bad_value = {"field": {"id": 2, "name": "N", "type": "number"}, "previous": "x", "current": "x"}
    response = post_changes(site, addon, {"project": {"id": 10000}, "changes": [formula, bad_value]})
    assert response.status_code == 422 and response.json()["error"]["message"].startswith("changes[1].previous: ")
    assert nothing_stored(addon)


# Refused requests.


def _change(field: object = None, **extra: object) -> dict:
    return {"field": field or {"id": 1, "name": "Budget", "type": "number"}, "previous": 1, "current": 2, **extra}


@pytest.mark.parametrize(("body", "path"), [
    ([], "body"),
    ("text", "body"),
    ({}, "project"),
    ({"project": 10000, "changes": []}, "project"),
    ({"project": {}, "changes": []}, "project"),
    ({"project": {"id": True}, "changes": []}, "project.id"),
    ({"project": {"id": -5}, "changes": []}, "project.id"),
    ({"project": {"id": "12a"}, "changes": []}, "project.id"),
    ({"project": {"id": 1.5}, "changes": []}, "project.id"),
    ({"project": {"key": "1DEMO"}, "changes": []}, "project.key"),
    ({"project": {"key": 7}, "changes": []}, "project.key"),
    ({"project": {"id": 10000}, "timestamp": "1675182117615", "changes": []}, "timestamp"),
    ({"project": {"id": 10000}, "timestamp": True, "changes": []}, "timestamp"),
    ({"project": {"id": 10000}, "timestamp": -1, "changes": []}, "timestamp"),
    ({"project": {"id": 10000}, "timestamp": 1.5, "changes": []}, "timestamp"),
    ({"project": {"id": 10000}, "timestamp": 10**20, "changes": []}, "timestamp"),
    ({"project": {"id": 10000}}, "changes"),
    ({"project": {"id": 10000}, "changes": {"a": 1}}, "changes"),
    ({"project": {"id": 10000}, "changes": [_change()] * 501}, "changes"),
    ({"project": {"id": 10000}, "changes": [_change(), _change(), _change(),
                                            _change({"id": 4, "name": "X", "type": "money"})]},
     "changes[3].field.type"),
    ({"project": {"id": 10000}, "changes": [_change(current=True)]}, "changes[0].current"),
    ({"project": {"id": 10000}, "changes": [_change(), _change({"id": "2", "name": "X", "type": "text"})]},
     "changes[1].field.id"),
    ({"project": {"id": 10000}, "changes": [{"previous": 1}]}, "changes[0].field"),
    ({"project": {"id": 10000}, "changes": [_change({"id": 1, "name": "L", "type": "multi_list"},
                                                    previous=["a", None])]}, "changes[0].previous[1]"),
])
def test_shape_errors_are_422_naming_the_path(addon, site, body, path):
    add_webhook(addon, site)
    response = post_changes(site, addon, body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_body"
    assert error["message"].startswith(f"{path}: "), error["message"]
    assert nothing_stored(addon)


@pytest.mark.parametrize(("project", "path"), [({"id": 99999}, "project.id"), ({"key": "NOPE"}, "project.key")])
def test_a_project_jira_does_not_know_is_422(addon, site, project, path):
    add_webhook(addon, site)
    response = post_changes(site, addon, {"project": project, "changes": [_change()]})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["message"].startswith(f"{path}: ")
    assert nothing_stored(addon)


@pytest.mark.parametrize(("kind", "value", "path"), [
    ("project", "NOPE", "changes[2].current"),
    ("project", {"key": "NOPE"}, "changes[2].current.key"),
    ("multi_project", ["OPS", "NOPE"], "changes[2].current[1]"),
])
def test_an_unknown_key_in_a_project_value_is_422_naming_the_value(addon, site, kind, value, path):
    change = _change({"id": 3, "name": "Parent", "type": kind}, previous=None, current=value)
    response = post_changes(site, addon, {"project": {"id": 10000}, "changes": [_change(), _change(), change]})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["message"] == f"{path}: no project has the key 'NOPE'"
    assert nothing_stored(addon)


@pytest.mark.parametrize("data", [b"{not json", b'{"project": nan}', b'{"a": 1.}', b"\xff\xfe", b"\xef\xbb\xbf{}",
                                  b""])
def test_unparseable_bodies_are_400(addon, site, data):
    response = site.call(addon.url, "POST", FIELD_CHANGES, data=data, headers={"Content-Type": "application/json"},
                         sub="user-account")
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_json"
    assert nothing_stored(addon)


def test_a_body_over_1_mib_is_413(addon, site):
    body = {"project": {"id": 10000}, "changes": [_change({"id": 1, "name": "T", "type": "text"},
                                                          previous="a", current="x" * (1024 * 1024))]}
    response = post_changes(site, addon, body)
    assert response.status_code == 413
    assert nothing_stored(addon)


def test_a_context_token_is_401(addon, site):
    response = site.call(addon.url, "POST", FIELD_CHANGES, json_body=CONTRACT_EXAMPLE, token=site.context_token())
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert nothing_stored(addon)


def test_a_token_without_sub_is_401(addon, site):
    response = post_changes(site, addon, {"project": {"id": 10000}, "changes": [_change()]}, sub=None)
    assert response.status_code == 401
    assert "sub" in response.json()["error"]["message"]
    assert nothing_stored(addon)


def test_no_token_and_a_wrong_secret_are_401(addon, site):
    body = {"project": {"id": 10000}, "changes": [_change()]}
    assert requests.post(addon.url + FIELD_CHANGES, json=body, timeout=10).status_code == 401
    assert post_changes(site, addon, body, secret="not-the-shared-secret-" * 3).status_code == 401
    assert nothing_stored(addon)


def test_a_disabled_tenant_is_403(addon, site):
    add_webhook(addon, site)
    assert site.call(addon.url, "POST", "/lifecycle/disabled", json_body={}).status_code == 204
    response = post_changes(site, addon, {"project": {"id": 10000}, "changes": [_change()]})
    assert response.status_code == 403
    assert nothing_stored(addon)


# Jira down, and the per-tenant cache.


def test_jira_down_is_503_and_stores_nothing(addon, site):
    add_webhook(addon, site)
    wait_inbox_done(addon, site)  # the install snapshot has primed the cache with DEMO and OPS
    site.add_project(10002, "NEW", "Brand new")
    site.down = True
    response = post_changes(site, addon, {"project": {"id": 10002}, "changes": [_change()]})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "jira_unavailable"
    assert int(response.headers["Retry-After"]) > 0
    duration = _change({"id": 2, "name": "Estimate", "type": "duration"}, previous="1h", current="2d")
    response = post_changes(site, addon, {"project": {"id": 10000}, "changes": [duration]})
    assert response.status_code == 503  # the time-tracking settings are not cached yet
    assert nothing_stored(addon)

    site.down = False
    assert post_changes(site, addon, {"project": {"id": 10002}, "changes": [_change()]}).status_code == 202
    assert count(addon, Event) == 1


def test_projects_come_from_the_cache_while_jira_is_down(addon, site):
    wait_inbox_done(addon, site)
    site.down = True
    response = post_changes(site, addon, {"project": {"key": "DEMO"}, "changes": [_change()]})
    assert response.status_code == 202, response.text
    assert bodies(addon)[0]["data"]["project"] == {"id": 10000, "key": "DEMO", "name": "Demo project"}


def test_project_updated_refreshes_the_cached_name(addon, site):
    wait_inbox_done(addon, site)
    assert post_changes(site, addon, {"project": {"id": 10000}, "changes": [_change()]}).status_code == 202
    site.update_project(10000, name="Renamed demo", key="DEMO2")
    assert site.send_webhook(addon.url, "project_updated", 10000).status_code == 204
    assert post_changes(site, addon, {"project": {"id": 10000}, "changes": [_change()]}).status_code == 202
    assert [b["data"]["project"] for b in bodies(addon) if b["data"]["fields"][0]["id"] == 1] == [
        {"id": 10000, "key": "DEMO", "name": "Demo project"},
        {"id": 10000, "key": "DEMO2", "name": "Renamed demo"},
    ]


def test_the_tenant_is_fixed_by_the_token(addon, site, atlassian):
    other = atlassian.new_site()
    other.add_project(10000, "OTHER", "Other site's project")
    install_and_enable(other, addon)
    add_webhook(addon, site)
    response = post_changes(other, addon, {"project": {"id": 10000}, "changes": [_change()]})
    assert response.json()["deliveries"] == 0  # the webhook belongs to the first site
    assert bodies(addon, other)[0]["data"]["project"]["key"] == "OTHER"
    assert bodies(addon, site) == []


# Huge and long numbers: 422 naming them, at a cost linear in their length. Before, `1e999999999` as epoch ms
# raised decimal.Overflow (a 500), an integer past 4,300 digits was a 400 as if the JSON were malformed, and a 1
# followed by 100,000 zeros cost 13 s of CPU.
LONG = "1" + "0" * 100_000
HUGE_NUMBERS = [
    ('"timestamp": 1' + "0" * 5000, "timestamp", "expected an integer number of epoch milliseconds"),
    ('"timestamp": 1e999999999', "timestamp", "expected an integer number of epoch milliseconds"),
    ('"changes": [{"field": {"id": 1' + "0" * 5000 + ', "name": "N", "type": "number"}, "current": 1}]',
     "changes[0].field.id", "expected an integer, got a number"),
    ('"changes": [{"field": {"id": 1, "name": "D", "type": "date"}, "current": 1e999999999}]',
     "changes[0].current", "epoch milliseconds out of range"),
    ('"changes": [{"field": {"id": 1, "name": "D", "type": "date"}, "current": -1e999999999}]',
     "changes[0].current", "epoch milliseconds out of range"),
    ('"changes": [{"field": {"id": 1, "name": "N", "type": "number"}, "current": "' + LONG + '"}]',
     "changes[0].current", "the number is too long"),
    ('"changes": [{"field": {"id": 1, "name": "N", "type": "number"}, "current": ' + LONG + "}]",
     "changes[0].current", "the number is too long"),
    ('"changes": [{"field": {"id": 1, "name": "N", "type": "number"}, "current": 1e-999999999}]',
     "changes[0].current", "the number is too long"),
    ('"changes": [{"field": {"id": 1, "name": "T", "type": "duration"}, "current": "' + "1d" * 450_000 + '"}]',
     "changes[0].current", "a Jira duration has at most 20 parts"),
    ('"changes": [{"field": {"id": 1, "name": "P", "type": "project"}, "current": ' + LONG + "}]",
     "changes[0].current", "expected a project id, key or object, got a number"),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("part", "where", "message"), HUGE_NUMBERS, ids=[w + "-" + m[:20] for _, w, m in HUGE_NUMBERS])
def test_huge_and_long_numbers_are_422_naming_them(db_addon, demo_site, part, where, message):
    body = '{"project": {"id": 13647}, ' + part + (', "changes": []' if '"changes"' not in part else "") + "}"
    response = post_changes(demo_site, db_addon, None, data=body.encode(),
                            headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text[:300]
    assert response.json()["error"] == {"code": "invalid_body", "message": f"{where}: {message}"}
    assert nothing_stored(db_addon)


def test_a_huge_project_id_is_422(db_addon, demo_site):
    for project_id in ("1e999999999", "1" + "0" * 5000, '"' + "1" * 25 + '"'):
        body = '{"project": {"id": ' + project_id + '}, "changes": []}'
        response = post_changes(demo_site, db_addon, None, data=body.encode(),
                                headers={"Content-Type": "application/json"})
        assert response.status_code == 422, response.text[:300]
        assert response.json()["error"]["message"].startswith("project.id: expected a positive project id")
