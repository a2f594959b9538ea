"""PostgreSQL restarted during the load: while it is down, intake answers `503` (`database_unavailable`, with
`Retry-After`), never `500`, so the sender (retrying like Jira) tries again; `/healthz` answers `503`; once it is
back, every event answered `202` arrives at all 5 webhooks.

The restart is `pg_ctlcluster <version> main stop` (fast mode: every connection is cut), the cluster held down for
RELIABILITY_PG_DOWN_S seconds (default 3, so that the outage is long enough to be seen at the load's rate), then
`start`. It needs root and a local cluster (CI runs as root on this machine): otherwise it is skipped with the
reason. It disturbs every other user of that PostgreSQL for those seconds.

A delivery whose attempt was sent while the database went away cannot be recorded; its lease brings it back
(`OUTGOING_TIMEOUT_S` + 60 s later). The test ends such stale leases early while draining (harness
`wait_for_arrivals`); those deliveries are the only ones allowed to arrive twice.

`test_every_route_answers_503_when_the_database_cannot_be_reached` checks the same answers without restarting
anything (a PostgreSQL URL where nothing listens), so it runs wherever the suite runs.
Time budget: RELIABILITY_FAULT_S + RELIABILITY_PG_DOWN_S + 60 s of drain + 150 s of start-up and slack.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from addon.app import create_app
from addon.outbox.postgres import libpq_url
from addon.process.runtime import Runtime
from addon.storage.engine import make_engine
from tests.conftest import PG_SKIP_REASON, PG_URL, make_settings
from tests.receivers import Receiver
from tests.reliability.harness import (
    FAULT_S,
    FIELD_CHANGES,
    RATE,
    LoadGenerator,
    ProcessStack,
    Tally,
    create_hooks,
    env_float,
    new_site,
    record_figures,
    start_topology,
    wait_for_arrivals,
    wait_until,
)
from tests.support.atlassian import FakeAtlassian
from tests.support.http import free_port

PG_DOWN_S = env_float("RELIABILITY_PG_DOWN_S", 3.0)
OUTGOING_TIMEOUT_S = 5.0
DRAIN_BUDGET_S = 60.0


def _cluster() -> tuple[str, str] | None:
    """(version, name) of the local cluster that pg_ctlcluster controls, or None."""
    if not shutil.which("pg_ctlcluster") or os.geteuid() != 0 or not Path("/etc/postgresql").is_dir():
        return None
    versions = sorted(os.listdir("/etc/postgresql"))
    return (versions[0], "main") if versions else None


def _pg_ctl(action: str) -> None:
    version, name = _cluster() or ("", "")
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, name, action], check=True,
                   capture_output=True, timeout=60)


def _pg_ready() -> bool:
    try:
        with psycopg.connect(libpq_url(PG_URL or ""), connect_timeout=2):
            return True
    except psycopg.Error:
        return False


@pytest.fixture
def restartable_pg_url() -> Iterator[str]:
    """A fresh schema, with engines that hold no connection across the restart (unlike `pg_url`'s pool)."""
    if not PG_URL:
        pytest.skip(PG_SKIP_REASON)
    url = make_url(PG_URL)
    if url.host not in ("127.0.0.1", "localhost") or _cluster() is None:
        pytest.skip("restarting PostgreSQL needs root, pg_ctlcluster and a cluster on this machine")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, poolclass=NullPool)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    yield url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    if not _pg_ready():  # the test failed with the cluster down: bring it back for everyone else
        _pg_ctl("start")
        wait_until(_pg_ready, timeout=60, message="PostgreSQL to start")
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.mark.timeout(FAULT_S + PG_DOWN_S + DRAIN_BUDGET_S + 150)
def test_postgresql_restarted_during_load(restartable_pg_url: str, atlassian: FakeAtlassian, receiver: Receiver,
                                          make_stack) -> None:
    stack: ProcessStack = make_stack(restartable_pg_url, timeout_s=OUTGOING_TIMEOUT_S)
    start_topology(stack, "postgresql")
    site = new_site(atlassian, stack.url)
    hooks = create_hooks(stack.url, site, receiver, 5)
    engine = make_engine(restartable_pg_url)
    health_while_down: list[int | str] = []
    started = time.monotonic()
    load = LoadGenerator(stack.url, site, RATE, FAULT_S).start()
    tally = Tally(receiver, hooks, load.tag)
    try:
        while load.elapsed() < FAULT_S / 3:
            time.sleep(0.05)
        stopped_at = load.elapsed()
        _pg_ctl("stop")
        down_at = load.elapsed()
        while load.elapsed() < down_at + PG_DOWN_S:
            try:
                health_while_down.append(requests.get(stack.url + "/healthz", timeout=5).status_code)
            except requests.RequestException as exc:
                health_while_down.append(type(exc).__name__)
            time.sleep(0.5)
        _pg_ctl("start")
        wait_until(_pg_ready, timeout=60, message="PostgreSQL to start")
        up_at = load.elapsed()
        load.join()
        _, stale = wait_for_arrivals(tally, load, DRAIN_BUDGET_S, engine=engine, lease_s=OUTGOING_TIMEOUT_S + 60,
                                     timeout_s=OUTGOING_TIMEOUT_S)
    finally:
        load.stop_event.set()
        engine.dispose()
    figures = load.figures() | tally.figures(load.accepted(), load.started_at)
    answers = figures["answers"]
    figures |= {
        "database": "postgresql", "topology": stack.topology,
        "pg_stop_at_s": round(stopped_at, 1), "pg_down_s": round(up_at - down_at, 1),
        "status_503": answers.get("503", 0),
        "events_retried_after_503": sum(1 for o in load.outcomes.values() if o.statuses.get(503)),
        "healthz_while_down": sorted({str(h) for h in health_while_down}),
        "stale_leases_released_while_draining": len(stale),
        "drain_after_load_s": tally.drain_after(load.load_ends_at), "cpu_s": stack.cpu_seconds(),
        "wall_s": round(time.monotonic() - started, 1),
    }
    record_figures("postgresql-restart", figures)
    unexpected = {k: v for k, v in answers.items() if k not in ("202", "503") and not k.startswith("connection")}
    assert not unexpected, f"answers other than 202 and 503 while PostgreSQL restarted: {unexpected}"
    assert figures["status_503"] > 0, "the outage was not seen: no 503 at all"
    assert set(health_while_down) <= {503}, health_while_down
    assert figures["gave_up"] == 0, load.errors()
    assert figures["lost"] == 0
    assert figures["signature_failures"] == 0, tally.signature_failures[:5]
    assert tally.duplicate_ids() <= set(stale), "a delivery arrived twice without having lost its record"
    retried = {seq for seq, o in load.outcomes.items() if o.tries > 1}
    assert tally.duplicate_event_seqs() <= retried, "an event was accepted twice although its sender got a 202"


@pytest.mark.timeout(60)
def test_every_route_answers_503_when_the_database_cannot_be_reached(atlassian: FakeAtlassian) -> None:
    """Without restarting anything: the add-on pointed at a PostgreSQL port where nothing listens. Every route that
    needs the database answers 503 `database_unavailable` with `Retry-After` (the sender retries), never 500."""
    settings = make_settings(atlassian, f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none")
    runtime = Runtime.build(settings.with_changes(base_url="http://localhost"))
    client = create_app(runtime=runtime).test_client()
    site = atlassian.new_site()
    try:
        for method, path in (("POST", FIELD_CHANGES), ("POST", "/events/jira/project_updated"),
                             ("POST", "/lifecycle/enabled"), ("GET", "/api/webhooks"), ("GET", "/admin/webhooks")):
            token = site.token(method, path)
            response = client.open(path, method=method, json={}, headers={"Authorization": f"JWT {token}"})
            assert response.status_code == 503, (path, response.status_code, response.get_data(as_text=True))
            assert response.get_json()["error"]["code"] == "database_unavailable"
            assert response.headers["Retry-After"].isdigit()
        install = atlassian.install_token("http://localhost", "/lifecycle/installed", issuer=site.client_key)
        response = client.post("/lifecycle/installed", json=site.lifecycle_body(),
                               headers={"Authorization": f"JWT {install}"})
        assert response.status_code == 503 and response.get_json()["error"]["code"] == "database_unavailable"
        assert client.get("/healthz").status_code == 503
    finally:
        runtime.close()
