"""`GET /metrics` (CONTRACT §10.6) of a real `addon serve`: it adds up every process of the server (two web
processes on PostgreSQL, and the worker child), its counts match what the receivers saw, it reads the due
deliveries from the database at scrape time, and it answers only with the token (404 without one set)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from addon.app import create_app
from addon.process.runtime import Runtime
from tests.conftest import make_settings
from tests.receivers import Receiver
from tests.reliability.harness import (
    COLLECTOR,
    FIELD_CHANGES,
    PROJECT_ID,
    ProcessStack,
    create_hooks,
    new_site,
    wait_until,
)
from tests.support.atlassian import FakeAtlassian, FakeSite
from tests.support.http import free_port

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _token() -> str:
    token = secrets.token_urlsafe(24)
    COLLECTOR.add_secret(token, "METRICS_TOKEN")
    return token


def _scrape(url: str, token: str) -> Samples:
    answer = requests.get(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(answer.text) for s in family.samples}


def _value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples named `name` whose labels include `labels`."""
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


def _send(url: str, site: FakeSite, value: str) -> None:
    answer = site.call(url, "POST", FIELD_CHANGES, sub="account-1", json_body={
        "project": {"id": PROJECT_ID},
        "changes": [{"field": {"id": 1, "name": "Note", "type": "text"}, "previous": None, "current": value}]})
    assert answer.status_code == 202, answer.text


def _start(make_stack: Callable[..., ProcessStack], database_url: str, token: str | None, *args: str
           ) -> ProcessStack:
    stack = make_stack(database_url)
    if token is not None:
        stack.env["METRICS_TOKEN"] = token
    stack.start_server(*args)
    return stack


@pytest.mark.timeout(240)
def test_metrics_count_every_process_of_serve_as_the_receivers_saw(
        pg_url: str, atlassian: FakeAtlassian, receiver: Receiver, make_stack) -> None:
    token = _token()
    stack = _start(make_stack, pg_url, token, "--workers", "2")
    site = new_site(atlassian, stack.url)
    ok_hooks = create_hooks(stack.url, site, receiver, 2)
    failing = create_hooks(stack.url, site, receiver, 1, prefix="/down")[0]
    receiver.behave(failing.path, status=503)

    events = 30
    for n in range(events):
        _send(stack.url, site, f"value {n}")
    refused = [requests.post(f"{stack.url}{FIELD_CHANGES}", json={}, timeout=10),  # no credentials
               site.call(stack.url, "POST", FIELD_CHANGES, sub="account-1", json_body={"project": {}})]
    assert [r.status_code for r in refused] == [401, 422]

    wait_until(lambda: all(len(receiver.requests_for(h.path)) >= events for h in ok_hooks), timeout=90,
               message="every delivery to the answering receivers")

    def settled() -> Samples | None:
        # The recorder writes an outcome (and counts it) just after the receiver answered: scrape until the
        # counts catch up with what the receivers saw, and the two web processes' intake counts are both in.
        samples = _scrape(stack.url, token)
        delivered = sum(len(receiver.requests_for(h.path)) for h in ok_hooks)
        down = len(receiver.requests_for(failing.path))
        attempts = _value(samples, "addon_delivery_attempts_total", outcome="retrying")
        if (_value(samples, "addon_delivery_attempts_total", outcome="succeeded") == delivered
                and attempts == down and down >= 1):
            return samples
        return None

    samples = wait_until(settled, timeout=60, message="the metrics to match what the receivers saw")
    delivered = sum(len(receiver.requests_for(h.path)) for h in ok_hooks)
    down = len(receiver.requests_for(failing.path))
    assert delivered == 2 * events
    assert _value(samples, "addon_events_received_total", source="projectrak", outcome="accepted",
                  status_class="2xx") == events
    assert _value(samples, "addon_events_received_total", source="projectrak", outcome="refused",
                  status_class="4xx") == 2
    assert _value(samples, "addon_delivery_attempts_total", outcome="gave_up") == 0
    assert _value(samples, "addon_delivery_attempt_duration_seconds_count") == delivered + down
    assert _value(samples, "addon_delivery_attempt_duration_seconds_sum") > 0
    # The worker child's slots: one series per delivery worker, labelled by its pid; the web processes have none.
    for name in ("addon_delivery_slots", "addon_delivery_slots_in_use"):
        series = [dict(ls) for (n, ls), _v in samples.items() if n == name]
        assert len(series) == 1 and "pid" in series[0], (name, series)
    assert _value(samples, "addon_delivery_slots") == 64
    assert _value(samples, "addon_deliveries_due") >= 0  # the failing hook's retries wait, not due yet
    text = requests.get(f"{stack.url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10).text
    for secret in (token, site.shared_secret, failing.secret, *(h.secret for h in ok_hooks)):
        assert secret not in text
    assert site.client_key not in text and str(receiver.port) not in text and "127.0.0.1" not in text


@pytest.mark.timeout(120)
def test_metrics_need_the_token_and_read_due_deliveries_at_scrape_time(
        sqlite_url: str, atlassian: FakeAtlassian, receiver: Receiver, make_stack) -> None:
    token = _token()
    stack = _start(make_stack, sqlite_url, token, "--no-worker")  # nothing sends: every delivery stays due
    site = new_site(atlassian, stack.url)
    create_hooks(stack.url, site, receiver, 1)
    for n in range(3):
        _send(stack.url, site, f"due {n}")

    for headers in ({}, {"Authorization": "Bearer wrong-token-of-some-length"}, {"Authorization": token},
                    {"Authorization": f"Basic {token}"}):
        answer = requests.get(f"{stack.url}/metrics", headers=headers, timeout=10)
        assert answer.status_code == 401, (headers, answer.text)
        assert answer.json()["error"]["code"] == "unauthorized"

    def due() -> Samples | None:
        samples = _scrape(stack.url, token)
        return samples if _value(samples, "addon_oldest_due_delivery_age_seconds") > 0 else None

    samples = wait_until(due, timeout=30, message="the oldest due delivery to age")
    assert _value(samples, "addon_deliveries_due") == 3
    assert _value(samples, "addon_events_received_total", source="projectrak", outcome="accepted") == 3


@pytest.mark.timeout(120)
def test_metrics_are_404_without_a_token(sqlite_url: str, make_stack) -> None:
    stack = _start(make_stack, sqlite_url, None, "--no-worker")
    answer = requests.get(f"{stack.url}/metrics", headers={"Authorization": "Bearer anything-at-all"}, timeout=10)
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"


@pytest.mark.timeout(120)
def test_a_lone_worker_serves_its_own_metrics_with_the_same_token(
        sqlite_url: str, atlassian: FakeAtlassian, receiver: Receiver, make_stack) -> None:
    token = _token()
    stack = _start(make_stack, sqlite_url, token, "--no-worker")
    worker = stack._spawn("worker", ["worker", "--concurrency", "4", "--metrics-port", "0"])
    stack.workers.append(worker)
    line = wait_until(lambda: re.search(r"worker metrics at (http://[0-9.]+:[0-9]+)/metrics", worker.output()),
                      timeout=60, message="the worker's metrics address")
    worker_url = line.group(1)
    site = new_site(atlassian, stack.url)
    hook = create_hooks(stack.url, site, receiver, 1)[0]
    _send(stack.url, site, "to the lone worker")
    receiver.wait_for(1, timeout=30, path=hook.path)

    assert requests.get(f"{worker_url}/metrics", timeout=10).status_code == 401
    def recorded() -> Samples | None:
        samples = _scrape(worker_url, token)
        return samples if _value(samples, "addon_delivery_attempts_total", outcome="succeeded") == 1 else None

    samples = wait_until(recorded, timeout=30, message="the worker's attempt in its metrics")
    assert _value(samples, "addon_delivery_slots") == 4
    assert _value(samples, "addon_deliveries_due") == 0


@pytest.mark.timeout(120)
def test_a_lone_worker_without_a_token_answers_404_and_goes_on_delivering(
        sqlite_url: str, atlassian: FakeAtlassian, receiver: Receiver, make_stack) -> None:
    stack = _start(make_stack, sqlite_url, None, "--no-worker")
    worker = stack._spawn("worker", ["worker", "--concurrency", "2", "--metrics-port", "0"])
    stack.workers.append(worker)
    line = wait_until(lambda: re.search(r"worker metrics at (http://[0-9.]+:[0-9]+)/metrics", worker.output()),
                      timeout=60, message="the worker's metrics address")
    answer = requests.get(f"{line.group(1)}/metrics", headers={"Authorization": "Bearer anything-at-all"},
                          timeout=10)
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"
    site = new_site(atlassian, stack.url)
    hook = create_hooks(stack.url, site, receiver, 1)[0]
    _send(stack.url, site, "to the lone worker without metrics")
    receiver.wait_for(1, timeout=30, path=hook.path)


@pytest.mark.timeout(60)
def test_metrics_still_answer_while_the_database_cannot_be_reached(atlassian: FakeAtlassian) -> None:
    """A database outage is when the intake's refusals are worth watching: the scrape answers the counters (the
    refused field change among them) and leaves out only the gauges read from the database."""
    token = _token()
    settings = make_settings(atlassian, f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none",
                             metrics_token=token)
    runtime = Runtime.build(settings.with_changes(base_url="http://localhost"))
    client = create_app(runtime=runtime).test_client()
    site = atlassian.new_site()
    try:
        token_of_jira = site.token("POST", FIELD_CHANGES)
        refused = client.post(FIELD_CHANGES, json={}, headers={"Authorization": f"JWT {token_of_jira}"})
        assert refused.status_code == 503
        answer = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200, answer.get_data(as_text=True)
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for family in text_string_to_metric_families(answer.get_data(as_text=True))
                   for s in family.samples}
        assert _value(samples, "addon_events_received_total", source="projectrak", outcome="refused",
                      status_class="5xx") >= 1
        assert not any(name in ("addon_deliveries_due", "addon_oldest_due_delivery_age_seconds")
                       for name, _labels in samples)
    finally:
        runtime.close()
