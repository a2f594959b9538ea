"""Recording attempts: a batch (`record_many`, the worker's recorder) has the same effects as recording its
outcomes one by one (`record`), on both databases (on PostgreSQL the batch writes its rows through arrays)."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

import addon.delivery.retry as retry
from addon.delivery.outcomes import record, record_many
from addon.delivery.worker import MAX_RECORD_BATCH
from addon.outbox.claim import Job, claim
from addon.outbox.store import enqueue_event
from addon.sending.client import SendResult
from addon.storage.engine import transaction
from addon.storage.models import Attempt, Delivery, DeliveryStatus, Webhook
from tests.conftest import make_settings
from tests.support.addon_server import AddonServer
from tests.support.delivery import add_webhook, tenant_id_of

BODY = {"data": {"event": "updated", "user": "u-1", "timestamp": 1675182117615,
                 "project": {"id": 10000, "key": "DEMO", "name": "Demo project"}, "fields": []}}

# (webhook, outcome, ended by someone else while it was being sent). "mixed" sees failures, so it is recorded
# through the ORM (and may be disabled); "healthy" sees only successes, which a batch writes in one statement.
CASES = [
    ("mixed", SendResult(ok=True, http_code=200, error=None, duration_ms=12, response_body_start="fine"), False),
    ("mixed", SendResult(ok=False, http_code=503, error="HTTP 503", duration_ms=31, response_body_start="down"),
     False),
    ("mixed", SendResult(ok=False, http_code=None, error="timed out after 2 s", duration_ms=2000), False),
    ("mixed", SendResult(ok=False, http_code=400, error="HTTP 400", duration_ms=7, response_body_start="bad"), False),
    ("healthy", SendResult(ok=True, http_code=200, error=None, duration_ms=5, response_body_start=""), False),
    ("healthy", SendResult(ok=True, http_code=204, error=None, duration_ms=6), True),
    ("mixed", SendResult(ok=False, http_code=500, error="HTTP 500", duration_ms=9), True),
]


@pytest.fixture
def addon(atlassian, database_url):
    server = AddonServer(make_settings(atlassian, database_url), background=False)
    site = atlassian.new_site()
    assert site.install(server.url).status_code == 204
    yield server, tenant_id_of(server, site.client_key)
    server.stop()


def claimed_cases(addon: AddonServer, tenant_id: int) -> tuple[list[tuple[Job, SendResult]], dict[str, int]]:
    """A webhook of each kind, one leased delivery per case, and the cases' deliveries ended meanwhile."""
    webhooks = {kind: add_webhook(addon, tenant_id, f"https://example.com/{kind}", name=kind)[0]
                for kind in ("mixed", "healthy")}
    outcomes, ended = [], []
    for kind, result, ended_meanwhile in CASES:
        with transaction(addon.sessions) as session:
            event_id, _ = enqueue_event(session, tenant_id=tenant_id, source="projectrak", body=BODY,
                                        webhook_ids=[webhooks[kind]])
            delivery_id = session.scalar(select(Delivery.id).where(Delivery.event_id == event_id))
        [job] = claim(addon.runtime, 1, delivery_id=delivery_id)
        outcomes.append((job, result))
        if ended_meanwhile:
            ended.append(delivery_id)
    with transaction(addon.sessions) as session:  # as disabling the webhook or a redelivery would
        session.execute(update(Delivery).where(Delivery.id.in_(ended)).values(status=DeliveryStatus.CANCELLED))
    return outcomes, webhooks


def what_the_administrator_sees(addon: AddonServer, outcomes: list[tuple[Job, SendResult]],
                                webhooks: dict[str, int]) -> dict:
    """Every row the recording wrote, without ids and with times as offsets from the schedule's start."""
    seen: dict = {"deliveries": [], "webhooks": {}}
    with addon.sessions() as session:
        for job, _ in outcomes:
            delivery = session.get(Delivery, job.delivery_id)
            attempts = session.scalars(select(Attempt).where(Attempt.delivery_id == job.delivery_id)).all()
            due = delivery.next_attempt_at - delivery.schedule_started_at
            seen["deliveries"].append({
                "status": delivery.status, "attempt_count": delivery.attempt_count, "leased": delivery.lease_until,
                "finished": delivery.finished_at is not None, "next_attempt_in": round(due.total_seconds(), 3),
                "attempts": [(a.attempt, a.status, a.http_code, a.duration_ms, a.error, a.response_body_start,
                              a.webhook_id == job.webhook_id, a.tenant_id == job.tenant_id, a.at is not None)
                             for a in attempts]})
        for kind, webhook_id in webhooks.items():
            webhook = session.get(Webhook, webhook_id)
            seen["webhooks"][kind] = (webhook.enabled, webhook.last_status, webhook.last_status_code,
                                      webhook.last_error, webhook.failing_since is not None,
                                      webhook.last_execution_at is not None)
    return seen


def test_a_batch_records_what_one_by_one_records(addon, monkeypatch):
    monkeypatch.setattr(retry, "JITTER", 0.0)  # the same next attempt for the same failure
    server, tenant_id = addon
    one_by_one, one_by_one_webhooks = claimed_cases(server, tenant_id)
    batch, batch_webhooks = claimed_cases(server, tenant_id)

    for job, result in one_by_one:
        record(server.runtime, job, result)
    record_many(server.runtime, batch)

    expected = what_the_administrator_sees(server, one_by_one, one_by_one_webhooks)
    assert what_the_administrator_sees(server, batch, batch_webhooks) == expected
    # and what one by one recorded is what the policy says (so the comparison is not of two empty tables)
    statuses = [(d["status"], d["attempt_count"], d["finished"], d["next_attempt_in"]) for d in expected["deliveries"]]
    assert statuses == [(DeliveryStatus.SUCCEEDED, 1, True, 0.0), (DeliveryStatus.PENDING, 1, False, 5.0),
                        (DeliveryStatus.PENDING, 1, False, 5.0), (DeliveryStatus.FAILED, 1, True, 0.0),
                        (DeliveryStatus.SUCCEEDED, 1, True, 0.0), (DeliveryStatus.CANCELLED, 1, False, 0.0),
                        (DeliveryStatus.CANCELLED, 1, False, 0.0)]
    assert all(d["leased"] is None and len(d["attempts"]) == 1 for d in expected["deliveries"])
    assert expected["deliveries"][1]["attempts"] == [(1, "ERROR", 503, 31, "HTTP 503", "down", True, True, True)]
    assert expected["webhooks"] == {"mixed": (True, "ERROR", 500, "HTTP 500", True, True),
                                    "healthy": (True, "OK", 204, None, False, True)}


def test_the_recorders_largest_batch_is_written_whole(addon):
    server, tenant_id = addon
    webhook_id, _ = add_webhook(server, tenant_id, "https://example.com/many")
    with transaction(server.sessions) as session:
        for _ in range(MAX_RECORD_BATCH):
            enqueue_event(session, tenant_id=tenant_id, source="projectrak", body=BODY, webhook_ids=[webhook_id])
    jobs = claim(server.runtime, MAX_RECORD_BATCH)
    assert len(jobs) == MAX_RECORD_BATCH
    ok = SendResult(ok=True, http_code=200, error=None, duration_ms=3)
    record_many(server.runtime, [(job, ok) for job in jobs])
    with server.sessions() as session:
        statuses = session.scalars(select(Delivery.status)).all()
        attempts = session.scalars(select(Attempt.delivery_id)).all()
    assert statuses == [DeliveryStatus.SUCCEEDED] * MAX_RECORD_BATCH
    assert sorted(attempts) == sorted(job.delivery_id for job in jobs)


@pytest.mark.parametrize("batch", [False, True], ids=["one", "batch"])
def test_what_a_receiver_sent_is_stored_cleaned_and_cut(addon, batch):
    """An error text quoting a receiver (a reason phrase, a redirect's Location, an exception) and a body's start
    hold whatever it sent: stored with control characters and lone surrogates replaced, cut at 500 and 2,048
    characters, and the webhook's last error likewise, on both databases."""
    server, tenant_id = addon
    webhook_id, _ = add_webhook(server, tenant_id, "https://example.com/odd")
    with transaction(server.sessions) as session:
        enqueue_event(session, tenant_id=tenant_id, source="projectrak", body=BODY, webhook_ids=[webhook_id])
    [job] = claim(server.runtime, 1)
    error = "HTTP 302, redirect to /\x00\x1b[2J\r\ud800\t\n" + "e" * 600
    result = SendResult(ok=False, http_code=302, error=error, duration_ms=4, response_body_start="b\x00\udfff" * 1000)
    if batch:
        record_many(server.runtime, [(job, result)])
    else:
        record(server.runtime, job, result)

    stored_error = ("HTTP 302, redirect to /\ufffd\ufffd[2J\ufffd\ufffd\t\n" + "e" * 600)[:500]
    with server.sessions() as session:
        [attempt] = session.scalars(select(Attempt).where(Attempt.delivery_id == job.delivery_id)).all()
        assert (attempt.error, attempt.response_body_start) == (stored_error, ("b\ufffd\ufffd" * 1000)[:2048])
        assert session.get(Webhook, webhook_id).last_error == stored_error
        assert session.get(Delivery, job.delivery_id).status == DeliveryStatus.FAILED  # a 3xx is final
