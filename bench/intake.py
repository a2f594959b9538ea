"""(3) Intake: field-change events accepted per second through `addon serve` (JWT checked, tenant looked up,
fields normalised, the event and 5 deliveries stored), against a trivial Flask route on the same server.

The server is `bench.serve_trivial`: `addon serve` itself plus `POST /bench/trivial` (bench-only). It runs with
`--no-worker`, so what is measured is the web process alone (the deliveries wait in the outbox). Both routes get
the same closed-loop load from `bench.loadgen` (8 keep-alive connections, the same bodies and headers), the
trivial route before and after the intake, and the ratio is intake / mean(trivial).
"""

from __future__ import annotations

from typing import Any

from bench import stack as stacks
from bench.common import log
from bench.context import Context

THREADS = 8


def measure(ctx: Context, kind: str, seconds: float) -> dict[str, Any]:
    stack = stacks.start(ctx, kind, topology="intake", trivial_route=True)
    try:
        stack.loadgen("closed", 1.0, threads=THREADS, first_seq=20_000_000)  # warm-up
        stack.loadgen("closed", 1.0, threads=THREADS, path="/bench/trivial")
        trivial_1 = stack.loadgen("closed", seconds, threads=THREADS, path="/bench/trivial")
        intake = stack.loadgen("closed", seconds, threads=THREADS, first_seq=30_000_000)
        trivial_2 = stack.loadgen("closed", seconds, threads=THREADS, path="/bench/trivial")
    finally:
        stack.stop()
    trivial = (trivial_1["per_s"] + trivial_2["per_s"]) / 2
    result = {"database": kind, "seconds": seconds, "threads": THREADS, "trivial_before": trivial_1,
              "intake": intake, "trivial_after": trivial_2, "trivial_per_s": round(trivial, 1),
              "intake_per_s": intake["per_s"], "ratio": round(intake["per_s"] / trivial, 3) if trivial else None}
    log(f"intake {kind}: {intake['per_s']}/s vs trivial {trivial:.1f}/s -> {result['ratio']}")
    return result


def run(ctx: Context) -> dict[str, Any]:
    seconds = ctx.seconds(8, 2.5)
    return {"runs": [measure(ctx, kind, seconds) for kind in ctx.databases]}
