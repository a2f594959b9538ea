"""Profile the web process of `addon serve --no-worker` under the intake benchmark's load with py-spy.

    python -m bench.profile_intake --database sqlite --seconds 6 --out /tmp/intake.txt [--addon-src DIR]

Writes py-spy's collapsed stacks (samples where a thread holds the GIL, unless `--idle`) to `--out` and prints
the functions with the most samples, the events/s accepted while profiled and the web process's CPU use.
"""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

from bench import common
from bench import stack as stacks
from bench.common import children
from bench.context import tool_context
from bench.profile_worker import cpu_seconds, record, summarize


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--out", default="/tmp/intake-profile.txt")
    parser.add_argument("--idle", action="store_true", help="sample waiting threads too")
    common.add_addon_src_option(parser)
    args = parser.parse_args()
    common.measure_addon_src(args.addon_src)
    with tool_context(args.database, "bench-profile-") as ctx:
        stack = stacks.start(ctx, args.database, topology="intake")
        try:
            stack.loadgen("closed", 1.0, first_seq=10_000_000)  # warm-up
            web = children(stack.server.pid)[0]
            result: dict = {}
            load = threading.Thread(target=lambda: result.update(
                stack.loadgen("closed", args.seconds + 2, first_seq=20_000_000)))
            load.start()
            cpu_before = cpu_seconds(web)
            record(web, args.seconds, args.out, idle=args.idle, rate=250)
            cpu = cpu_seconds(web) - cpu_before
            load.join()
            per_s = result.get("per_s") or 1.0
            print(f"intake while profiled: {per_s} events/s; web process CPU {cpu / args.seconds * 100:.0f} % of "
                  f"one core, {cpu / args.seconds / per_s * 1000:.2f} ms per event")
        finally:
            stack.stop()
    print(summarize(Path(args.out)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
