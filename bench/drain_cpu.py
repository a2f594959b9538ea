"""Drains of one `addon worker` (the throughput scenario's, `bench.throughput.drain`) with the whole machine's CPU
use beside each: busy, idle and the hypervisor's share (steal), from /proc/stat once a second.

    python -m bench.drain_cpu --database postgresql --runs 2 [--concurrency 32] [--addon-src DIR]

Says whether a drain is bound by the machine's CPU (no idle left) or by waiting (idle left), and how much of a
difference between two drains the hypervisor may explain.
"""

from __future__ import annotations

import argparse
import threading

from bench import common
from bench.context import tool_context
from bench.throughput import drain


def cpu_counters() -> list[int]:
    with open("/proc/stat") as f:
        return [int(v) for v in f.readline().split()[1:]]


def sample_shares(stop: threading.Event, shares: list[dict[str, float]]) -> None:
    """Once a second until `stop`: the shares of user, system (with interrupts), idle and steal time."""
    before = cpu_counters()
    while not stop.wait(1.0):
        after = cpu_counters()
        delta = [b - a for a, b in zip(before, after, strict=True)]
        before = after
        total = sum(delta) or 1
        user, nice, system, idle, _iowait, irq, softirq, steal = delta[:8]
        shares.append({"user": (user + nice) / total, "system": (system + irq + softirq) / total,
                       "idle": idle / total, "steal": steal / total})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="postgresql")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=None, help="`addon worker --concurrency`")
    common.add_addon_src_option(parser)
    args = parser.parse_args()
    common.measure_addon_src(args.addon_src)
    with tool_context(args.database, "bench-drain-cpu-") as ctx:
        for _ in range(args.runs):
            shares: list[dict[str, float]] = []
            stop = threading.Event()
            sampler = threading.Thread(target=sample_shares, args=(stop, shares))
            sampler.start()
            try:
                result = drain(ctx, args.database, 1, args.events, concurrency=args.concurrency)
            finally:
                stop.set()
                sampler.join()
            middle = shares[2:-1] or shares or [{"user": 0.0, "system": 0.0, "idle": 0.0, "steal": 0.0}]
            mean = {key: sum(s[key] for s in middle) / len(middle) * 100 for key in middle[0]}
            print(f"worker {result['per_s']}/s; machine: user {mean['user']:.0f} %, system {mean['system']:.0f} %, "
                  f"idle {mean['idle']:.0f} %, steal {mean['steal']:.0f} %", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
