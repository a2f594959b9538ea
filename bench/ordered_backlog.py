"""The claim with ordered webhooks (CONTRACT §10.2): `claim()` and `next_due_in()` with 1,000 and with 1,000,000
due deliveries waiting, 2 of the 5 webhooks ordered, the deliveries spread over 50 projects (lines), numbered in
each project as the intake numbers them. As `bench.backlog` (whose `_Backlog` and fill this reuses): two databases
side by side, every timed call alternating between them, a claim of half the default slots, each claim's leases
released untimed afterwards so every claim sees the same backlog; PostgreSQL vacuumed, not analyzed. Beside them,
the same two sizes with no webhook ordered (the claim as it was before ordered webhooks): four databases, each timed
call alternating between all four, so the machine's drift falls on all alike.

Two cases:
- `claim`: every line's head is due: the claim takes the oldest of the unordered webhooks' and the ordered lines'
  heads.
- `claim_ordered_heads_in_flight`: each ordered line's head is leased (being sent, or a hanging receiver): what
  waits behind those heads (2/5 of the backlog) must cost the claim nothing. It then takes the unordered ones.

    .venv/bin/python -m bench.ordered_backlog --pg-url postgresql+psycopg://postgres@127.0.0.1:5432/ordered_bench \
        [--databases postgresql,sqlite] [--big 1000000] [--reps 40]

Prints one JSON document (and progress on stderr); the ratio big/small of each median is what docs/benchmarks.md
keeps, as absolute times on this shared machine are noisy.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, text

from bench.backlog import BATCH, _Backlog, _claim_and_release, _stats, _time
from bench.common import ReceiverProcess, log
from bench.context import Context

PROJECTS = 50
ORDERED_WEBHOOKS = 2  # of the 5 `bench.backlog` seeds


def _order(backlog: _Backlog, kind: str, ordered_webhooks: int) -> None:
    """Number the backlog as the intake would: event i is of project i mod 50, its sequence i div 50 + 1 (the
    events' ids are i + 1); the first `ordered_webhooks` webhooks ordered; each project's counter row (its line)."""
    engine = backlog.runtime.engine
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE events SET project_id = CAST((id - 1) % {PROJECTS} AS VARCHAR(64)), "
                          f"sequence = (id - 1) / {PROJECTS} + 1"))
        conn.execute(text(f"UPDATE deliveries SET project_id = CAST((event_id - 1) % {PROJECTS} AS VARCHAR(64)), "
                          f"sequence = (event_id - 1) / {PROJECTS} + 1"))
        tenant_id = conn.execute(text("SELECT min(id) FROM tenants")).scalar_one()
        conn.execute(text("INSERT INTO project_sequences (tenant_id, project_id, last_sequence) "
                          "SELECT :tenant, project_id, max(sequence) FROM events GROUP BY project_id"),
                     {"tenant": tenant_id})
        ordered = list(conn.execute(text("SELECT id FROM webhooks ORDER BY id LIMIT :n"),
                                    {"n": ordered_webhooks}).scalars())
        if ordered:
            conn.execute(text("UPDATE webhooks SET ordered = true WHERE id IN :ids").bindparams(
                bindparam("ids", expanding=True)), {"ids": ordered})
    if kind == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM events"))
            conn.execute(text("VACUUM deliveries"))
            conn.execute(text("CHECKPOINT"))
    else:
        raw = engine.raw_connection()
        try:
            raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        finally:
            raw.close()


def _lease_ordered_heads(backlog: _Backlog, leased: bool) -> None:
    """Lease (or give back) the head of every ordered line, as sends in flight would hold them."""
    value = "'2999-01-01 00:00:00.000000'" if leased else "NULL"
    with backlog.runtime.engine.begin() as conn:
        conn.execute(text(
            f"UPDATE deliveries SET lease_until = {value} WHERE id IN ("
            "SELECT (SELECT d.id FROM deliveries d WHERE d.webhook_id = w.id AND d.project_id = p.project_id "
            "AND d.status = 'pending' ORDER BY d.sequence, d.id LIMIT 1) "
            "FROM webhooks w CROSS JOIN project_sequences p WHERE w.ordered)"))


def measure(ctx: Context, kind: str, sizes: tuple[int, int], reps: int) -> dict[str, Any]:
    from addon.outbox.claim import next_due_in

    backlogs: list[_Backlog] = []
    variants = [(ordered, size) for ordered in (ORDERED_WEBHOOKS, 0) for size in sizes]
    try:
        for ordered, size in variants:
            backlog = _Backlog(ctx, kind, size)
            backlogs.append(backlog)
            started = time.monotonic()
            _order(backlog, kind, ordered)
            log(f"ordered backlog {kind} {size}, {ordered} ordered: numbered in {time.monotonic() - started:.1f} s")
        cases = {
            "claim": lambda b: _claim_and_release(b.runtime, None),
            "next_due_in": lambda b: _time(lambda: next_due_in(b.runtime, set())),
        }
        times = _alternate(backlogs, cases, reps)
        for backlog in backlogs:
            _lease_ordered_heads(backlog, True)
        held = {"claim_ordered_heads_in_flight": cases["claim"], "next_due_in_ordered_heads_in_flight":
                cases["next_due_in"]}
        times.update(_alternate(backlogs, held, reps))
        rows = []
        for index, (backlog, (ordered, _size)) in enumerate(zip(backlogs, variants, strict=True)):
            row = {"deliveries": backlog.deliveries, "ordered_webhooks": ordered,
                   **{name: _stats(times[index, name]) for name in [*cases, *held]}}
            log(f"ordered backlog {kind} {backlog.deliveries}, {ordered} of 5 ordered: " + ", ".join(
                f"{name} {row[name]['median_ms']} ms" for name in [*cases, *held]))
            rows.append(row)
    finally:
        for backlog in backlogs:
            backlog.close()
    small, big, small_today, big_today = rows
    names = [*cases, *held]

    def ratio(a: dict, b: dict, name: str) -> float:
        return round(a[name]["median_ms"] / b[name]["median_ms"], 3)

    return {"database": kind, "batch": BATCH, "projects": PROJECTS, "ordered_webhooks": f"{ORDERED_WEBHOOKS} of 5",
            "sizes": rows,
            "ratio_1m_over_1k": {name: ratio(big, small, name) for name in names},
            "ratio_1m_over_1k_no_ordered_webhook": {name: ratio(big_today, small_today, name) for name in names},
            "ratio_ordered_over_none_at_1m": {name: ratio(big, big_today, name) for name in names}}


def _alternate(backlogs: list[_Backlog], cases: dict[str, Any], reps: int) -> dict[tuple[int, str], list[float]]:
    for backlog in backlogs:  # untimed: caches, pools
        for call in cases.values():
            for _ in range(3):
                call(backlog)
    times: dict[tuple[int, str], list[float]] = {}
    for name, call in cases.items():
        for _ in range(reps):
            for index, backlog in enumerate(backlogs):
                times.setdefault((index, name), []).append(call(backlog))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/ordered_bench")
    parser.add_argument("--databases", default="postgresql")
    parser.add_argument("--big", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=40)
    args = parser.parse_args()
    databases = tuple(d.strip() for d in args.databases.split(",") if d.strip())
    workdir = Path(tempfile.mkdtemp(prefix="bench-ordered-"))
    receiver = ReceiverProcess()
    try:
        ctx = Context(workdir, receiver, args.pg_url, databases, False, 1.0, workdir)
        results = {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                   "runs": [measure(ctx, kind, (1_000, args.big), args.reps) for kind in databases]}
    finally:
        receiver.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
