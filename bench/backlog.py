"""(5) Backlog: the time the delivery worker's `claim()` takes to lease a batch (half the default concurrency:
the dispatcher claims when half its slots are free) with
1,000 and with 1,000,000 due deliveries waiting, and the time of its `next_due_in()` (what the dispatcher asks
when it finds nothing to claim).

The two sizes live side by side in two databases (two schemas of one PostgreSQL server, two SQLite files), and
every timed call alternates between them, so that the machine's drift during the run falls on both alike.
The rows are written with one `INSERT … SELECT` (PostgreSQL `generate_series`, SQLite a recursive CTE): 5
webhooks, one event per 5 deliveries, all pending and due. On PostgreSQL the tables are then VACUUMed and
checkpointed (on SQLite, the WAL) so that the claim is timed, not the I/O of the insert, but not ANALYZEd: the
planner sees the backlog as a burst its statistics have not caught up with, the hardest case. Each timed
claim is followed by an untimed `release()` of its leases, so every claim sees the same backlog. The claim runs
in this process, on the add-on's own engine and session factory.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from sqlalchemy import text

from addon.delivery.worker import DEFAULT_CONCURRENCY
from bench.common import WEBHOOK_PATHS, add_webhooks, log, new_secret_key, seed_tenant
from bench.context import Context

BATCH = DEFAULT_CONCURRENCY // 2  # the dispatcher claims when half its slots are free


def _fill(engine, kind: str, tenant_id: int, webhook_ids: list[int], start: int, stop: int,
          due_minutes_ago: int = 1) -> None:
    """Events start..stop-1 and one delivery to each of `webhook_ids` per event, due `due_minutes_ago` ago."""
    body = '{"data":{"event":"updated","user":"bench-user","timestamp":1700000000000,"project":{"id":10000,' \
           '"key":"DEMO","name":"Demo project"},"fields":[]}}'
    with engine.begin() as conn:
        if kind == "postgresql":
            series_events = "SELECT g AS i FROM generate_series(:start, :stop - 1) AS g"
            now = f"now() - interval '{int(due_minutes_ago)} minutes'"
        else:
            series_events = ("WITH RECURSIVE s(i) AS (SELECT :start UNION ALL SELECT i + 1 FROM s WHERE i + 1 < :stop)"
                             " SELECT i FROM s")
            now = f"datetime('now', '-{int(due_minutes_ago)} minutes')"
        conn.execute(text(
            f"INSERT INTO events (id, tenant_id, source, project_id, body, created_at) "
            f"SELECT i + 1, :tenant, 'projectrak', '10000', :body, {now} FROM ({series_events}) AS e"),
            {"start": start, "stop": stop, "tenant": tenant_id, "body": body})
        hooks = " UNION ALL ".join(f"SELECT {k} AS k, {w} AS w" for k, w in enumerate(webhook_ids))
        conn.execute(text(
            f"INSERT INTO deliveries (tenant_id, event_id, webhook_id, message_id, status, attempt_count, "
            f"next_attempt_at, schedule_started_at, created_at) "
            f"SELECT :tenant, e.i + 1, h.w, 'msg_bench_' || e.i || '_' || h.k, 'pending', 0, {now}, {now}, {now} "
            f"FROM ({series_events}) AS e CROSS JOIN ({hooks}) AS h"),
            {"start": start, "stop": stop, "tenant": tenant_id})
        if kind == "postgresql":
            conn.execute(text("SELECT setval(pg_get_serial_sequence('events', 'id'), :n)"), {"n": stop + 1})
    # Measure the claim, not the aftermath of writing a million rows at once: on PostgreSQL, vacuum them (as
    # autovacuum soon would; VACUUM does not ANALYZE, so the planner still has no statistics on the burst) and
    # write them out with a checkpoint; on SQLite, copy the WAL into the database file, as the add-on's checkpoint
    # thread does after so many commits, not after one big one (`addon.storage.engine.WalCheckpointer`).
    if kind == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM events"))
            conn.execute(text("VACUUM deliveries"))
            conn.execute(text("CHECKPOINT"))
    else:  # on the DBAPI connection: every transaction of the engine begins IMMEDIATE, and no checkpoint runs in one
        raw = engine.raw_connection()
        try:
            raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        finally:
            raw.close()


def _stats(times: list[float]) -> dict[str, float]:
    times = sorted(times)
    return {"median_ms": round(statistics.median(times) * 1000, 3),
            "p90_ms": round(times[int(len(times) * 0.9)] * 1000, 3), "reps": len(times)}


#: Longest one series of timed calls may take (a slow claim, e.g. the code before the fix, ends it early).
SERIES_MAX_S = 20.0


def _time(call) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def _claim_and_release(runtime, busy: set[int] | None) -> float:  # type: ignore[no-untyped-def]
    """Time one `claim()`; its leases are then released (untimed) so that the next claim sees the same backlog."""
    from addon.outbox.claim import claim, release

    started = time.perf_counter()
    jobs = claim(runtime, BATCH, busy)
    elapsed = time.perf_counter() - started
    if len(jobs) != BATCH:
        raise AssertionError(f"claimed {len(jobs)} instead of {BATCH}")
    release(runtime, [j.delivery_id for j in jobs])
    return elapsed


class _Backlog:
    """One database holding `deliveries` due deliveries, and the add-on's runtime on it."""

    def __init__(self, ctx: Context, kind: str, deliveries: int, busy_ahead: int = 0) -> None:
        from addon.config import Settings
        from addon.process.runtime import Runtime

        self.database = ctx.new_database(kind)
        secret_key = new_secret_key()
        self.runtime = Runtime.build(Settings(database_url=self.database.url, secret_key=secret_key,
                                              allow_private_networks=True))
        try:
            tenant_id = seed_tenant(self.database, secret_key)
            seeded = add_webhooks(self.database, secret_key, tenant_id,
                                  [ctx.receiver.url(p) for p in WEBHOOK_PATHS])
            self.busy = {seeded.webhook_ids[0]}
            started = time.monotonic()
            events = deliveries // len(WEBHOOK_PATHS)
            _fill(self.runtime.engine, kind, tenant_id, seeded.webhook_ids, 0, events)
            if busy_ahead:  # the busy webhook's own deliveries, due before everyone else's (a hanging receiver)
                _fill(self.runtime.engine, kind, tenant_id, [seeded.webhook_ids[0]], events, events + busy_ahead,
                      due_minutes_ago=2)
            self.fill_s = round(time.monotonic() - started, 1)
        except BaseException:
            self.close()
            raise
        self.deliveries = deliveries // len(WEBHOOK_PATHS) * len(WEBHOOK_PATHS) + busy_ahead
        self.busy_ahead = busy_ahead

    def close(self) -> None:
        self.runtime.close()
        self.database.drop()


def _alternating(backlogs: list[_Backlog], measurements: dict[str, Any],
                 reps: int) -> dict[tuple[int, str], list[float]]:
    """Each measurement `reps` times (at most `SERIES_MAX_S` per series), every call alternating between the
    backlogs, after three untimed calls of the first (caches, connection pools); times by (backlog index, name)."""
    first = next(iter(measurements.values()))
    for backlog in backlogs:
        for _ in range(3):
            first(backlog)
    times: dict[tuple[int, str], list[float]] = {}
    for name, timed in measurements.items():
        deadline = time.monotonic() + SERIES_MAX_S
        for _ in range(reps):
            if times.get((0, name)) and time.monotonic() > deadline:
                break
            for index, backlog in enumerate(backlogs):
                times.setdefault((index, name), []).append(timed(backlog))
    return times


def measure(ctx: Context, kind: str, sizes: tuple[int, int], reps: int) -> dict[str, Any]:
    """Both backlogs side by side, in two databases of the same server, and every timed call alternating between
    them: the machine's drift (other work, autovacuum after the big insert) falls on both sizes alike."""
    from addon.outbox.claim import next_due_in

    backlogs: list[_Backlog] = []
    try:
        for size in sizes:
            backlogs.append(_Backlog(ctx, kind, size))
        measurements = {
            "claim": lambda b: _claim_and_release(b.runtime, None),
            "claim_one_webhook_busy": lambda b: _claim_and_release(b.runtime, b.busy),
            "next_due_in": lambda b: _time(lambda: next_due_in(b.runtime, set())),
        }
        times = _alternating(backlogs, measurements, reps)
        per_size = []
        for index, backlog in enumerate(backlogs):
            row = {"deliveries": backlog.deliveries, "fill_s": backlog.fill_s,
                   **{name: _stats(times[index, name]) for name in measurements}}
            log(f"backlog {kind} {row['deliveries']}: claim {row['claim']['median_ms']} ms, busy "
                f"{row['claim_one_webhook_busy']['median_ms']} ms, next_due_in {row['next_due_in']['median_ms']} ms")
            per_size.append(row)
    finally:
        for backlog in backlogs:
            backlog.close()
    small, big = per_size

    def ratio(name: str) -> float:
        return round(big[name]["median_ms"] / small[name]["median_ms"], 3)

    return {"database": kind, "batch": BATCH, "sizes": per_size, "claim_ratio": ratio("claim"),
            "claim_busy_ratio": ratio("claim_one_webhook_busy"), "next_due_in_ratio": ratio("next_due_in")}


def measure_busy_ahead(ctx: Context, kind: str, aheads: tuple[int, int], reps: int) -> dict[str, Any]:
    """A webhook at its bound whose due deliveries are older than everyone else's (a receiver that hangs: the
    dispatcher sends it one at a time while its deliveries pile up), with `aheads` of them in front of 1,000 due
    deliveries of the other webhooks: the claim and `next_due_in` must not pass over them one by one."""
    from addon.outbox.claim import next_due_in

    backlogs: list[_Backlog] = []
    try:
        for ahead in aheads:
            backlogs.append(_Backlog(ctx, kind, 1_000, busy_ahead=ahead))
        measurements = {
            "claim_one_webhook_busy": lambda b: _claim_and_release(b.runtime, b.busy),
            "next_due_in_one_webhook_busy": lambda b: _time(lambda: next_due_in(b.runtime, b.busy)),
        }
        times = _alternating(backlogs, measurements, reps)
        per_size = []
        for index, backlog in enumerate(backlogs):
            row = {"busy_ahead": backlog.busy_ahead, **{name: _stats(times[index, name]) for name in measurements}}
            log(f"backlog {kind}, {backlog.busy_ahead} of a busy webhook ahead: claim "
                f"{row['claim_one_webhook_busy']['median_ms']} ms, next_due_in "
                f"{row['next_due_in_one_webhook_busy']['median_ms']} ms")
            per_size.append(row)
    finally:
        for backlog in backlogs:
            backlog.close()
    small, big = per_size[0], per_size[-1]
    return {"database": kind, "batch": BATCH, "sizes": per_size,
            "claim_ratio": round(big["claim_one_webhook_busy"]["median_ms"]
                                 / small["claim_one_webhook_busy"]["median_ms"], 3),
            "next_due_in_ratio": round(big["next_due_in_one_webhook_busy"]["median_ms"]
                                       / small["next_due_in_one_webhook_busy"]["median_ms"], 3)}


def _add_idle_webhooks(engine, count: int) -> None:  # type: ignore[no-untyped-def]
    """`count` more enabled webhooks of the tenant, copies of its first, with nothing waiting."""
    with engine.begin() as conn:
        first = conn.execute(text("SELECT min(id) FROM webhooks")).scalar_one()
        conn.execute(text(
            "INSERT INTO webhooks (tenant_id, name, url, secret, enabled, created_at, updated_at) "
            "SELECT w.tenant_id, 'idle ' || n.i, w.url, w.secret, w.enabled, w.created_at, w.updated_at "
            "FROM webhooks AS w CROSS JOIN (WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s "
            "WHERE i < :count) SELECT i FROM s) AS n WHERE w.id = :first"), {"count": count, "first": first})


def measure_idle_webhooks(ctx: Context, kind: str, counts: tuple[int, ...], reps: int) -> dict[str, Any]:
    """What the per-webhook claim costs instead: one index probe per enabled webhook of an active tenant, whether
    it has anything waiting or not. 1,000 due deliveries of 5 webhooks, one of them busy, plus `counts` enabled
    webhooks with nothing waiting (added between the series)."""
    from addon.outbox.claim import next_due_in

    backlog = _Backlog(ctx, kind, 1_000)
    per_count = []
    try:
        added = 0
        for count in counts:
            if count > added:
                _add_idle_webhooks(backlog.runtime.engine, count - added)
            added = count
            for _ in range(3):
                _claim_and_release(backlog.runtime, backlog.busy)
            claims = [_claim_and_release(backlog.runtime, backlog.busy) for _ in range(reps)]
            due = [_time(lambda: next_due_in(backlog.runtime, backlog.busy)) for _ in range(reps)]
            row = {"idle_webhooks": count, "claim_one_webhook_busy": _stats(claims),
                   "next_due_in_one_webhook_busy": _stats(due)}
            log(f"backlog {kind}, {count} idle webhooks: claim {row['claim_one_webhook_busy']['median_ms']} ms, "
                f"next_due_in {row['next_due_in_one_webhook_busy']['median_ms']} ms")
            per_count.append(row)
    finally:
        backlog.close()
    return {"database": kind, "batch": BATCH, "counts": per_count}


def run(ctx: Context) -> dict[str, Any]:
    big = ctx.count(1_000_000, 1_000_000)
    reps = 20 if ctx.quick else 100
    runs = []
    for kind in ctx.databases:
        if kind == "sqlite" and ctx.quick:
            continue
        runs.append(measure(ctx, kind, (1_000, big), reps))
    busy_ahead = [measure_busy_ahead(ctx, kind, (1_000, ctx.count(100_000, 100_000)), reps)
                  for kind in ctx.databases]
    idle_webhooks = [measure_idle_webhooks(ctx, kind, (0, 1_000, 5_000), reps) for kind in ctx.databases]
    return {"runs": runs, "busy_ahead": busy_ahead, "idle_webhooks": idle_webhooks}
