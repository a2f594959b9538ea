"""The HTTPS receiver of the benchmarks, in a process of its own (`python -m bench.receiver_proc`).

It is `tests.receivers.Receiver` (real TLS, keep-alive, `disable_nagle_algorithm`), run outside the measured
process so the receiver and the sender under test never share one GIL: what is measured is the sender.

Control is line-based on stdin/stdout. On start it prints `READY <port> <ca_path>`; then each command line gets
one JSON line back:

    count                 {"count": N}
    countp <p1,p2,...>    {"count": N}     requests to those paths only
    behave <path> <json>  {"ok": true}     e.g. behave /hang {"delay_s": 60}
    dump <file>           {"rows": N}      writes [[path, timestamp, received_at], ...] as JSON to <file>
    clear                 {"ok": true}
    rss                   {"vmhwm_kb": N, "vmrss_kb": N}
    quit                  (exits)

`timestamp` is the payload's `data.timestamp` (the benchmarks use it as an event's sequence number) and
`received_at` is `time.monotonic()`, which on Linux is one clock for every process of the machine.
"""

from __future__ import annotations

import json
import sys

from tests.receivers import Receiver


def _timestamp_of(body: bytes) -> int | None:
    try:
        return json.loads(body)["data"]["timestamp"]
    except (ValueError, KeyError, TypeError):
        return None


def _memory() -> dict[str, int]:
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(("VmHWM:", "VmRSS:")):
                key, value = line.split(":", 1)
                values[key.lower() + "_kb"] = int(value.split()[0])
    return values


def main() -> int:
    with Receiver() as receiver:
        print(f"READY {receiver.port} {receiver.ca_path}", flush=True)
        for line in sys.stdin:
            command, _, rest = line.strip().partition(" ")
            if command == "count":
                answer: dict = {"count": len(receiver._requests)}  # noqa: SLF001 - no copy on the hot path
            elif command == "countp":
                paths = set(rest.split(","))
                answer = {"count": sum(1 for r in receiver.requests if r.path in paths)}
            elif command == "behave":
                path, _, options = rest.partition(" ")
                receiver.behave(path, **json.loads(options or "{}"))
                answer = {"ok": True}
            elif command == "dump":
                rows = [[r.path, _timestamp_of(r.body), r.received_at] for r in receiver.requests]
                with open(rest, "w") as out:
                    json.dump(rows, out)
                answer = {"rows": len(rows)}
            elif command == "clear":
                receiver.clear()
                answer = {"ok": True}
            elif command == "rss":
                answer = _memory()
            elif command == "quit":
                break
            else:
                answer = {"error": f"unknown command {command!r}"}
            print(json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
