"""One tenant's slow backlog beside another tenant's deliveries (CONTRACT §6.3; issue 20).

Tenant C has four webhooks whose receivers answer `200` after 4 s, and sends 32 events (128 deliveries); with
the per-webhook bound alone they took every sending slot (4 × a quarter), and tenant B's single delivery waited
for one of C's answers: 7.4 s instead of milliseconds. With at most half the slots to one tenant, B's deliveries
go out at the next claim.

On the deployment README describes (`start_topology`): SQLite, `addon serve` with its worker in-process (64
slots, 32 per tenant); PostgreSQL, `addon serve --no-worker` + `addon worker --concurrency 16` (8 per tenant).
B's latency (its `202` to the arrival at its receiver) is measured alone first, then with C's backlog held up by
its receivers. What is asserted is an order, not a duration: each of B's deliveries arrived while C's requests
were held open (before the first of them was answered) and while C still had deliveries waiting.
Time budget: about 15 s per database (pytest-timeout 180 s).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from addon.delivery.worker import DEFAULT_CONCURRENCY, per_tenant_bound
from tests.receivers import Receiver
from tests.reliability.harness import (
    FIELD_CHANGES,
    PROJECT_ID,
    create_hooks,
    new_site,
    percentiles,
    record_figures,
    start_topology,
    wait_until,
)
from tests.support.atlassian import FakeAtlassian, FakeSite

RECEIVER_DELAY_S = 4.0
C_WEBHOOKS, C_EVENTS = 4, 32
B_SAMPLES = 5
#: `start_topology`'s worker concurrency on PostgreSQL (`ProcessStack.start_worker`'s default).
PG_WORKER_CONCURRENCY = 16


def _event(seq: int) -> dict[str, Any]:
    return {"project": {"id": PROJECT_ID}, "timestamp": 1_700_000_000_000 + seq,
            "changes": [{"field": {"id": 7001, "name": "Sequence", "type": "text"}, "previous": None,
                         "current": f"fairness:{seq}"}]}


def _accepted(site: FakeSite, url: str, seq: int) -> float:
    """Send one field change; the moment its `202` came back."""
    response = site.call(url, "POST", FIELD_CHANGES, json_body=_event(seq))
    assert response.status_code == 202, response.text
    return time.monotonic()


@pytest.mark.timeout(180)
def test_another_tenants_slow_backlog_does_not_hold_deliveries_back(database_url: str, atlassian: FakeAtlassian,
                                                                    receiver: Receiver, make_stack) -> None:
    backend = "postgresql" if database_url.startswith("postgresql") else "sqlite"
    stack = make_stack(database_url, timeout_s=10.0)
    start_topology(stack, backend)
    share = per_tenant_bound(PG_WORKER_CONCURRENCY if backend == "postgresql" else DEFAULT_CONCURRENCY)
    site_c, site_b = new_site(atlassian, stack.url), new_site(atlassian, stack.url)
    c_hooks = create_hooks(stack.url, site_c, receiver, C_WEBHOOKS, prefix="/slow")
    for hook in c_hooks:
        receiver.behave(hook.path, delay_s=RECEIVER_DELAY_S)
    [b_hook] = create_hooks(stack.url, site_b, receiver, 1, prefix="/b")

    def b_latency(seq: int) -> tuple[float, float]:
        """(latency s, arrival) of one event of B's."""
        accepted_at = _accepted(site_b, stack.url, seq)
        arrival = receiver.wait_for(seq + 1, timeout=30, path=b_hook.path)[seq].received_at
        return max(0.0, arrival - accepted_at), arrival

    b_latency(0)  # the first event warms the stack up (connections, the worker's first claim)
    alone = [b_latency(seq)[0] for seq in range(1, B_SAMPLES + 1)]

    for seq in range(C_EVENTS):
        _accepted(site_c, stack.url, 1000 + seq)
    c_paths = {hook.path for hook in c_hooks}

    def c_requests() -> list[float]:
        return sorted(r.received_at for r in receiver.requests if r.path in c_paths)

    wait_until(lambda: len(c_requests()) >= share, timeout=30, message="tenant C's receivers to hold its share")
    beside: list[float] = []
    for seq in range(B_SAMPLES + 1, 2 * B_SAMPLES + 1):
        latency, arrival = b_latency(seq)
        beside.append(latency)
        c_before = [at for at in c_requests() if at <= arrival]
        # C's requests were held open at B's arrival (none answered before it), and C still had deliveries due.
        assert arrival < c_before[0] + RECEIVER_DELAY_S, (
            f"B's delivery {seq} arrived {arrival - c_before[0]:.2f} s after C's first request: it waited for an "
            f"answer of C's receivers")
        assert len(c_before) < C_WEBHOOKS * C_EVENTS
    c_open = len(c_requests())

    figures = {"database": backend, "topology": stack.topology, "tenant_share_slots": share,
               "c_requests_open_while_b_sent": c_open, "c_deliveries": C_WEBHOOKS * C_EVENTS,
               "c_receiver_delay_s": RECEIVER_DELAY_S,
               "b_latency_alone_ms": percentiles(alone), "b_latency_beside_c_backlog_ms": percentiles(beside)}
    record_figures(f"fairness-{backend}", figures)
    assert c_open <= share, f"tenant C held {c_open} requests open, more than its share of {share}"
