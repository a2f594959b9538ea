"""Random JSON at both intake endpoints, with valid tokens: only 2xx/4xx, and nothing stored for a refusal."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from addon.intake.fields import FIELD_TYPES
from addon.intake.jira_events import JIRA_EVENTS
from addon.storage.models import Event, JiraInboxEvent, SeenJiraWebhook
from tests.conftest import make_settings
from tests.support.addon_server import AddonServer
from tests.support.atlassian import FakeAtlassian, FakeSite
from tests.support.intake import FIELD_CHANGES, add_webhook, count, install_and_enable, wait_inbox_done

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def fuzz_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AddonServer, FakeSite]]:
    """One add-on and one site for all examples (Hypothesis runs many examples per test)."""
    atlassian = FakeAtlassian()
    database = tmp_path_factory.mktemp("fuzz") / "addon.db"
    addon = AddonServer(make_settings(atlassian, f"sqlite:///{database}"))
    site = atlassian.new_site()
    site.add_project(10000, "DEMO", "Demo project")
    site.add_project(10001, "OPS", "Operations")
    install_and_enable(site, addon)
    wait_inbox_done(addon, site)
    add_webhook(addon, site)
    yield addon, site
    addon.stop()
    atlassian.stop()


scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=-(2**70), max_value=2**70),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
                    st.sampled_from(["", "DEMO", "OPS", "NOPE", "10000", "1.50", "2w 3d", "2023-01-31", "1e999"]))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                           max_leaves=12)
project_refs = st.one_of(json_values, st.fixed_dictionaries({"id": st.one_of(st.sampled_from([10000, "10001", 99]),
                                                                             json_values)}),
                         st.fixed_dictionaries({"key": st.one_of(st.sampled_from(["DEMO", "OPS", "NOPE"]),
                                                                 json_values)}))
fields = st.fixed_dictionaries({"id": st.one_of(st.integers(-10, 10**6), json_values),
                                "name": st.one_of(st.just("Field"), json_values),
                                "type": st.one_of(st.sampled_from(sorted(FIELD_TYPES)), json_values)})
changes = st.lists(st.one_of(json_values, st.fixed_dictionaries({"field": fields, "previous": json_values,
                                                                 "current": json_values})), max_size=5)
plausible_values = st.one_of(
    st.none(), st.text(max_size=10), st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["DEMO", "10000", "1.50", "2w 3d 4h 30m", "2023-01-31", "2023-01-31T10:00:00Z", "acc-1"]),
    st.lists(st.sampled_from(["a", "OPS", "10001", "acc-2"]), max_size=3),
    st.fixed_dictionaries({"name": st.text(max_size=5)}), st.fixed_dictionaries({"accountId": st.text(max_size=5)}),
    st.fixed_dictionaries({"id": st.sampled_from([10000, "10001"])}),
)
plausible_changes = st.lists(st.fixed_dictionaries({
    "field": st.fixed_dictionaries({"id": st.integers(-10, 10**6), "name": st.just("Field"),
                                    "type": st.sampled_from(sorted(FIELD_TYPES))}),
    "previous": plausible_values, "current": plausible_values}), max_size=3)
change_bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({"project": project_refs, "changes": st.one_of(changes, json_values)},
                          optional={"timestamp": st.one_of(st.integers(-5, 2**64), json_values)}),
    st.fixed_dictionaries({"project": st.sampled_from([{"id": 10000}, {"key": "OPS"}, {"id": "10001"}]),
                           "changes": plausible_changes},
                          optional={"timestamp": st.integers(0, 2**45)}),
)
jira_bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({"project": st.one_of(json_values, st.fixed_dictionaries(
        {"id": st.one_of(st.sampled_from([10000, "10001", 424242]), json_values)},
        optional={"key": json_values, "name": json_values, "projectLead": json_values,
                  "assigneeType": json_values, "projectCategory": json_values}))},
                          optional={"timestamp": st.one_of(st.integers(-5, 2**64), json_values),
                                    "webhookEvent": json_values}),
)


def _assert_no_server_error(status: int, text: str) -> None:
    event(f"status {status}")  # shown by --hypothesis-show-statistics
    assert status < 500, text
    assert 200 <= status < 300 or 400 <= status < 500, text


@FUZZ
@given(body=change_bodies)
def test_random_field_changes(fuzz_env: tuple[AddonServer, FakeSite], body: Any) -> None:
    addon, site = fuzz_env
    before = count(addon, Event, Event.source == "projectrak")
    response = site.call(addon.url, "POST", FIELD_CHANGES, json_body=body, sub="fuzzer")
    _assert_no_server_error(response.status_code, response.text)
    after = count(addon, Event, Event.source == "projectrak")
    if response.status_code >= 400:
        assert after == before
        assert response.json()["error"]["code"]
    else:
        assert response.status_code == 202
        stored = response.json()["event_id"] is not None
        assert after == before + stored


@FUZZ
@given(event=st.sampled_from(JIRA_EVENTS), body=jira_bodies, identifier=st.one_of(st.none(), st.uuids()))
def test_random_jira_webhooks(fuzz_env: tuple[AddonServer, FakeSite], event: str, body: Any,
                              identifier: Any) -> None:
    addon, site = fuzz_env
    before = (count(addon, JiraInboxEvent), count(addon, SeenJiraWebhook))
    # Hypothesis replays examples: an identifier already seen is acknowledged and dropped.
    new = identifier is None or count(addon, SeenJiraWebhook, SeenJiraWebhook.identifier == str(identifier)) == 0
    headers = {} if identifier is None else {"X-Atlassian-Webhook-Identifier": str(identifier)}
    response = site.call(addon.url, "POST", f"/events/jira/{event}", json_body=body, headers=headers)
    _assert_no_server_error(response.status_code, response.text)
    after = (count(addon, JiraInboxEvent), count(addon, SeenJiraWebhook))
    if response.status_code >= 400:
        assert after == before
    else:
        assert response.status_code == 204
        assert after == ((before[0] + 1, before[1] + (identifier is not None)) if new else before)
