"""Intake throughput with webhook filters on against off, in the same run (CONTRACT §10.1).

    python -m bench.intake_filters --databases sqlite,postgresql --seconds 6 --rounds 2

The stack of `bench.intake` (`addon serve --no-worker`, one site, five webhooks, the closed-loop load of 8
keep-alive connections; every change has two fields, 12345 Budget and 54321 Status, of project 10000). Filters are
switched, in the database as the admin API does it (the webhooks' filter columns and the tenant's
`filters_version`), between runs of the same server, alternately off and on (`--rounds` of each), plus the trivial
route before and after as the usual baseline. "On" filters three of the five webhooks, covering each path of the
store:

- webhook 1: `projects: [10000]` (reached; shares the event's body),
- webhook 2: `fields: [12345]` (reached with a body of its own: Budget only),
- webhook 3: `projects: [99999]` (not reached),

so each event makes 4 deliveries with filters on (one with its own body) and 5 with them off. The ratio is
mean(on) / mean(off); a figure near 1 means filters cost the intake nothing it notices. The fields the intake
records for `GET /api/fields` are in both (they are recorded once, then remembered).
"""

from __future__ import annotations

import argparse
import json
import statistics
from typing import Any

from sqlalchemy import update

from bench import common
from bench import stack as stacks
from bench.common import log
from bench.context import tool_context

THREADS = 8
ON = ((json.dumps([{"id": "10000", "key": "DEMO", "name": "Demo project"}]), None),
      (None, json.dumps([12345])),
      (json.dumps([{"id": "99999", "key": "NONE", "name": "Elsewhere"}]), None))


def set_filters(stack: stacks.Stack, on: bool) -> None:
    """Filters on (three webhooks, as ON) or off, and the tenant's `filters_version` grown, as a PATCH does."""
    from addon.storage.models import Tenant, Webhook

    engine = stack.database.engine()
    try:
        with engine.begin() as conn:
            for webhook_id, (projects, fields) in zip(stack.seeded.webhook_ids, ON, strict=False):
                conn.execute(update(Webhook).where(Webhook.id == webhook_id).values(
                    filter_projects=projects if on else None, filter_fields=fields if on else None))
            conn.execute(update(Tenant).where(Tenant.id == stack.seeded.tenant_id)
                         .values(filters_version=Tenant.filters_version + 1))
    finally:
        engine.dispose()


def measure(ctx: Any, kind: str, seconds: float, rounds: int) -> dict[str, Any]:
    stack = stacks.start(ctx, kind, topology="intake", trivial_route=True)
    off: list[float] = []
    on: list[float] = []
    try:
        stack.loadgen("closed", 3.0, threads=THREADS, first_seq=20_000_000)  # warm-up (the first seconds are slower)
        trivial_1 = stack.loadgen("closed", seconds, threads=THREADS, path="/bench/trivial")
        seq = 30_000_000
        for _ in range(rounds):
            for filtered, results in ((False, off), (True, on)):
                set_filters(stack, filtered)
                stack.loadgen("closed", 0.5, threads=THREADS, first_seq=seq)  # the new filters reach the cache
                seq += 1_000_000
                results.append(stack.loadgen("closed", seconds, threads=THREADS, first_seq=seq)["per_s"])
                seq += 1_000_000
        trivial_2 = stack.loadgen("closed", seconds, threads=THREADS, path="/bench/trivial")
    finally:
        stack.stop()
    trivial = (trivial_1["per_s"] + trivial_2["per_s"]) / 2
    result = {"database": kind, "seconds": seconds, "rounds": rounds, "trivial_per_s": round(trivial, 1),
              "off_per_s": off, "on_per_s": on,
              "on_over_off": round(statistics.mean(on) / statistics.mean(off), 3),
              "on_over_off_medians": round(statistics.median(on) / statistics.median(off), 3),
              "off_over_trivial": round(statistics.mean(off) / trivial, 3),
              "on_over_trivial": round(statistics.mean(on) / trivial, 3)}
    log(f"intake with filters, {kind}: off {off}/s, on {on}/s, trivial {trivial:.1f}/s -> on/off "
        f"{result['on_over_off']} (medians {result['on_over_off_medians']})")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=2, help="runs of each (off, on), alternating")
    common.add_addon_src_option(parser)
    args = parser.parse_args()
    common.measure_addon_src(args.addon_src)
    results = []
    for kind in args.databases.split(","):
        with tool_context(kind, "bench-filters-") as ctx:
            results.append(measure(ctx, kind, args.seconds, args.rounds))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
