"""Jira project attributes as fields with negative ids (CONTRACT §5.2)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from addon.intake.jira_attributes import (
    ATTRIBUTE_IDS,
    ATTRIBUTES,
    CATEGORY,
    DEFAULT_ASSIGNEE,
    DESCRIPTION,
    KEY,
    LEAD,
    NAME,
    TYPE,
    URL,
    attributes_from_rest,
    attributes_from_webhook,
    diff_attributes,
    dump_snapshot,
    fill_missing,
    load_snapshot,
    missing_attributes,
)

REST_PROJECT: dict[str, Any] = {
    "self": "https://example.atlassian.net/rest/api/3/project/13647",
    "id": "13647",
    "key": "DEMO",
    "name": "Demo project",
    "projectTypeKey": "software",
    "url": "https://example.com/demo",
    "lead": {"accountId": "5b10ac8d82e05b22cc7d4ef5", "displayName": "Ann"},
    "assigneeType": "PROJECT_LEAD",
    "projectCategory": {"id": "10000", "name": "Development"},
    "description": "A demo",
}

FULL = {
    KEY: "DEMO",
    NAME: "Demo project",
    TYPE: "software",
    URL: "https://example.com/demo",
    LEAD: "5b10ac8d82e05b22cc7d4ef5",
    DEFAULT_ASSIGNEE: "PROJECT_LEAD",
    CATEGORY: "Development",
    DESCRIPTION: "A demo",
}


def test_table() -> None:
    assert [(a.id, a.name, a.type) for a in ATTRIBUTES] == [
        (-1, "Key", "text"),
        (-2, "Name", "text"),
        (-3, "Type", "text"),
        (-4, "Url", "text"),
        (-5, "Lead", "user"),
        (-6, "Default Assignee", "text"),
        (-7, "Category", "list"),
        (-9, "Description", "multiline_text"),
    ]
    assert ATTRIBUTE_IDS == {-1, -2, -3, -4, -5, -6, -7, -9}


def test_from_rest() -> None:
    assert attributes_from_rest(REST_PROJECT) == FULL


def test_from_rest_empty_is_null_and_no_url_or_category_is_null() -> None:
    sparse = {
        "key": "DEMO",
        "name": "Demo",
        "projectTypeKey": "business",
        "url": "",
        "description": "",
        "lead": None,
        "assigneeType": "UNASSIGNED",
    }
    assert attributes_from_rest(sparse) == {
        KEY: "DEMO", NAME: "Demo", TYPE: "business", URL: None, LEAD: None,
        DEFAULT_ASSIGNEE: "UNASSIGNED", CATEGORY: None, DESCRIPTION: None,
    }  # fmt: skip


def test_from_rest_leaves_out_what_the_answer_does_not_state() -> None:
    """project/search may lack e.g. assigneeType: unknown (left out), not null; a missing url or
    projectCategory is Jira's way of saying "none"."""
    search_result = {k: v for k, v in REST_PROJECT.items() if k not in ("assigneeType", "url", "projectCategory")}
    expected = {**FULL, URL: None, CATEGORY: None}
    del expected[DEFAULT_ASSIGNEE]
    assert attributes_from_rest(search_result) == expected
    assert attributes_from_rest({"id": "1"}) == {URL: None, CATEGORY: None}


def test_from_rest_tolerates_odd_shapes() -> None:
    odd = {"key": 5, "name": None, "projectTypeKey": [], "url": 1, "lead": "someone", "assigneeType": 2,
           "projectCategory": [], "description": {"type": "doc"}}
    assert attributes_from_rest(odd) == dict.fromkeys(ATTRIBUTE_IDS)


WEBHOOK_PROJECT = {
    "self": "https://example.atlassian.net/rest/api/2/project/13647",
    "id": 13647,
    "key": "DEMO",
    "name": "Demo project",
    "projectLead": {"accountId": "5b10ac8d82e05b22cc7d4ef5", "displayName": "Ann"},
    "assigneeType": "admin.assignee.type.unassigned",
}


def test_from_webhook_only_what_the_body_has() -> None:
    attributes = attributes_from_webhook(WEBHOOK_PROJECT)
    assert attributes == {
        KEY: "DEMO",
        NAME: "Demo project",
        LEAD: "5b10ac8d82e05b22cc7d4ef5",
        DEFAULT_ASSIGNEE: "UNASSIGNED",
    }
    assert missing_attributes(attributes) == {TYPE, URL, CATEGORY, DESCRIPTION}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("admin.assignee.type.unassigned", "UNASSIGNED"),
        ("admin.assignee.type.project.lead", "PROJECT_LEAD"),
        ("PROJECT_LEAD", "PROJECT_LEAD"),
        ("UNASSIGNED", "UNASSIGNED"),
        ("COMPONENT_LEAD", "COMPONENT_LEAD"),
        ("", None),
    ],
)
def test_webhook_assignee_type(raw: str, expected: str | None) -> None:
    assert attributes_from_webhook({"assigneeType": raw}) == {DEFAULT_ASSIGNEE: expected}


def test_from_webhook_full_body() -> None:
    body = {
        **WEBHOOK_PROJECT,
        "projectTypeKey": "software",
        "url": "",
        "description": "Text",
        "projectCategory": {"name": "Development"},
        "assigneeType": "admin.assignee.type.project.lead",
    }
    attributes = attributes_from_webhook(body)
    assert attributes == {**FULL, URL: None, DESCRIPTION: "Text"}
    assert missing_attributes(attributes) == set()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"projectLead": None}, {LEAD: None}),
        ({"projectLead": {"displayName": "Ann"}}, {}),
        ({"projectLead": {"accountId": ""}}, {LEAD: None}),
        ({"lead": {"accountId": "abc"}}, {LEAD: "abc"}),
        ({"projectCategory": None}, {CATEGORY: None}),
        ({"projectCategory": {"id": "1"}}, {}),
        ({"description": None}, {DESCRIPTION: None}),
        ({"key": 5, "name": ["x"]}, {}),
        ({}, {}),
    ],
)
def test_from_webhook_edge_cases(body: dict[str, Any], expected: dict[int, str | None]) -> None:
    assert attributes_from_webhook(body) == expected


def test_fill_missing_keeps_the_body_and_fetches_the_rest() -> None:
    partial = attributes_from_webhook({**WEBHOOK_PROJECT, "name": "Renamed"})
    merged = fill_missing(partial, attributes_from_rest(REST_PROJECT))
    assert merged == {**FULL, NAME: "Renamed", DEFAULT_ASSIGNEE: "UNASSIGNED"}
    assert list(merged) == [a.id for a in ATTRIBUTES]
    assert missing_attributes(merged) == set()


def test_diff_in_table_order() -> None:
    new = {**FULL, DESCRIPTION: "New text", KEY: "DEMO2", CATEGORY: None}
    assert diff_attributes(FULL, new) == [
        {"id": -1, "name": "Key", "type": "text", "value": {"current": "DEMO2", "previous": "DEMO"}},
        {"id": -7, "name": "Category", "type": "list", "value": {"current": None, "previous": "Development"}},
        {
            "id": -9,
            "name": "Description",
            "type": "multiline_text",
            "value": {"current": "New text", "previous": "A demo"},
        },
    ]


def test_diff_nothing_changed() -> None:
    assert diff_attributes(FULL, dict(FULL)) == []


def test_diff_empty_string_counts_as_null() -> None:
    assert diff_attributes({**FULL, URL: ""}, {**FULL, URL: None}) == []
    assert diff_attributes({**FULL, URL: None}, {**FULL, URL: "https://x"})[0]["value"] == {
        "current": "https://x",
        "previous": None,
    }


def test_diff_skips_attributes_not_recorded_on_both_sides() -> None:
    old = {k: v for k, v in FULL.items() if k != DESCRIPTION}
    assert diff_attributes(old, {**FULL, DESCRIPTION: "changed"}) == []


def test_diff_lead_is_user_typed() -> None:
    fields = diff_attributes(FULL, {**FULL, LEAD: "other"})
    assert fields == [{"id": -5, "name": "Lead", "type": "user", "value": {"current": "other", "previous": FULL[LEAD]}}]


def test_snapshot_round_trip() -> None:
    text = dump_snapshot(FULL)
    assert json.loads(text) == {str(k): v for k, v in FULL.items()}
    assert list(json.loads(text)) == ["-1", "-2", "-3", "-4", "-5", "-6", "-7", "-9"]
    assert load_snapshot(text) == FULL
    assert load_snapshot(text.encode()) == FULL
    assert load_snapshot(json.loads(text)) == FULL


def test_snapshot_partial_and_unknown_ids() -> None:
    assert load_snapshot('{"-1": "DEMO", "-8": "x", "-9": ""}') == {KEY: "DEMO", DESCRIPTION: None}
    assert dump_snapshot({KEY: "DEMO", -8: "x"}) == '{"-1":"DEMO"}'


def test_snapshot_unicode_kept() -> None:
    assert load_snapshot(dump_snapshot({NAME: "Démo ☃"})) == {NAME: "Démo ☃"}


@pytest.mark.parametrize("bad", ["[]", '"x"', '{"key": "DEMO"}', '{"-1": 5}', "{", b"\xff"])
def test_snapshot_rejects_garbage(bad: str | bytes) -> None:
    with pytest.raises(ValueError):
        load_snapshot(bad)
