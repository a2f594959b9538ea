"""Kills during the load: the `addon worker` is killed with SIGKILL 20 times at random moments (and restarted each
time), and `addon serve` is killed with SIGKILL twice (and restarted on the same port), while field-change events
keep coming at RELIABILITY_RATE for RELIABILITY_FAULT_S seconds (default 40), on SQLite and on PostgreSQL.

Every event answered `202` before a kill arrives at all 5 webhooks. A delivery may arrive twice only if a killed
worker held it (same `webhook-id`), and an event may be accepted twice only if the sender's request died with the
server (no answer, so it retried).

Leases: a delivery claimed by a killed worker comes back when its lease ends, `OUTGOING_TIMEOUT_S` + 60 s after the
claim. To keep the scenario bounded, the test ends those leases right after each kill with a direct UPDATE (no
worker runs at that moment, so every lease is the dead worker's): the lease clock fast-forwarded.

The random moments come from RELIABILITY_SEED when set (the report records the seed).
Time budget: RELIABILITY_FAULT_S + 60 s of drain + 180 s of start-ups and slack (pytest-timeout).
"""

from __future__ import annotations

import threading
import time

import pytest

from addon.storage.engine import make_engine
from tests.receivers import Receiver
from tests.reliability.harness import (
    FAULT_S,
    RATE,
    LoadGenerator,
    ProcessStack,
    Tally,
    create_hooks,
    new_site,
    record_figures,
    release_all_leases,
    rng,
    wait_for_arrivals,
    wait_until,
    worker_started,
)
from tests.support.atlassian import FakeAtlassian

WORKER_KILLS = 20
SERVER_KILLS = 2
OUTGOING_TIMEOUT_S = 5.0
DRAIN_BUDGET_S = 60.0


def _kill_servers(stack: ProcessStack, load: LoadGenerator, moments: list[float], log: list[dict]) -> None:
    for moment in moments:
        while load.elapsed() < moment:
            time.sleep(0.05)
        killed_at = load.elapsed()
        stack.kill_server()
        stack.restart_server()
        log.append({"at_s": round(killed_at, 1), "down_s": round(load.elapsed() - killed_at, 1)})


@pytest.mark.timeout(FAULT_S + DRAIN_BUDGET_S + 180)
def test_workers_and_servers_killed_during_load(database_url: str, atlassian: FakeAtlassian, receiver: Receiver,
                                                make_stack) -> None:
    backend = "postgresql" if database_url.startswith("postgresql") else "sqlite"
    stack: ProcessStack = make_stack(database_url, timeout_s=OUTGOING_TIMEOUT_S)
    stack.start_server("--no-worker")
    stack.start_worker()
    site = new_site(atlassian, stack.url)
    hooks = create_hooks(stack.url, site, receiver, 5)
    engine = make_engine(database_url)
    random, seed = rng(f"kills-{backend}")
    slot = (FAULT_S - 1.0) / WORKER_KILLS  # one kill at a random moment of each slot, once the worker is up
    server_moments = [FAULT_S * (i + 1) / (SERVER_KILLS + 1) for i in range(SERVER_KILLS)]
    worker_kills: list[dict] = []
    server_kills: list[dict] = []
    released: set[str] = set()
    started = time.monotonic()
    # The load lasts FAULT_S, or longer if the 20 kills need it (a worker takes a second or two to start).
    load = LoadGenerator(stack.url, site, RATE, 3 * FAULT_S).start()
    tally = Tally(receiver, hooks, load.tag)
    killer = threading.Thread(target=_kill_servers, args=(stack, load, server_moments, server_kills), daemon=True)
    killer.start()
    try:
        for i in range(WORKER_KILLS):
            worker = stack.workers[-1]
            wait_until(lambda w=worker: worker_started(w), timeout=60, message="the worker to start")
            earliest, latest = max(load.elapsed(), 0.5 + i * slot), 0.5 + (i + 1) * slot
            moment = random.uniform(earliest, latest) if earliest < latest else earliest + random.uniform(0, 0.3)
            while load.elapsed() < moment:
                time.sleep(0.01)
            killed_at = load.elapsed()
            worker.kill()
            ids = release_all_leases(engine)
            released.update(ids)
            worker_kills.append({"at_s": round(killed_at, 2), "leases_released": len(ids)})
            stack.start_worker(wait=False)
        wait_until(lambda: worker_started(stack.workers[-1]), timeout=60, message="the last worker to start")
        killer.join(60)
        while load.elapsed() < FAULT_S:
            time.sleep(0.05)
        load.finish()
        load.join()
        _, stale = wait_for_arrivals(tally, load, DRAIN_BUDGET_S, engine=engine, lease_s=OUTGOING_TIMEOUT_S + 60,
                                     timeout_s=OUTGOING_TIMEOUT_S)
    finally:
        load.stop_event.set()
        engine.dispose()
    figures = load.figures() | tally.figures(load.accepted(), load.started_at)
    duplicated_ids = tally.duplicate_ids()
    duplicated_events = tally.duplicate_event_seqs()
    unanswered = {seq for seq, o in load.outcomes.items()
                  if any(str(status).startswith("connection error") for status in o.statuses)}
    figures |= {
        "database": backend, "topology": stack.topology, "seed": seed,
        "worker_kills": len(worker_kills), "server_kills": len(server_kills),
        "leases_released_after_kills": sum(k["leases_released"] for k in worker_kills),
        "stale_leases_released_while_draining": len(stale),
        "server_kills_detail": server_kills,
        "worker_kill_moments_s": [k["at_s"] for k in worker_kills],
        "worker_kills_during_load": sum(1 for k in worker_kills if k["at_s"] < load.duration_s),
        "drain_after_load_s": tally.drain_after(load.load_ends_at),
        "wall_s": round(time.monotonic() - started, 1),
    }
    record_figures(f"kills-{backend}", figures)
    assert len(worker_kills) == WORKER_KILLS and len(server_kills) == SERVER_KILLS
    assert figures["status_500"] == 0, load.errors()
    assert figures["refused_4xx"] == 0 and figures["gave_up"] == 0, load.errors()
    assert figures["lost"] == 0
    assert figures["signature_failures"] == 0, tally.signature_failures[:5]
    assert duplicated_ids <= released | set(stale), "a delivery arrived twice although no killed worker held it"
    assert duplicated_events <= unanswered, "an event was accepted twice although its sender got an answer"
