"""Profile one `addon worker` draining a backlog with py-spy (every thread; by default only samples where a
thread holds the GIL, i.e. where Python code runs).

    python -m bench.profile_worker --database sqlite --events 2000 --out /tmp/worker.txt

Writes py-spy's collapsed stacks to `--out`, and prints the functions with the most samples (own and
inclusive). Needs `py-spy` (pip install py-spy) and the right to ptrace the child (root here).
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import time
from pathlib import Path

from bench.common import (
    ADDON,
    WEBHOOK_PATHS,
    add_webhooks,
    addon_env,
    bulk_enqueue,
    new_secret_key,
    seed_tenant,
)
from bench.context import Context, tool_context


def cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    return sum(cpu_times(pid))


def record(pid: int, seconds: float, out: str, *, idle: bool, rate: int = 200) -> None:
    """py-spy's collapsed stacks of every thread of `pid` for `seconds` into `out`; only the samples where a thread
    holds the GIL unless `idle`."""
    py_spy = shutil.which("py-spy") or str(Path(ADDON).with_name("py-spy"))
    subprocess.run([py_spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", str(rate),
                    "--format", "raw", "--threads", *([] if idle else ["--gil"]), "--output", out, "--nonblocking"],
                   check=True, timeout=seconds + 60, capture_output=True)


def summarize(collapsed: Path, top: int = 30) -> str:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():  # py-spy sometimes writes a garbled frame across lines
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    lines = [f"total samples: {total}", "", "inclusive:"]
    lines += [f"{n / total * 100:6.1f} %  {f}" for f, n in inclusive.most_common(top)]
    lines += ["", "own:"]
    lines += [f"{n / total * 100:6.1f} %  {f}" for f, n in own.most_common(top)]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--out", default="/tmp/worker-profile.txt")
    parser.add_argument("--idle", action="store_true",
                        help="sample every thread, waiting ones too (default: only the thread holding the GIL)")
    args = parser.parse_args()
    with tool_context(args.database, "bench-profile-") as ctx:
        profile_drain(ctx, args)
    print(summarize(Path(args.out)))
    return 0


def profile_drain(ctx: Context, args: argparse.Namespace) -> None:
    """Profile one `addon worker` draining `args.events` events × 5 webhooks from `ctx`'s database kind."""
    receiver, workdir = ctx.receiver, ctx.workdir
    database = ctx.new_database(args.database)
    try:
        key = new_secret_key()
        tenant = seed_tenant(database, key)
        seeded = add_webhooks(database, key, tenant, [receiver.url(p) for p in WEBHOOK_PATHS])
        bulk_enqueue(database, seeded, args.events)
        env = addon_env(database, receiver, key)
        worker = subprocess.Popen([ADDON, "worker"], env=env, cwd=workdir, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            time.sleep(3.0)  # imports and start-up are not what we profile
            cpu_before, wall_before, got_before = cpu_seconds(worker.pid), time.monotonic(), receiver.count()
            record(worker.pid, args.seconds, args.out, idle=args.idle)
            cpu, wall, got = cpu_seconds(worker.pid) - cpu_before, time.monotonic() - wall_before, receiver.count()
            print(f"received {got} of {args.events * len(WEBHOOK_PATHS)}; while profiled: "
                  f"{(got - got_before) / wall:.0f} deliveries/s, worker CPU {cpu / wall * 100:.0f} % of one core")
        finally:
            worker.terminate()
            worker.wait(30)
    finally:
        database.drop()


if __name__ == "__main__":
    raise SystemExit(main())
