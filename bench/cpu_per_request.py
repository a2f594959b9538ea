"""The web process's CPU per request under the intake benchmark's load: the trivial route against the intake.

    python -m bench.cpu_per_request --database sqlite --seconds 4

Runs `addon serve --no-worker` with the trivial route (`bench.serve_trivial`), puts the closed-loop load of
`bench.intake` on each route in turn (trivial, intake, trivial, intake), and prints for each run the requests per
second and, per request, the web process's user and system CPU (`/proc/<pid>/stat`) and its voluntary and
involuntary thread switches (`/proc/<pid>/task/*/status`). Where a profile says which functions take the time,
this says how much of it is the kernel's and how often threads hand over.
"""

from __future__ import annotations

import argparse
import os

from bench import common
from bench import stack as stacks
from bench.common import children
from bench.context import tool_context
from bench.profile_worker import cpu_times


def thread_switches(pid: int) -> tuple[int, int]:
    """Voluntary and involuntary context switches of all the process's threads so far."""
    voluntary = involuntary = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/status") as f:
            for line in f:
                if line.startswith("voluntary_ctxt_switches"):
                    voluntary += int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches"):
                    involuntary += int(line.split()[1])
    return voluntary, involuntary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--connections", type=int, default=8, help="the load generator's keep-alive connections")
    common.add_addon_src_option(parser)
    args = parser.parse_args()
    common.measure_addon_src(args.addon_src)
    with tool_context(args.database, "bench-cpu-") as ctx:
        stack = stacks.start(ctx, args.database, topology="intake", trivial_route=True)
        try:
            stack.loadgen("closed", 1.0, first_seq=10_000_000)  # warm-up, both routes
            stack.loadgen("closed", 1.0, path="/bench/trivial")
            web = children(stack.server.pid)[0]
            runs = [("trivial", {"path": "/bench/trivial"}), ("intake", {"first_seq": 20_000_000}),
                    ("trivial", {"path": "/bench/trivial"}), ("intake", {"first_seq": 30_000_000})]
            for name, load in runs:
                user_0, system_0 = cpu_times(web)
                voluntary_0, involuntary_0 = thread_switches(web)
                result = stack.loadgen("closed", args.seconds, threads=args.connections, **load)
                user_1, system_1 = cpu_times(web)
                voluntary_1, involuntary_1 = thread_switches(web)
                requests = max(1, result["ok"] + result["errors"])
                print(f"{name}: {result['per_s']}/s; per request: user {(user_1 - user_0) / requests * 1000:.3f} ms, "
                      f"system {(system_1 - system_0) / requests * 1000:.3f} ms, thread switches "
                      f"{(voluntary_1 - voluntary_0) / requests:.1f} voluntary, "
                      f"{(involuntary_1 - involuntary_0) / requests:.1f} involuntary", flush=True)
        finally:
            stack.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
