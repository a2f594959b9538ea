"""(7) Scale: one PostgreSQL serving a Marketplace app's worth of sites, each goal a ratio measured in one run.

    python -m bench.scale --quick                       # 1,000 tenants, 100,000 waiting, 1 M attempts (minutes)
    python -m bench.scale                               # 10,000 tenants, 100,000 webhooks, 1 M waiting, …
    python -m bench.scale --top-attempts 100000000      # where the attempt rows stop growing (default 10 M)
    python -m bench.scale --only attempts --tag T --resume SCHEMA   # go on where a stopped run (--keep) left off
    python -m bench.run_all --only scale --databases postgresql

It works in a database of its own, `scale` (created on the server of `--pg-url`, never the tests' `test`), one
schema per part, each made by the add-on's migrations and dropped at the end (`--keep` keeps them). The rows go
into the add-on's own tables through `INSERT … SELECT generate_series` (seeding 100 million rows through the
intake would take days); secrets are sealed with the add-on's `SecretBox`; sites reach a fake Atlassian
(`tests.support.atlassian`) that serves project 10000 and says the admin is an administrator.

Parts (schemas):
- `big`: `tenants` sites (`scale-1` …) of 10 webhooks each, all enabled; the first webhook of `due_hooks` of them
  (spread over the id range) has `waiting / due_hooks` due deliveries; attempt rows grow in steps (finished
  deliveries with 5 attempts each: four 503s, then a 200), ~2 % of them older than the 30-day retention; one
  webhook (`log`) gets a tenth of each step's attempts until it holds `log_attempts`.
- `small`: `due_hooks` sites of one webhook each, as many due deliveries per webhook as `big`: the claim's baseline.
- `fair`: tenant A with `burst_hooks` webhooks and a burst of `burst` due deliveries, tenant B with one webhook.

Measured (every goal against a baseline of the same run):
- claim: `claim()` of a batch (half the worker's slots), `big` against `small`, alternating (goal ≤ 1.5 ×);
- intake: `addon serve --no-worker` on `big`, closed loop over 8 connections, one site against every site in
  turn (after one request to each site, so their caches are warm), alternating (goal ≥ 90 %);
- at each attempt step: the delivery log's and the attempts list's page 1,000 against page 1 of `log` through
  the admin API (goal ≤ 1.5 ×), and a housekeeping prune pass (`prune_attempts`) with the intake at 50 events/s
  and a claim loop running: their p99 during the pass against the same without it, plus the longest prune
  transaction and any lock wait seen in `pg_stat_activity` / `pg_locks` (goal: no stall > 50 ms);
- memory: VmHWM of the web process after the intake over every site, and of an `addon worker` that ran on `big`
  for `worker_s` seconds (goal < 150 MiB each);
- at the top: migration 0010 from 0009 while the intake runs (its p99 and errors), then 0008-0011 from 0007;
- fairness: `addon serve` (worker child) on `fair`; while A's burst drains, B sends `changes` changes at 5/s;
  each one's time from the intake request to B's receiver (goal p99 < 100 ms), at a tenth of the burst and at
  the whole burst.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench.common import (
    DEFAULT_PG_URL,
    PYTHON,
    REPO,
    Database,
    Process,
    ReceiverProcess,
    addon,
    addon_env,
    children,
    log,
    machine,
    memory_kb,
    migrate,
    new_secret_key,
    percentile,
    pg_database,
    postgres_version,
)

SCALE_DATABASE = "scale"
MiB = 1024

FULL = {"tenants": 10_000, "hooks_per_tenant": 10, "due_hooks": 100, "waiting": 1_000_000, "busy_tenants": 1_000,
        "attempt_steps": [1_000_000, 10_000_000], "top_attempts": 10_000_000, "log_attempts": 1_000_000,
        "burst": 250_000, "burst_hooks": 50, "changes": 100, "intake_s": 8.0, "worker_s": 30.0, "claim_reps": 40}
QUICK = {"tenants": 1_000, "hooks_per_tenant": 10, "due_hooks": 100, "waiting": 100_000, "busy_tenants": 100,
         "attempt_steps": [100_000], "top_attempts": 1_000_000, "log_attempts": 100_000,
         "burst": 25_000, "burst_hooks": 50, "changes": 30, "intake_s": 3.0, "worker_s": 10.0, "claim_reps": 20}

BODY = ('{"data":{"event":"updated","user":"bench-user","timestamp":1700000000000,"project":{"id":10000,'
        '"key":"DEMO","name":"Demo project"},"fields":[{"id":12345,"name":"Budget","type":"number","value":'
        '{"current":"23000","previous":"25000"}},{"id":54321,"name":"Status","type":"status","value":'
        '{"current":"Done","previous":"On track"}}]}}')
ATTEMPTS_PER_DELIVERY = 5
PAGE = 20
DEEP_PAGE = 1_000


# -- the database ---------------------------------------------------------------------------------------------


def scale_database_url(admin_url: str) -> str:
    """The URL of the database `scale` on the server of `admin_url`, created when missing."""
    url = make_url(admin_url)
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        if not conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": SCALE_DATABASE}):
            conn.execute(text(f'CREATE DATABASE "{SCALE_DATABASE}"'))
    engine.dispose()
    return url.set(database=SCALE_DATABASE).render_as_string(hide_password=False)


def new_schema(scale_url: str) -> Database:
    database = pg_database(scale_url)
    migrate(database)
    return database


def execute(database: Database, sql: str, params: dict | None = None, *, autocommit: bool = False) -> Any:
    engine = database.engine()
    try:
        if autocommit:  # VACUUM, CREATE INDEX CONCURRENTLY: outside a transaction
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text(sql), params or {})
            return None
        with engine.begin() as conn:
            result = conn.execute(text(sql), params or {})
            return result.all() if result.returns_rows else result.rowcount
    finally:
        engine.dispose()


def scalar(database: Database, sql: str, params: dict | None = None) -> Any:
    rows = execute(database, sql, params)
    return rows[0][0] if rows else None


def vacuum(database: Database, *tables: str, analyze: bool = True) -> None:
    """What autovacuum would soon do after a bulk write, so that the write's aftermath is not what is timed."""
    for table in tables:
        execute(database, f"VACUUM {'ANALYZE ' if analyze else ''}{table}", autocommit=True)


# -- seeding through the add-on's tables ----------------------------------------------------------------------


@dataclass
class Site:
    """What every seeded tenant shares: the fake Atlassian site's base URL and shared secret (so the add-on's Jira
    calls for any tenant reach one fake site), sealed with the run's secret key."""

    secret_key: str
    base_url: str
    shared_secret: str
    hook_url: str


def seed_tenants(database: Database, site: Site, count: int, prefix: str = "scale-") -> None:
    from addon.storage.secrets import SecretBox

    execute(database, """
        INSERT INTO tenants (door, client_key, shared_secret, base_url, state, installed_at, updated_at)
        SELECT 'connect', :prefix || g, :secret, :base, 'enabled', now(), now() FROM generate_series(1, :n) AS g
        ORDER BY g""", {"prefix": prefix, "secret": SecretBox(site.secret_key).seal(site.shared_secret),
                        "base": site.base_url, "n": count})


def seed_webhooks(database: Database, site: Site, per_tenant: int, url_path: str = "/scale") -> None:
    """`per_tenant` enabled webhooks for every tenant, in tenant order (a tenant's webhooks are neighbours)."""
    from addon.sending.signing import generate_secret
    from addon.storage.secrets import SecretBox

    execute(database, """
        INSERT INTO webhooks (tenant_id, name, url, enabled, secret, created_at, updated_at)
        SELECT t.id, 'hook ' || k, :url, true, :secret, now(), now()
        FROM tenants AS t CROSS JOIN generate_series(1, :k) AS k ORDER BY t.id, k""",
            {"url": site.hook_url + url_path, "secret": SecretBox(site.secret_key).seal(generate_secret()),
             "k": per_tenant})


def seed_due(database: Database, webhook_ids: list[int], per_webhook: int, tag: str) -> None:
    """`per_webhook` pending deliveries due a minute ago for each of `webhook_ids`, one event each."""
    for webhook_id in webhook_ids:
        execute(database, """
            WITH ev AS (
              INSERT INTO events (tenant_id, source, project_id, body, created_at, message_id)
              SELECT w.tenant_id, 'projectrak', '10000', :body, now() - interval '1 minute', :tag || w.id || '_' || g
              FROM webhooks AS w CROSS JOIN generate_series(1, :n) AS g WHERE w.id = :w
              RETURNING id, tenant_id, message_id)
            INSERT INTO deliveries (tenant_id, event_id, webhook_id, message_id, status, attempt_count,
                                    next_attempt_at, created_at, schedule_started_at)
            SELECT tenant_id, id, :w, message_id || '_' || :w, 'pending', 0, now() - interval '1 minute',
                   now() - interval '1 minute', now() - interval '1 minute' FROM ev""",
                {"body": BODY, "tag": tag, "n": per_webhook, "w": webhook_id})


@dataclass
class AttemptSeeder:
    """Grows the attempt rows of `big` in chunks: finished deliveries of the busy tenants (one event to all
    10 webhooks of a tenant), and of the `log` webhook (one event each) until it holds its share. Times run
    forwards over 29 days as the rows are written (as real ones do); every 50th event is 30 days and 2 hours
    old, so that a prune pass has work."""

    database: Database
    busy_tenants: int
    log_webhook: int
    log_target: int
    total: int = 0
    log_total: int = 0
    next_event: int = 0
    seconds: float = 0.0
    span_events: int = 1

    def grow_to(self, attempts: int, chunk: int = 2_000_000) -> None:
        while self.total < attempts:
            self._chunk(min(chunk, attempts - self.total))

    def _chunk(self, attempts: int) -> None:
        started = time.monotonic()
        log_attempts = min(self.log_target - self.log_total, attempts // 10)
        log_events = log_attempts // ATTEMPTS_PER_DELIVERY
        fanout = 10 * ATTEMPTS_PER_DELIVERY
        busy_events = max(1, (attempts - log_events * ATTEMPTS_PER_DELIVERY) // fanout)
        first = self.next_event
        params = {"g0": first, "g1": first + busy_events, "busy": self.busy_tenants, "span": self.span_events,
                  "body": BODY}
        # the busy tenants' events, to all their webhooks
        execute(self.database, _FINISHED.format(
            events="SELECT 1 + (g % :busy) AS tenant_id, g FROM generate_series(:g0, :g1 - 1) AS g",
            hooks="JOIN webhooks AS w ON w.tenant_id = ev.tenant_id"), params)
        self.next_event += busy_events
        self.total += busy_events * fanout
        if log_events:
            params = {**params, "g0": self.next_event, "g1": self.next_event + log_events, "w": self.log_webhook}
            execute(self.database, _FINISHED.format(
                events="SELECT (SELECT tenant_id FROM webhooks WHERE id = :w) AS tenant_id, g "
                       "FROM generate_series(:g0, :g1 - 1) AS g",
                hooks="JOIN webhooks AS w ON w.id = :w"), params)
            self.next_event += log_events
            self.total += log_events * ATTEMPTS_PER_DELIVERY
            self.log_total += log_events * ATTEMPTS_PER_DELIVERY
        self.seconds += time.monotonic() - started
        log(f"attempts: {self.total:,} ({self.total / self.seconds:,.0f}/s so far; log webhook {self.log_total:,})")


# One statement per chunk: events, their finished deliveries, five attempts each. `{events}` yields
# (tenant_id, g); `{hooks}` joins each event to the webhooks it went to.
_FINISHED = """
WITH src AS ({events}),
ev AS (
  INSERT INTO events (tenant_id, source, project_id, body, created_at, message_id)
  SELECT tenant_id, 'projectrak', '10000', :body,
         CASE WHEN g % 50 = 0 THEN now() - interval '30 days 2 hours' - make_interval(secs => g % 3600)
              ELSE now() - interval '29 days' + make_interval(secs => 2505600.0 * g / :span) END,
         'scale_' || g
  FROM src ORDER BY g
  RETURNING id, tenant_id, created_at, message_id),
dl AS (
  INSERT INTO deliveries (tenant_id, event_id, webhook_id, message_id, status, attempt_count, next_attempt_at,
                          created_at, schedule_started_at, finished_at)
  SELECT ev.tenant_id, ev.id, w.id, ev.message_id || '_' || w.id, 'succeeded', 5, NULL, ev.created_at,
         ev.created_at, ev.created_at + interval '75 seconds'
  FROM ev {hooks} ORDER BY ev.id, w.id
  RETURNING id, tenant_id, webhook_id, created_at)
INSERT INTO attempts (tenant_id, delivery_id, webhook_id, attempt, at, status, http_code, duration_ms, error,
                      response_body_start)
SELECT dl.tenant_id, dl.id, dl.webhook_id, a, dl.created_at + a * interval '15 seconds',
       CASE WHEN a = 5 THEN 'OK' ELSE 'ERROR' END, CASE WHEN a = 5 THEN 200 ELSE 503 END, 20 + a,
       CASE WHEN a = 5 THEN NULL ELSE 'HTTP 503' END, CASE WHEN a = 5 THEN 'ok' ELSE 'busy' END
FROM dl CROSS JOIN generate_series(1, 5) AS a ORDER BY dl.id, a
"""


# -- timing helpers --------------------------------------------------------------------------------------------


def stats_ms(times_s: list[float]) -> dict[str, float]:
    values = sorted(times_s)
    if not values:
        return {"n": 0}
    return {"median_ms": round(statistics.median(values) * 1000, 2), "p99_ms": round(percentile(values, 99) * 1000, 2),
            "max_ms": round(values[-1] * 1000, 2), "n": len(values)}


def timed(call) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


# -- the parts -------------------------------------------------------------------------------------------------


@dataclass
class Run:
    sizes: dict[str, Any]
    scale_url: str
    workdir: Path
    receiver: ReceiverProcess
    atlassian: Any
    site: Site
    fake_site: Any
    results: dict[str, Any] = field(default_factory=dict)
    keep: bool = False
    tag: str = "scale"

    def save(self) -> None:
        """The results so far (a long run's early figures survive a later failure)."""
        path = REPO / "bench" / "results" / f"{self.tag}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(self.results, indent=1, default=str))

    def runtime(self, database: Database):  # type: ignore[no-untyped-def]
        from addon.config import Settings
        from addon.process.runtime import Runtime

        return Runtime.build(Settings(database_url=database.url, secret_key=self.site.secret_key,
                                      allow_private_networks=True))

    def env(self, database: Database, port: int | None = None) -> dict[str, str]:
        return addon_env(database, self.receiver, self.site.secret_key, port=port, keys_url=self.atlassian.keys_url)

    def serve(self, database: Database, name: str, *, worker: bool = False) -> tuple[Process, str]:
        from tests.support.http import free_port

        port = free_port()
        args = ["serve", "--port", str(port)] + ([] if worker else ["--no-worker"])
        server = addon(args, self.env(database, port), self.workdir, name)
        url = f"http://127.0.0.1:{port}"
        server.wait_healthy(url)
        return server, url

    def loadgen(self, url: str, mode: str, seconds: float, *, client_key: str, tenants: int = 0,
                rate: float = 50.0, threads: int = 8, first_seq: int = 0, max_requests: int = 1_000_000,
                background: bool = False) -> Any:
        out = tempfile.NamedTemporaryFile(suffix=".json", delete=False, dir=self.workdir).name
        argv = [PYTHON, "-m", "bench.loadgen", "--url", url, f"--client-key={client_key}",
                f"--secret={self.site.shared_secret}", "--mode", mode, "--rate", str(rate), "--seconds",
                str(seconds), "--threads", str(threads), "--first-seq", str(first_seq), "--tenants", str(tenants),
                "--max-requests", str(max_requests), "--out", out]
        proc = subprocess.Popen(argv, cwd=REPO)

        def result() -> Any:
            proc.wait(seconds + 600)
            with open(out) as f:
                return json.load(f)

        return result if background else result()


def measure_claim(run: Run, big: Database, small: Database) -> dict[str, Any]:
    """`claim()` of a batch on `big` (every webhook enabled, `due_hooks` of them with due deliveries) against
    `small` (only those), alternating; each claim's leases are released untimed, so every claim sees the same."""
    from addon.delivery.worker import DEFAULT_CONCURRENCY, per_tenant_bound, per_webhook_bound
    from addon.outbox.claim import claim, release

    batch = DEFAULT_CONCURRENCY // 2  # as the dispatcher: when half its slots are free, with its bounds
    bounds = {"per_webhook": per_webhook_bound(DEFAULT_CONCURRENCY),
              "per_tenant": per_tenant_bound(DEFAULT_CONCURRENCY)}
    runtimes = {"big": run.runtime(big), "small": run.runtime(small)}
    times: dict[str, list[float]] = {"big": [], "small": []}
    nexts: dict[str, list[float]] = {"big": [], "small": []}
    try:
        from addon.outbox.claim import next_due_in

        def one(name: str) -> float:
            started = time.perf_counter()
            jobs = claim(runtimes[name], batch, **bounds)
            elapsed = time.perf_counter() - started
            if not jobs:
                raise AssertionError(f"{name}: nothing claimed")
            release(runtimes[name], [j.delivery_id for j in jobs])
            return elapsed

        for name in times:
            for _ in range(3):
                one(name)
        deadline = time.monotonic() + 120
        for _ in range(run.sizes["claim_reps"]):
            for name in times:
                times[name].append(one(name))
                nexts[name].append(timed(lambda n=name: next_due_in(runtimes[n], set())))
            if time.monotonic() > deadline:
                break
    finally:
        for runtime in runtimes.values():
            runtime.close()
    big_s, small_s = stats_ms(times["big"]), stats_ms(times["small"])
    result = {"batch": batch, "big": big_s, "small": small_s,
              "next_due_in": {"big": stats_ms(nexts["big"]), "small": stats_ms(nexts["small"])},
              "ratio": round(big_s["median_ms"] / small_s["median_ms"], 2)}
    log(f"claim: {big_s['median_ms']} ms with every webhook enabled vs {small_s['median_ms']} ms -> "
        f"{result['ratio']}")
    return result


def measure_intake(run: Run, url: str, tenants: int) -> dict[str, Any]:
    seconds = run.sizes["intake_s"]
    log(f"intake: one request to each of {tenants:,} sites first")
    warm = run.loadgen(url, "closed", 3600, client_key="scale-{i}", tenants=tenants, max_requests=tenants,
                       first_seq=40_000_000)
    # An untimed window first: the first timed one ran half as fast again as all after it (814/s against 540-552/s,
    # one site's and every site's alike) in a quiet run.
    run.loadgen(url, "closed", seconds, client_key="scale-1", first_seq=41_000_000)
    one, many = [], []
    # One, every, every, one: the windows slow down as the intake's deliveries pile up (no worker runs), and in
    # this order the drift weighs on both alike (one, every, one, every took ~14 % off "every" in a quiet run).
    for i, which in enumerate(("one", "every", "every", "one")):
        if which == "one":
            one.append(run.loadgen(url, "closed", seconds, client_key="scale-1", first_seq=42_000_000 + i * 100_000))
        else:
            many.append(run.loadgen(url, "closed", seconds, client_key="scale-{i}", tenants=tenants,
                                    first_seq=43_000_000 + i * 100_000))
    one_s = statistics.mean(r["per_s"] for r in one)
    many_s = statistics.mean(r["per_s"] for r in many)
    result = {"tenants": tenants, "warm_up": warm, "one_tenant": one, "every_tenant": many,
              "one_per_s": round(one_s, 1), "many_per_s": round(many_s, 1), "ratio": round(many_s / one_s, 3)}
    log(f"intake: {many_s:.0f}/s over {tenants:,} sites vs {one_s:.0f}/s one site -> {result['ratio']}")
    return result


def _admin_get(run: Run, url: str, path: str, client_key: str) -> dict:
    answer = run.fake_site.call(url, "GET", path, iss=client_key)
    if answer.status_code != 200:
        raise RuntimeError(f"GET {path}: {answer.status_code} {answer.text[:200]}")
    return answer.json()


def measure_paging(run: Run, big: Database, url: str, log_webhook: int, client_key: str) -> dict[str, Any]:
    """Page 1 and page 1,000 (20 a page) of the `log` webhook's delivery log and attempts list, alternating."""
    result: dict[str, Any] = {}
    for name, table, path in (("delivery_log", "deliveries", "delivery-log"), ("attempts", "attempts", "deliveries")):
        rows = scalar(big, f"SELECT count(*) FROM {table} WHERE webhook_id = :w", {"w": log_webhook})
        page = min(DEEP_PAGE, max(2, rows // PAGE))
        before = scalar(big, f"SELECT id FROM {table} WHERE webhook_id = :w ORDER BY id DESC LIMIT 1 OFFSET :o",
                        {"w": log_webhook, "o": (page - 1) * PAGE - 1})
        first = f"/api/webhooks/{log_webhook}/{path}?limit={PAGE}"
        deep = f"{first}&before={before}"
        for _ in range(2):
            _admin_get(run, url, first, client_key)
            _admin_get(run, url, deep, client_key)
        times: dict[str, list[float]] = {"first": [], "deep": []}
        for _ in range(25):
            for which, path_and_query in (("first", first), ("deep", deep)):
                started = time.perf_counter()
                _admin_get(run, url, path_and_query, client_key)
                times[which].append(time.perf_counter() - started)
        deep_page = _admin_get(run, url, deep, client_key)
        if len(deep_page["items"]) != PAGE:
            raise AssertionError(f"{name}: page {page} has {len(deep_page['items'])} items")
        f, d = stats_ms(times["first"]), stats_ms(times["deep"])
        result[name] = {"rows": rows, "page": page, "first": f, "deep": d,
                        "ratio": round(d["median_ms"] / f["median_ms"], 2)}
        log(f"paging {name}: {rows:,} rows, page {page}: {d['median_ms']} ms vs page 1 {f['median_ms']} ms")
    return result


class Sampler(threading.Thread):
    """Every 20 ms: the longest running transaction of a prune statement and how many locks are waited for."""

    def __init__(self, database: Database) -> None:
        super().__init__(daemon=True)
        self.engine = database.engine()
        self.stop_event = threading.Event()
        self.longest_xact_s = 0.0
        self.lock_waits = 0
        self.samples = 0

    def run(self) -> None:
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            while not self.stop_event.wait(0.02):
                row = conn.execute(text(
                    "SELECT coalesce(max(extract(epoch FROM clock_timestamp() - xact_start)), 0), "
                    "(SELECT count(*) FROM pg_locks l JOIN pg_stat_activity w ON w.pid = l.pid "
                    "WHERE NOT l.granted AND w.datname = current_database()) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND query ILIKE 'DELETE%' AND state <> 'idle'")).one()
                self.longest_xact_s = max(self.longest_xact_s, float(row[0]))
                self.lock_waits = max(self.lock_waits, int(row[1]))
                self.samples += 1

    def stop(self) -> dict[str, Any]:
        self.stop_event.set()
        self.join(5)
        self.engine.dispose()
        return {"longest_prune_transaction_ms": round(self.longest_xact_s * 1000, 1),
                "most_lock_waiters": self.lock_waits, "samples": self.samples}


def _intake_latencies(rows: list[list[float]], start: float | None = None, end: float | None = None) -> dict:
    chosen = [r[2] - r[1] for r in rows if r and r[3] and (start is None or start <= r[1] <= (end or 1e18))]
    errors = sum(1 for r in rows if r and not 200 <= r[3] < 300)
    return {**stats_ms(chosen), "errors": errors}


def measure_prune(run: Run, big: Database, url: str, tenants: int) -> dict[str, Any]:
    """Intake at 50 events/s (round the sites) and a claim loop, without and then during a prune pass."""
    from addon.delivery.housekeeping import prune_attempts
    from addon.outbox.claim import claim, release

    runtime = run.runtime(big)
    old = scalar(big, "SELECT count(*) FROM attempts WHERE at < now() - interval '30 days'")
    try:
        def claim_loop(stop: threading.Event, times: list[tuple[float, float]]) -> None:
            while not stop.is_set():
                started = time.monotonic()
                jobs = claim(runtime, 32, per_webhook=16, per_tenant=32)  # the default worker's batch and bounds
                times.append((started, time.monotonic() - started))
                release(runtime, [j.delivery_id for j in jobs])
                stop.wait(0.05)

        def window(seconds: float, work) -> dict[str, Any]:  # type: ignore[no-untyped-def]
            stop, claims = threading.Event(), []  # type: ignore[var-annotated]
            thread = threading.Thread(target=claim_loop, args=(stop, claims), daemon=True)
            pending = run.loadgen(url, "rate", seconds, client_key="scale-{i}", tenants=tenants, rate=50,
                                  first_seq=50_000_000 + int(time.monotonic() * 1000) % 10_000_000, background=True)
            time.sleep(1.0)
            thread.start()
            started = time.monotonic()
            extra = work()
            ended = time.monotonic()
            stop.set()
            thread.join(10)
            rows = pending()
            return {"seconds": round(ended - started, 2), "intake": _intake_latencies(rows, started, ended),
                    "claim": stats_ms([t for s, t in claims if started <= s <= ended]), **(extra or {})}

        quiet = window(8.0, lambda: time.sleep(6.0))

        def prune() -> dict[str, Any]:
            sampler = Sampler(big)
            sampler.start()
            started = time.monotonic()
            prune_attempts(runtime)
            return {"prune_s": round(time.monotonic() - started, 2), **sampler.stop()}

        pruning = window(60.0 if run.sizes["top_attempts"] > 5_000_000 else 20.0, prune)
    finally:
        runtime.close()
    left = scalar(big, "SELECT count(*) FROM attempts WHERE at < now() - interval '30 days'")
    result = {"old_attempts": old, "old_left": left, "quiet": quiet, "pruning": pruning,
              "intake_p99_ratio": round(pruning["intake"].get("p99_ms", 0) / max(quiet["intake"]["p99_ms"], 0.1), 2),
              "intake_p99_added_ms": round(pruning["intake"].get("p99_ms", 0) - quiet["intake"]["p99_ms"], 1),
              "claim_max_added_ms": round(pruning["claim"].get("max_ms", 0) - quiet["claim"].get("max_ms", 0), 1)}
    log(f"prune: {old:,} old attempts in {pruning['prune_s']} s; intake p99 {pruning['intake'].get('p99_ms')} ms "
        f"vs {quiet['intake']['p99_ms']} ms; longest prune transaction {pruning['longest_prune_transaction_ms']} ms")
    return result


def measure_worker_memory(run: Run, big: Database) -> dict[str, Any]:
    """An `addon worker` on `big` for `worker_s` seconds (the due deliveries and those the intake left, over
    many sites): its VmHWM."""
    before = run.receiver.count()
    worker = addon(["worker"], run.env(big), run.workdir, "worker-big")
    try:
        time.sleep(run.sizes["worker_s"])
        memory = memory_kb(worker.pid)
        sites = scalar(big, "SELECT count(DISTINCT tenant_id) FROM attempts WHERE at > now() - interval '10 minutes'")
    finally:
        worker.stop()
    sent = run.receiver.count() - before
    log(f"worker: {sent:,} deliveries to {sites:,} sites in {run.sizes['worker_s']} s; VmHWM "
        f"{memory.get('vmhwm', 0) / MiB:.0f} MiB")
    return {"memory_kb": memory, "sent": sent, "sites": sites}


def measure_fairness(run: Run, burst: int) -> dict[str, Any]:
    """Tenant A's `burst` due deliveries to `burst_hooks` healthy webhooks; while they drain, tenant B's changes,
    5 a second, each timed from its intake request to B's receiver."""
    hooks, changes = run.sizes["burst_hooks"], run.sizes["changes"]
    fair = new_schema(run.scale_url)
    try:
        seed_tenants(fair, run.site, 2, prefix="fair-")  # fair-1 is A, fair-2 is B
        execute(fair, """
            INSERT INTO webhooks (tenant_id, name, url, enabled, secret, created_at, updated_at)
            SELECT t.id, 'hook ' || k, :url || '/' || t.client_key || '/' || k, true, :secret, now(), now()
            FROM tenants AS t CROSS JOIN generate_series(1, :k) AS k
            WHERE t.client_key = 'fair-1' OR k = 1 ORDER BY t.id, k""",
                {"url": run.site.hook_url, "k": hooks, "secret": _sealed_secret(run)})
        execute(fair, """
            WITH ev AS (
              INSERT INTO events (tenant_id, source, project_id, body, created_at, message_id)
              SELECT t.id, 'projectrak', '10000', :body, now(), 'burst_' || g
              FROM tenants AS t CROSS JOIN generate_series(1, :n) AS g WHERE t.client_key = 'fair-1'
              RETURNING id, tenant_id, message_id)
            INSERT INTO deliveries (tenant_id, event_id, webhook_id, message_id, status, attempt_count,
                                    next_attempt_at, created_at, schedule_started_at)
            SELECT ev.tenant_id, ev.id, w.id, ev.message_id || '_' || w.id, 'pending', 0, now(), now(), now()
            FROM ev JOIN webhooks AS w ON w.tenant_id = ev.tenant_id ORDER BY ev.id, w.id""",
                {"body": BODY, "n": burst // hooks})
        vacuum(fair, "events", "deliveries")
        b_path = "/fair-2/1"
        run.receiver.clear()
        server, url = run.serve(fair, "serve-fair", worker=True)
        try:
            # one change of B's first, untimed: the worker child is up and every connection open
            run.loadgen(url, "rate", 1.0, client_key="fair-2", rate=1.0, threads=1, first_seq=59_999_990,
                        max_requests=1)
            if run.receiver.wait_paths([b_path], 1, 60) < 1:
                raise RuntimeError("B's first change did not arrive")
            if burst:
                run.receiver.wait_count(200, 60)  # A's burst is being sent
            rows = run.loadgen(url, "rate", changes / 5.0, client_key="fair-2", rate=5.0, threads=2,
                               first_seq=60_000_000, max_requests=changes)
            got = run.receiver.wait_paths([b_path], changes + 1, 60) - 1
            received = run.receiver.rows()
            a_pending = scalar(fair, "SELECT count(*) FROM deliveries d JOIN tenants t ON t.id = d.tenant_id "
                                     "WHERE t.client_key = 'fair-1' AND d.status = 'pending'")
            memory = {name: memory_kb(pid) for name, pid in
                      [("server_web", c) for c in children(server.pid)]}
        finally:
            server.stop()
    finally:
        if not run.keep:
            fair.drop()
    sent = {int(r[0]) + 1_700_000_000_000: r[1] for r in rows if r and 200 <= r[3] < 300}
    answered = {int(r[0]) + 1_700_000_000_000: r[2] for r in rows if r and 200 <= r[3] < 300}
    arrived = {int(ts): at for path, ts, at in received if path == b_path and ts is not None}
    latencies = [arrived[ts] - sent[ts] for ts in sent if ts in arrived]
    after_202 = [arrived[ts] - answered[ts] for ts in answered if ts in arrived]
    a_sent = sum(1 for path, _, _ in received if path.startswith("/fair-1/"))
    s = stats_ms(latencies)
    result = {"burst": burst, "hooks": hooks, "changes": changes, "b_received": got, "b": s,
              "b_after_202": stats_ms(after_202),
              "a_sent_meanwhile": a_sent, "a_still_pending_after": a_pending, "memory_kb": memory}
    log(f"fairness with A's burst of {burst:,}: B p50 {s.get('median_ms')} / p99 {s.get('p99_ms')} ms over "
        f"{s['n']} changes; A sent {a_sent:,}, {a_pending:,} still pending after")
    return result


def _sealed_secret(run: Run) -> str:
    from addon.sending.signing import generate_secret
    from addon.storage.secrets import SecretBox

    return SecretBox(run.site.secret_key).seal(generate_secret())


def run_parts(run: Run, parts: set[str]) -> dict[str, Any]:
    sizes, results = run.sizes, run.results
    big = small = None
    try:
        if parts & {"claim", "intake", "attempts", "memory"}:
            t0 = time.monotonic()
            big, small = new_schema(run.scale_url), new_schema(run.scale_url)
            seed_tenants(big, run.site, sizes["tenants"])
            seed_webhooks(big, run.site, sizes["hooks_per_tenant"])
            step = sizes["tenants"] // sizes["due_hooks"]
            due = [int(r[0]) for r in execute(big, """
                SELECT min(w.id) FROM webhooks w WHERE w.tenant_id % :step = 0 GROUP BY w.tenant_id
                ORDER BY 1 LIMIT :n""", {"step": step, "n": sizes["due_hooks"]})]
            per_hook = sizes["waiting"] // len(due)
            seed_due(big, due, per_hook, "due_")
            seed_tenants(small, run.site, len(due), prefix="small-")
            seed_webhooks(small, run.site, 1)
            seed_due(small, [int(r[0]) for r in execute(small, "SELECT id FROM webhooks ORDER BY id")], per_hook,
                     "due_")
            for database in (big, small):
                vacuum(database, "tenants", "webhooks", "events", "deliveries")
            results["seed"] = {"tenants": sizes["tenants"], "webhooks": scalar(big, "SELECT count(*) FROM webhooks"),
                               "waiting": scalar(big, "SELECT count(*) FROM deliveries WHERE status = 'pending'"),
                               "due_webhooks": len(due), "seconds": round(time.monotonic() - t0, 1)}
            log(f"seeded {results['seed']}")
        if "claim" in parts:
            results["claim"] = measure_claim(run, big, small)
        if small is not None and not run.keep:
            small.drop()
            small = None
        if parts & {"intake", "attempts", "memory"}:
            assert big is not None
            server, url = run.serve(big, "serve-big")
            try:
                if "intake" in parts:
                    results["intake"] = measure_intake(run, url, sizes["tenants"])
                if "attempts" in parts:
                    results["attempts"] = measure_attempts(run, big, url)
                results["web_memory_kb"] = {f"web{i}": memory_kb(pid) for i, pid in enumerate(children(server.pid))}
            finally:
                server.stop()
            if "memory" in parts:
                results["worker_memory"] = measure_worker_memory(run, big)
        if "fairness" in parts:
            # no burst (the baseline: B alone), a tenth of it, all of it
            bursts = sorted({0, max(sizes["burst_hooks"], sizes["burst"] // 10), sizes["burst"]})
            results["fairness"] = [measure_fairness(run, burst) for burst in bursts]
    finally:
        for database in (big, small):
            if database is not None and not run.keep:
                database.drop()
    return results


def _log_webhook(big: Database) -> tuple[int, str]:
    """The webhook whose log is paged (the last site's second: a site's first may be one of the due ones), and
    its site's client key."""
    log_webhook = int(scalar(big, "SELECT id FROM webhooks WHERE tenant_id = (SELECT max(id) FROM tenants) "
                                  "ORDER BY id LIMIT 1 OFFSET 1"))
    log_key = scalar(big, "SELECT client_key FROM tenants WHERE id = (SELECT tenant_id FROM webhooks WHERE id = :w)",
                     {"w": log_webhook})
    return log_webhook, log_key


def _attempt_steps(sizes: dict[str, Any]) -> list[int]:
    return sorted({*[s for s in sizes["attempt_steps"] if s < sizes["top_attempts"]], sizes["top_attempts"]})


def resume_attempts(run: Run, schema: str) -> None:
    """The attempts part again on the rows a stopped run kept (`--keep`), from its first step not measured: the
    sites and webhooks are given this run's secrets and fake site (the stopped run's lived in its memory), the
    seeder its place from the rows, and the curve so far is read from the results file of the same `--tag`."""
    from addon.sending.signing import generate_secret
    from addon.storage.secrets import SecretBox

    url = make_url(run.scale_url).update_query_dict({"options": f"-csearch_path={schema}"})
    big = Database("postgresql", url.render_as_string(hide_password=False))
    box = SecretBox(run.site.secret_key)
    execute(big, "UPDATE tenants SET shared_secret = :secret, base_url = :base",
            {"secret": box.seal(run.site.shared_secret), "base": run.site.base_url})
    execute(big, "UPDATE webhooks SET secret = :secret", {"secret": box.seal(generate_secret())})
    earlier_path = REPO / "bench" / "results" / f"{run.tag}.json"
    earlier = json.loads(earlier_path.read_text()) if earlier_path.is_file() else {}
    run.results.update({key: value for key, value in earlier.items() if key in ("seed", "attempts")})
    log_webhook, _ = _log_webhook(big)
    sizes = run.sizes
    seeder = AttemptSeeder(big, sizes["busy_tenants"], log_webhook, sizes["log_attempts"],
                           span_events=max(1, _attempt_steps(sizes)[-1] // (10 * ATTEMPTS_PER_DELIVERY)))
    seeder.total = int(scalar(big, "SELECT count(*) FROM attempts"))
    seeder.log_total = int(scalar(big, "SELECT count(*) FROM attempts WHERE webhook_id = :w", {"w": log_webhook}))
    seeder.next_event = 1 + int(scalar(big, "SELECT coalesce(max(substr(message_id, 7)::bigint), 0) FROM events "
                                            "WHERE message_id LIKE 'scale\\_%'"))
    curve = run.results.get("attempts") or [{"insert_per_s": 1}]
    seeder.seconds = seeder.total / curve[-1]["insert_per_s"]  # the stopped run's rate, for the rate shown
    run.results["resumed"] = {"schema": schema, "attempts": seeder.total, "first_command": earlier.get("command"),
                              "first_started": earlier.get("started")}
    log(f"resuming on {schema}: {seeder.total:,} attempts (log webhook {seeder.log_total:,}), next event "
        f"{seeder.next_event:,}")
    server, url_ = run.serve(big, "serve-big")
    try:
        run.results["attempts"] = measure_attempts(run, big, url_, seeder)
    finally:
        server.stop()


def measure_attempts(run: Run, big: Database, url: str, seeder: AttemptSeeder | None = None
                     ) -> list[dict[str, Any]]:
    sizes = run.sizes
    log_webhook, log_key = _log_webhook(big)
    steps = _attempt_steps(sizes)
    if seeder is None:
        seeder = AttemptSeeder(big, sizes["busy_tenants"], log_webhook, sizes["log_attempts"],
                               span_events=max(1, steps[-1] // (10 * ATTEMPTS_PER_DELIVERY)))
    curve = list(run.results.get("attempts", []))
    measured_up_to = max((point["attempts"] for point in curve), default=0)  # a resumed run's earlier steps
    for target in steps:
        if target <= measured_up_to:
            continue
        seeder.grow_to(target)
        t0 = time.monotonic()
        vacuum(big, "events", "deliveries", "attempts")
        vacuum_s = round(time.monotonic() - t0, 1)
        size = scalar(big, "SELECT pg_size_pretty(pg_database_size(current_database()))")
        point: dict[str, Any] = {"attempts": seeder.total, "log_webhook_attempts": seeder.log_total,
                                 "insert_per_s": round(seeder.total / seeder.seconds), "seed_s": round(seeder.seconds),
                                 "vacuum_s": vacuum_s, "database_size": size}
        log(f"--- {seeder.total:,} attempts ({size})")
        point["paging"] = measure_paging(run, big, url, log_webhook, log_key)
        point["prune"] = measure_prune(run, big, url, sizes["tenants"])
        curve.append(point)
        run.results["attempts"] = curve
        run.save()
    run.results["migration"] = measure_migration(run, big, url, sizes["tenants"])
    return curve


def measure_migration(run: Run, big: Database, url: str, tenants: int) -> dict[str, Any]:
    """Migration 0010 (this work's schema change) on the largest database: down to 0009 (its indexes dropped),
    then `upgrade()` to the head timed while the intake, at the head's code, runs at 50 events/s (10-second
    windows until it is done): the intake's p99 and errors meanwhile. Then the earlier migrations 0008 and 0009
    (ordered delivery and the operational webhook) on the same rows, down to 0007 and up again, timed without the
    intake: the head's code cannot store against that schema, and the old code is not here, so their figure is
    how long a deployment coming from 0007 holds the deliveries' writes."""
    from alembic import command

    from addon.storage.migrate import upgrade
    from tests.support.migrations import migrate_to

    engine = big.engine()

    def downgrade_to(revision: str) -> float:
        started = time.monotonic()
        migrate_to(engine, command.downgrade, revision)
        return round(time.monotonic() - started, 1)

    try:
        downgrade_to("0009")
        done: dict[str, Any] = {}

        def migrate_now() -> None:
            started = time.monotonic()
            try:
                upgrade(engine)
            except Exception as exc:  # noqa: BLE001 - reported with the figures
                done["error"] = f"{type(exc).__name__}: {exc}"
            done["seconds"] = round(time.monotonic() - started, 1)

        thread = threading.Thread(target=migrate_now, daemon=True)
        rows: list[list[float]] = []
        started = time.monotonic()
        thread.start()
        while thread.is_alive():
            rows += run.loadgen(url, "rate", 10.0, client_key="scale-{i}", tenants=tenants, rate=50,
                                first_seq=70_000_000 + len(rows))
        ended = time.monotonic()
        result: dict[str, Any] = {**done, "intake": _intake_latencies(rows, started, ended)}
        log(f"migration 0010: {result.get('seconds')} s; intake meanwhile {result['intake']}")
        run.results["migration"] = result
        run.save()
        earlier: dict[str, Any] = {"downgrade_s": downgrade_to("0007")}
        started = time.monotonic()
        upgrade(engine)
        earlier["upgrade_s"] = round(time.monotonic() - started, 1)
        earlier["deliveries"] = scalar(big, "SELECT count(*) FROM deliveries")
        result["earlier_0008_0009"] = earlier
        log(f"migrations 0008-0011 from 0007, no intake: {earlier}")
    finally:
        engine.dispose()
    return result


def table(results: dict[str, Any]) -> str:
    rows = ["| figure | value | baseline (same run) | ratio | goal | met |", "|---|---|---|---|---|---|"]

    def mark(ok: bool) -> str:
        return "yes" if ok else "**no**"

    claim = results.get("claim")
    seed = results.get("seed", {})
    if claim:
        rows.append(f"| claim a batch of {claim['batch']}, {seed.get('webhooks', 0):,} enabled webhooks, "
                    f"{seed.get('due_webhooks')} with {seed.get('waiting', 0):,} due | {claim['big']['median_ms']} ms "
                    f"| {seed.get('due_webhooks')} webhooks: {claim['small']['median_ms']} ms | {claim['ratio']} | "
                    f"≤ 1.5 | {mark(claim['ratio'] <= 1.5)} |")
        nd = claim["next_due_in"]
        rows.append(f"| … `next_due_in` | {nd['big']['median_ms']} ms | {nd['small']['median_ms']} ms | "
                    f"{nd['big']['median_ms'] / max(nd['small']['median_ms'], 0.001):.2f} | — | — |")
    intake = results.get("intake")
    if intake:
        rows.append(f"| intake, closed loop, round {intake['tenants']:,} sites | {intake['many_per_s']:.0f}/s | "
                    f"one site {intake['one_per_s']:.0f}/s | {intake['ratio'] * 100:.0f} % | ≥ 90 % | "
                    f"{mark(intake['ratio'] >= 0.9)} |")
    for point in results.get("attempts", []):
        n = f"{point['attempts']:,} attempts"
        for name, label in (("delivery_log", "delivery log"), ("attempts", "attempts list")):
            p = point["paging"][name]
            rows.append(f"| {n}: {label} page {p['page']:,} of a webhook with {p['rows']:,} rows | "
                        f"{p['deep']['median_ms']} ms | page 1: {p['first']['median_ms']} ms | {p['ratio']} | ≤ 1.5 | "
                        f"{mark(p['ratio'] <= 1.5)} |")
        pr = point["prune"]
        pruning, quiet = pr["pruning"], pr["quiet"]
        # the goal is the intake's p99; the claim loop is for information: without a worker, the intake's
        # deliveries pile up on thousands of webhooks, and the claim's loose scan walks every one of them
        stall = max(pr["intake_p99_added_ms"], 0)
        rows.append(f"| {n}: prune pass ({pr['old_attempts']:,} old attempts, {pruning['prune_s']} s; longest "
                    f"transaction {pruning['longest_prune_transaction_ms']} ms, lock waiters "
                    f"{pruning['most_lock_waiters']}): intake p99 / (for information) claim max during it | "
                    f"{pruning['intake'].get('p99_ms')} / {pruning['claim'].get('max_ms')} ms | without: "
                    f"{quiet['intake'].get('p99_ms')} / {quiet['claim'].get('max_ms')} ms | "
                    f"+{pr['intake_p99_added_ms']} / +{pr['claim_max_added_ms']} ms | ≤ +50 ms | {mark(stall <= 50)} |")
    for name, memory in results.get("web_memory_kb", {}).items():
        hwm = memory.get("vmhwm", 0) / MiB
        rows.append(f"| web process ({name}) VmHWM after the intake over every site | {hwm:.0f} MiB | — | — | "
                    f"< 150 MiB | {mark(hwm < 150)} |")
    migration = results.get("migration")
    if migration:
        i = migration["intake"]
        rows.append(f"| migration 0010 (5 indexes built concurrently) at {results['attempts'][-1]['attempts']:,} "
                    f"attempts: {migration.get('seconds')} s{', ' + migration['error'] if 'error' in migration else ''}"
                    f"; intake meanwhile | p99 {i.get('p99_ms')} / max {i.get('max_ms')} ms, {i.get('errors')} "
                    f"errors | — | — | not blocked | {mark('error' not in migration and i.get('errors') == 0)} |")
        earlier = migration.get("earlier_0008_0009")
        if earlier:
            rows.append(f"| migrations 0008-0011 from 0007 on the same rows ({earlier['deliveries']:,} deliveries), "
                        f"no intake | {earlier['upgrade_s']} s | — | — | (not this work's) | — |")
    worker = results.get("worker_memory")
    if worker:
        hwm = worker["memory_kb"].get("vmhwm", 0) / MiB
        rows.append(f"| `addon worker` VmHWM after {worker['sent']:,} deliveries to {worker['sites']:,} sites | "
                    f"{hwm:.0f} MiB | — | — | < 150 MiB | {mark(hwm < 150)} |")
    fairness = results.get("fairness", [])
    alone = next((f for f in fairness if f["burst"] == 0), None)
    for f in fairness:
        b, b202 = f["b"], f.get("b_after_202", {})
        during = (f"during A's burst of {f['burst']:,} to {f['hooks']} webhooks ({f['a_sent_meanwhile']:,} of A's "
                  f"sent meanwhile, {f['a_still_pending_after']:,} still pending after)" if f["burst"]
                  else "with A idle (the baseline)")
        base = (f"B alone: p99 {alone['b'].get('p99_ms')} ms" if alone and f["burst"] else "—")
        ratio = (f"{b.get('p99_ms', 0) / alone['b']['p99_ms']:.2f}" if alone and f["burst"]
                 and alone["b"].get("p99_ms") else "—")
        rows.append(f"| fairness: B's change, from its intake request to its receiver, {during} | p50 "
                    f"{b.get('median_ms')} / p99 {b.get('p99_ms')} ms over {b['n']} (from the `202`: p50 "
                    f"{b202.get('median_ms')} / p99 {b202.get('p99_ms')} ms) | {base} | {ratio} | p99 < 100 ms | "
                    f"{mark(b['n'] == f['changes'] and b.get('p99_ms', 1e9) < 100)} |")
    return "\n".join(rows)


def sizes_for(quick: bool, factor: float = 1.0) -> dict[str, Any]:
    """The sizes of a full or quick run, the counts multiplied by `factor` (`run_all --scale`)."""
    sizes = dict(QUICK if quick else FULL)
    for name in ("tenants", "waiting", "top_attempts", "log_attempts", "burst"):
        sizes[name] = max(1, int(sizes[name] * factor))
    sizes["attempt_steps"] = [max(1, int(n * factor)) for n in sizes["attempt_steps"]]
    return sizes


def run(ctx: Any) -> dict[str, Any]:
    """`bench.run_all`'s entry (scenario 7): PostgreSQL only; its results also go to bench/results/scale.json."""
    if ctx.pg_url is None:
        raise RuntimeError("the scale benchmark runs on PostgreSQL only")
    return run_scale(sizes_for(ctx.quick, ctx.scale), ctx.pg_url, {"claim", "intake", "attempts", "memory", "fairness"},
               "scale-quick" if ctx.quick else "scale", command="python -m bench.run_all (scale)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a few minutes)")
    parser.add_argument("--pg-url", default=os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
                        or DEFAULT_PG_URL, help="any database of the server; `scale` is created beside it")
    parser.add_argument("--top-attempts", type=int, help="the largest attempt count (default: 10 M, quick 1 M)")
    parser.add_argument("--tenants", type=int, help="override the number of sites")
    parser.add_argument("--only", default="claim,intake,attempts,memory,fairness")
    parser.add_argument("--tag", default="scale")
    parser.add_argument("--keep", action="store_true", help="keep the schemas (and their rows) afterwards")
    parser.add_argument("--resume", metavar="SCHEMA",
                        help="go on with the attempts part on the schema a stopped run kept (with --keep), its "
                             "earlier figures read from the results file of the same --tag")
    args = parser.parse_args(argv)
    sizes = sizes_for(args.quick)
    if args.top_attempts:
        sizes["top_attempts"] = args.top_attempts
    if args.tenants:
        sizes["tenants"] = args.tenants
    results = run_scale(sizes, args.pg_url, set(args.only.split(",")), args.tag, keep=args.keep,
                  command="python -m bench.scale " + " ".join(argv if argv is not None else sys.argv[1:]),
                  resume=args.resume)
    print(table(results))
    return 0


def run_scale(sizes: dict[str, Any], pg_url: str, parts: set[str], tag: str, *, keep: bool = False,
        command: str = "", resume: str | None = None) -> dict[str, Any]:
    from tests.support.atlassian import FakeAtlassian

    scale_url = scale_database_url(pg_url)
    workdir = Path(tempfile.mkdtemp(prefix="scale-"))
    receiver = ReceiverProcess()
    atlassian = FakeAtlassian()
    fake_site = atlassian.new_site()
    fake_site.add_project(10000, "DEMO", "Demo project")
    fake_site.admins.add("admin-account")
    site = Site(new_secret_key(), fake_site.base_url, fake_site.shared_secret, receiver.url(""))
    results_path = REPO / "bench" / "results" / f"{tag}.json"
    results: dict[str, Any] = {"command": command, "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                               "machine": machine(), "postgresql": postgres_version(scale_url), "sizes": sizes}
    scale_run = Run(sizes, scale_url, workdir, receiver, atlassian, site, fake_site, results, keep, tag)
    started = time.monotonic()
    try:
        if resume:
            resume_attempts(scale_run, resume)
        else:
            run_parts(scale_run, parts)
    finally:
        results["elapsed_s"] = round(time.monotonic() - started, 1)
        scale_run.save()
        receiver.stop()
        atlassian.stop()
    results_path.with_suffix(".md").write_text(f"`{command}` — {results['started']}, {results['elapsed_s']} s\n\n"
                                               f"{table(results)}\n")
    log(f"done in {results['elapsed_s']} s; results in {results_path}")
    return results


if __name__ == "__main__":
    raise SystemExit(main())
