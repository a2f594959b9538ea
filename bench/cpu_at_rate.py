"""The serve process's CPU per event at a steady rate, with the latencies of that one run.

    python -m bench.cpu_at_rate --database sqlite --seconds 8 --rate 100 [--addon-src /tmp/snapshot]

Runs the latency benchmark's layout (`addon serve` with its delivery worker, 5 webhooks on the bench receiver),
puts an open-loop load of `--rate` events/s on the intake for `--seconds`, and prints the CPU time per accepted
event (`/proc/<pid>/stat`) of the web process and of `addon serve`'s worker child (a process of its own, so it does
not share the intake's GIL) beside the intake's answer time and the
deliveries' latency. On a machine whose latencies swing between runs, the CPU per event is the steadier figure for a
before/after comparison (alternate the two copies with `--addon-src`).
"""

from __future__ import annotations

import argparse

import bench.common as common
from bench import stack as stacks
from bench.common import WEBHOOK_PATHS, children
from bench.context import tool_context
from bench.profile_worker import cpu_seconds
from tests.support.figures import percentile


def _percentile_ms(values: list[float], q: float) -> float | None:
    return round(percentile(sorted(values), q * 100) * 1000, 2) if values else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rate", type=float, default=100.0)
    common.add_addon_src_option(parser)
    args = parser.parse_args()
    common.measure_addon_src(args.addon_src)
    with tool_context(args.database, "bench-cpu-at-rate-") as ctx:
        receiver = ctx.receiver
        stack = stacks.start(ctx, args.database, topology="serve")
        try:
            stack.loadgen("rate", 1.0, rate=50, first_seq=10_000_000)  # warm-up
            receiver.wait_count(50 * len(WEBHOOK_PATHS), timeout=30)
            receiver.clear()
            processes = children(stack.server.pid)
            web = next(pid for pid in processes if not stacks.is_worker_child(pid))
            workers = [pid for pid in processes if stacks.is_worker_child(pid)]
            cpu_before = cpu_seconds(web)
            worker_cpu_before = sum(cpu_seconds(pid) for pid in workers)
            sent = stack.loadgen("rate", args.seconds, rate=args.rate)
            accepted = [r for r in sent if 200 <= r[3] < 300]
            receiver.wait_paths(list(WEBHOOK_PATHS), len(accepted) * len(WEBHOOK_PATHS), timeout=30)
            cpu = cpu_seconds(web) - cpu_before
            worker_cpu = sum(cpu_seconds(pid) for pid in workers) - worker_cpu_before
            rows = receiver.rows()
        finally:
            stack.stop()
    answered = {int(r[0]): r[2] for r in accepted}
    latencies = [arrived - answered[timestamp - 1_700_000_000_000] for _path, timestamp, arrived in rows
                 if timestamp is not None and timestamp - 1_700_000_000_000 in answered]
    intake = [r[2] - r[1] for r in accepted]
    events = max(1, len(accepted))
    child = f", worker child {worker_cpu / events * 1000:.2f} ms" if workers else " (worker inside)"
    print(f"{args.database}, {args.rate:g} events/s for {args.seconds:g} s: CPU per event: web process "
          f"{cpu / events * 1000:.2f} ms{child}; intake answer p50 {_percentile_ms(intake, 0.5)} "
          f"p99 {_percentile_ms(intake, 0.99)} ms; delivery after the answer p50 {_percentile_ms(latencies, 0.5)} "
          f"p99 {_percentile_ms(latencies, 0.99)} ms ({len(latencies)} deliveries)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
