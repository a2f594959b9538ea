"""The raw ceiling: the add-on's own webhook client (`addon.sending.client.Sender`) posting the same bodies,
with headers of the same shape, in a tight keep-alive loop to the same receiver, from a process of its own
(like `addon worker`). No database, no signing: the most the client and the receiver can do.

    python -m bench.ceiling --url https://127.0.0.1:PORT/ceiling --ca CA.pem --body-file BODY --seconds 5

The loop runs where the worker's attempts run, on the sender's event loop: one attempt, await its answer, the
next. `--threads N` runs N such loops at once on that one `Sender`, as the worker keeps N attempts in flight:
not the ceiling the issue defines (a tight loop is one request at a time), but what the client and the
receiver can do with the worker's concurrency, on this machine, at this moment (an informative second
baseline; the option keeps its name from when the worker sent from N threads).

Prints one JSON line: {"threads", "requests", "ok", "seconds", "per_s", "p50_ms", "p99_ms"}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import threading
import time

from addon.sending.client import Sender
from addon.sending.signing import generate_secret, new_message_id, signature_headers


def run(url: str, ca: str, body: bytes, seconds: float, max_requests: int, threads: int = 1) -> dict:
    secret = generate_secret()
    headers = signature_headers(new_message_id(), int(time.time()), body, [secret])
    per_loop: list[list[float]] = [[] for _ in range(threads)]
    oks = [0] * threads
    with Sender(timeout_s=10, ca_bundle=ca, allow_private=True, user_agent="Projectrak-Outgoing-Webhooks/bench") as s:
        s.send(url, body, headers)  # connect and handshake before the clock starts

        async def loop(index: int, deadline: float) -> None:
            durations = per_loop[index]
            while len(durations) < max_requests // threads:
                before = time.monotonic()
                if before >= deadline:
                    break
                result = await s.attempt(url, body, headers)
                durations.append(time.monotonic() - before)
                oks[index] += result.ok

        async def loops() -> None:
            deadline = time.monotonic() + seconds
            await asyncio.gather(*(loop(i, deadline) for i in range(threads)))

        started = time.monotonic()
        if hasattr(s, "attempt"):
            s.run(loops())
        else:  # an `addon` from before the event-loop sender (`run_all --addon-src`): its loops were threads
            _threaded_loops(s, url, body, headers, started + seconds, max_requests, per_loop, oks)
        elapsed = time.monotonic() - started
    durations = sorted(d for ds in per_loop for d in ds)
    ok = sum(oks)
    return {
        "threads": threads,
        "requests": len(durations),
        "ok": ok,
        "seconds": round(elapsed, 3),
        "per_s": round(ok / elapsed, 1),
        "p50_ms": round(statistics.median(durations) * 1000, 3),
        "p99_ms": round(durations[int(len(durations) * 0.99)] * 1000, 3),
    }


def _threaded_loops(s: Sender, url: str, body: bytes, headers: dict, deadline: float, max_requests: int,
                    per_loop: list[list[float]], oks: list[int]) -> None:
    """The ceiling as measured before the sender ran on an event loop: one blocking loop per thread."""

    def loop(index: int) -> None:
        durations = per_loop[index]
        while len(durations) < max_requests // len(per_loop):
            before = time.monotonic()
            if before >= deadline:
                break
            result = s.send(url, body, headers)
            durations.append(time.monotonic() - before)
            oks[index] += result.ok

    pool = [threading.Thread(target=loop, args=(i,)) for i in range(len(per_loop))]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--body-file", required=True)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--max-requests", type=int, default=200_000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    with open(args.body_file, "rb") as f:
        body = f.read()
    print(json.dumps(run(args.url, args.ca, body, args.seconds, args.max_requests, args.threads)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
