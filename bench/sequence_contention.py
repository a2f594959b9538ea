"""What numbering one project's events costs the intake's store: events/s stored by `store_event` (the intake's
one statement: the project's counter bumped, the event and its 5 deliveries inserted) from 8 threads, all on one
project (every store takes its turn on that project's counter row until it commits) against each thread on a
project of its own (no two stores share a row). Rounds alternate between the two, so the machine's drift falls on
both alike; the ratio hot/spread is the figure.

    .venv/bin/python -m bench.sequence_contention --pg-url postgresql+psycopg://postgres@127.0.0.1:5432/ordered_bench \
        [--databases postgresql,sqlite] [--seconds 3] [--rounds 4]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import WEBHOOK_PATHS, add_webhooks, log, new_secret_key, seed_tenant
from bench.context import Context

THREADS = 8
BODY = {"data": {"event": "updated", "user": "bench-user", "timestamp": 1700000000000,
                 "project": {"id": 10000, "key": "DEMO", "name": "Demo project"},
                 "fields": [{"id": 12345, "name": "Budget", "type": "number",
                             "value": {"current": "23000", "previous": "25000"}}]}}


def _rate(runtime: Any, tenant: Any, seconds: float, hot: bool) -> float:
    from addon.outbox.store import store_event

    stored = [0] * THREADS
    deadline = time.monotonic() + seconds

    def work(index: int) -> None:
        project = "10000" if hot else str(20000 + index)
        while time.monotonic() < deadline:
            store_event(runtime.engine, tenant=tenant, source="projectrak", body=BODY, project_id=project)
            stored[index] += 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(THREADS)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(stored) / (time.monotonic() - started)


def measure(ctx: Context, kind: str, seconds: float, rounds: int) -> dict[str, Any]:
    from addon.config import Settings
    from addon.process.runtime import Runtime
    from addon.storage.tenants import get_view

    database = ctx.new_database(kind)
    secret_key = new_secret_key()
    runtime = Runtime.build(Settings(database_url=database.url, secret_key=secret_key, allow_private_networks=True))
    try:
        tenant_id = seed_tenant(database, secret_key)
        add_webhooks(database, secret_key, tenant_id, [ctx.receiver.url(p) for p in WEBHOOK_PATHS])
        with runtime.sessions() as session:
            tenant = get_view(session, tenant_id, runtime.box)
        _rate(runtime, tenant, 1.0, hot=False)  # warm-up: connections, statements
        hot, spread = [], []
        for round_ in range(rounds):  # which goes first alternates too
            for is_hot in ((True, False) if round_ % 2 == 0 else (False, True)):
                (hot if is_hot else spread).append(_rate(runtime, tenant, seconds, hot=is_hot))
        result = {"database": kind, "threads": THREADS, "seconds": seconds, "rounds": rounds,
                  "one_project_per_s": round(statistics.median(hot), 1),
                  "own_project_per_thread_per_s": round(statistics.median(spread), 1),
                  "ratio": round(statistics.median(hot) / statistics.median(spread), 3)}
        log(f"sequence contention {kind}: {result}")
        return result
    finally:
        runtime.close()
        database.drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/ordered_bench")
    parser.add_argument("--databases", default="postgresql")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    from bench.common import ReceiverProcess

    workdir = Path(tempfile.mkdtemp(prefix="bench-sequence-"))
    receiver = ReceiverProcess()
    try:
        ctx = Context(workdir, receiver, args.pg_url, tuple(args.databases.split(",")), False, 1.0, workdir)
        runs = [measure(ctx, kind, args.seconds, args.rounds) for kind in ctx.databases]
    finally:
        receiver.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps({"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
