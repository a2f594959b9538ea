"""(1) Delivery throughput: deliveries per second from `addon worker` processes draining a backlog, against the
raw ceiling of the same HTTP client in a tight keep-alive loop to the same receiver.

Both the worker and the ceiling loop run in processes of their own, and the receiver in a third: none of them
shares a GIL with another. Throughput is read from the receiver's arrival times over the middle 80 % of the
deliveries (start-up and the last stragglers left out).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from typing import Any

from bench.common import (
    PYTHON,
    WEBHOOK_PATHS,
    add_webhooks,
    addon,
    addon_env,
    bulk_enqueue,
    count_pending,
    event_body,
    log,
    memory_kb,
    new_secret_key,
    python_path,
    seed_tenant,
)
from bench.context import Context

#: Attempts in flight in the informative concurrent-client baseline: the worker's default concurrency.
CONCURRENT_CLIENT_THREADS = 64


def ceiling(ctx: Context, seconds: float, threads: int = 1) -> dict[str, Any]:
    """The raw ceiling (`bench.ceiling`) in a process of its own; `threads` > 1: the concurrent client."""
    with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False, dir=ctx.workdir) as f:
        f.write(event_body(0).encode())
        body_file = f.name
    ctx.receiver.clear()
    out = subprocess.run([PYTHON, "-m", "bench.ceiling", "--url", ctx.receiver.url("/ceiling"), "--ca",
                          ctx.receiver.ca_path, "--body-file", body_file, "--seconds", str(seconds),
                          "--threads", str(threads)],
                         # Not the repository as working directory: `python -m` puts it first on the path, before
                         # PYTHONPATH, and `--addon-src` would then not reach the ceiling.
                         cwd=ctx.workdir, capture_output=True, text=True, timeout=seconds + 60, check=True,
                         env={**os.environ, "PYTHONPATH": python_path()})
    ctx.receiver.clear()
    return json.loads(out.stdout.strip().splitlines()[-1])


def middle_rate(arrivals: list[float], low: float = 0.1, high: float = 0.9) -> float:
    """Arrivals per second between the `low` and `high` quantiles of the arrival order."""
    arrivals = sorted(arrivals)
    if len(arrivals) < 20:
        return float("nan")
    i, j = int(len(arrivals) * low), int(len(arrivals) * high) - 1
    span = arrivals[j] - arrivals[i]
    return (j - i) / span if span > 0 else float("nan")


def drain(ctx: Context, kind: str, workers: int, events: int, concurrency: int | None = None) -> dict[str, Any]:
    """Fill the outbox with `events` x 5 due deliveries, then time `workers` `addon worker` processes draining it."""
    database = ctx.new_database(kind)
    secret_key = new_secret_key()
    try:
        tenant_id = seed_tenant(database, secret_key)
        seeded = add_webhooks(database, secret_key, tenant_id, [ctx.receiver.url(p) for p in WEBHOOK_PATHS])
        bulk_enqueue(database, seeded, events)
        total = events * len(WEBHOOK_PATHS)
        ctx.receiver.clear()
        env = addon_env(database, ctx.receiver, secret_key)
        args = ["worker"] if concurrency is None else ["worker", "--concurrency", str(concurrency)]
        procs = [addon(args, env, ctx.workdir, f"worker-{kind}-{workers}-{i}")
                 for i in range(workers)]
        started = time.monotonic()
        try:
            got = ctx.receiver.wait_count(total, timeout=60 + total / 200)
            elapsed = time.monotonic() - started
            peaks = [memory_kb(p.pid).get("vmhwm", 0) for p in procs]
        finally:
            for p in procs:
                p.stop()
        rows = ctx.receiver.rows()
        arrivals = [r[2] for r in rows if r[0] in WEBHOOK_PATHS]
        distinct = len({(r[0], r[1]) for r in rows})
        left = count_pending(database)
    finally:
        database.drop()
    rate = middle_rate(arrivals)
    result = {
        "database": kind, "workers": workers, "concurrency": concurrency, "deliveries": total, "received": got,
        "distinct": distinct, "pending_after": left, "wall_s": round(elapsed, 2), "per_s": round(rate, 1),
        "worker_peak_rss_mib": [round(p / 1024, 1) for p in peaks],
    }
    log(f"throughput {kind} x{workers}: {result['per_s']}/s ({got}/{total} received, {distinct} distinct)")
    return result


def run(ctx: Context) -> dict[str, Any]:
    """Each drain is preceded by its own raw-ceiling run and its ratio is taken against that one: on a machine
    shared with other work the ceiling drifts, and the nearest measurement is the fairest baseline."""
    events = ctx.count(4000, 1000)
    ceiling_s = ctx.seconds(4, 2)
    plans = []
    if "sqlite" in ctx.databases:
        plans.append(("sqlite", 1))
    if "postgresql" in ctx.databases:
        plans += [("postgresql", workers) for workers in (1, 2, 4)]
    runs = []
    for kind, workers in plans:
        base = ceiling(ctx, ceiling_s)
        log(f"raw ceiling: {base['per_s']}/s (p50 {base['p50_ms']} ms)")
        result = drain(ctx, kind, workers, events)
        result["ceiling"] = base
        result["ratio"] = round(result["per_s"] / base["per_s"], 3)
        if workers == 1:
            concurrent = ceiling(ctx, ceiling_s, threads=CONCURRENT_CLIENT_THREADS)
            log(f"concurrent client ({CONCURRENT_CLIENT_THREADS} in flight): {concurrent['per_s']}/s")
            result["concurrent_client"] = concurrent
            result["concurrent_ratio"] = round(result["per_s"] / concurrent["per_s"], 3)
        runs.append(result)
    ceilings = [r["ceiling"]["per_s"] for r in runs]
    return {"ceiling_per_s": round(sum(ceilings) / len(ceilings), 1) if ceilings else None,
            "ceiling_min_max": [min(ceilings), max(ceilings)] if ceilings else None, "runs": runs}
