"""The aiohttp trial: the add-on's sender (`addon.sending.client.Sender`, HTTP/1.1 on asyncio with httptools) against
a prototype of the same attempt on aiohttp (`AiohttpSender` below), posting the same body and headers to the same
receiver, each in a process of its own, alternating, several rounds, so that each round's ratio shares the
machine's state.

    .venv/bin/pip install aiohttp    # not a dependency of the add-on: see docs/decisions.md
    .venv/bin/python -m bench.aiohttp_trial --rounds 3 --seconds 4

Two loads per client: one attempt at a time (the raw ceiling of `bench.ceiling`) and 64 in flight (what one
`addon worker` keeps in flight by default). Each prints its requests/s and the CPU seconds its process used per
1,000 requests; the ratio aiohttp / hand-written is the figure the decision reads (at least 0.90 of today's
one-worker throughput to take it).

The prototype does what the issue asks of a replacement: an `AbstractResolver` that returns only addresses the
address policy passes (aiohttp connects to what the resolver returns, so connections are pinned to checked
addresses; an IP literal, which aiohttp does not resolve, is checked before the request), and one
`asyncio.timeout` around the whole attempt, DNS included. It is a prototype for measuring, not a sender: the
add-on's error texts, `Retry-After`, the request head's checks and the idle-connection bounds are left out.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from bench.common import PYTHON, REPO, ReceiverProcess, event_body, log


class _Blocked(OSError):
    pass


def _pinned_resolver(allow_private: bool) -> Any:
    import aiohttp.abc

    from addon.sending.addresses import first_blocked

    class PinnedResolver(aiohttp.abc.AbstractResolver):
        """getaddrinfo, then the address policy: only checked addresses go back to aiohttp, which connects to
        nothing else (no second lookup between the check and the connect)."""

        async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[dict[str, Any]]:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                                 family=family)
            addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
            if not allow_private:
                blocked = first_blocked(addresses)
                if blocked is not None:
                    raise _Blocked(f"blocked private address {blocked}")
            return [{"hostname": host, "host": str(address), "port": port, "family": info[0], "proto": info[2],
                     "flags": socket.AI_NUMERICHOST} for address, info in zip(addresses, infos, strict=True)]

        async def close(self) -> None:
            return None

    return PinnedResolver()


class AiohttpSender:
    """One attempt as `Sender.attempt` makes it, on aiohttp: POST, the answer's status and the start of its body,
    one deadline for the whole attempt."""

    def __init__(self, timeout_s: float, ca_bundle: str | None, allow_private: bool, user_agent: str) -> None:
        from addon.sending.client import build_ssl_context

        self.timeout_s = timeout_s
        self.allow_private = allow_private
        self.user_agent = user_agent
        self._ssl = build_ssl_context(ca_bundle)
        self._session: Any = None

    def _session_here(self) -> Any:
        import aiohttp

        if self._session is None:
            connector = aiohttp.TCPConnector(resolver=_pinned_resolver(self.allow_private), ssl=self._ssl,
                                             limit=256, limit_per_host=0, ttl_dns_cache=30,
                                             keepalive_timeout=30, enable_cleanup_closed=False)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                                  skip_auto_headers=("Accept-Encoding", "Accept"))
        return self._session

    async def attempt(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[bool, int | None, str | None]:
        import aiohttp

        from addon.sending.addresses import first_blocked, parse_target
        from addon.sending.client import BODY_KEEP_BYTES

        target = parse_target(url)
        if target.ip is not None and not self.allow_private and first_blocked([target.ip]) is not None:
            return False, None, f"blocked private address {target.ip}"
        session = self._session_here()
        try:
            async with asyncio.timeout(self.timeout_s):  # DNS, connect, TLS, request and the answer's head
                async with session.post(url, data=body, allow_redirects=False,
                                        headers={**headers, "User-Agent": self.user_agent,
                                                 "Content-Type": "application/json"}) as answer:
                    status = answer.status
                    await answer.content.read(BODY_KEEP_BYTES)
        except TimeoutError:
            return False, None, f"timeout after {self.timeout_s:.1f} s"
        except (aiohttp.ClientError, OSError) as exc:
            return False, None, str(exc)
        return 200 <= status <= 299, status, None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


async def _loops(attempt: Any, url: str, body: bytes, headers: dict[str, str], seconds: float,
                 in_flight: int) -> tuple[int, int, float]:
    ok = total = 0
    deadline = time.monotonic() + seconds

    async def loop() -> None:
        nonlocal ok, total
        while time.monotonic() < deadline:
            result = await attempt(url, body, headers)
            total += 1
            ok += bool(result[0] if isinstance(result, tuple) else result.ok)

    started = time.monotonic()
    await asyncio.gather(*(loop() for _ in range(in_flight)))
    return ok, total, time.monotonic() - started


def one(client: str, url: str, ca: str, body: bytes, seconds: float, in_flight: int) -> dict[str, Any]:
    """One client under one load, in this process."""
    from addon.sending.signing import generate_secret, new_message_id, signature_headers

    headers = signature_headers(new_message_id(), int(time.time()), body, [generate_secret()])
    agent = "Projectrak-Outgoing-Webhooks/bench"

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    if client == "aiohttp":
        sender = AiohttpSender(10, ca, True, agent)

        async def main() -> tuple[int, int, float, float]:
            await sender.attempt(url, body, headers)  # connect and handshake before the clock starts
            before = cpu()
            ok, total, elapsed = await _loops(sender.attempt, url, body, headers, seconds, in_flight)
            used = cpu() - before
            await sender.close()
            return ok, total, elapsed, used

        ok, total, elapsed, used = asyncio.run(main())
    else:
        from addon.sending.client import Sender

        with Sender(timeout_s=10, ca_bundle=ca, allow_private=True, user_agent=agent) as s:
            s.send(url, body, headers)
            before = cpu()
            ok, total, elapsed = s.run(_loops(s.attempt, url, body, headers, seconds, in_flight))
            used = cpu() - before
    return {"client": client, "in_flight": in_flight, "ok": ok, "requests": total, "seconds": round(elapsed, 3),
            "per_s": round(ok / elapsed, 1), "cpu_ms_per_request": round(used / max(total, 1) * 1000, 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--one", choices=("hand", "aiohttp"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--ca", help=argparse.SUPPRESS)
    parser.add_argument("--body-file", help=argparse.SUPPRESS)
    parser.add_argument("--in-flight", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        with open(args.body_file, "rb") as f:
            body = f.read()
        print(json.dumps(one(args.one, args.url, args.ca, body, args.seconds, args.in_flight)), flush=True)
        return 0
    receiver = ReceiverProcess()
    workdir = tempfile.mkdtemp(prefix="bench-aiohttp-")
    body_file = os.path.join(workdir, "body.json")
    with open(body_file, "w") as f:
        f.write(event_body(0))
    ratios: dict[int, list[float]] = {1: [], 64: []}
    try:
        for round_ in range(1, args.rounds + 1):
            for in_flight in (1, 64):
                got = {}
                for client in ("hand", "aiohttp") if round_ % 2 else ("aiohttp", "hand"):
                    receiver.clear()
                    out = subprocess.run([PYTHON, "-m", "bench.aiohttp_trial", "--one", client, "--url",
                                          receiver.url("/trial"), "--ca", receiver.ca_path, "--body-file", body_file,
                                          "--seconds", str(args.seconds), "--in-flight", str(in_flight)],
                                         cwd=REPO, capture_output=True, text=True, timeout=args.seconds + 60,
                                         check=True)
                    got[client] = json.loads(out.stdout.strip().splitlines()[-1])
                ratio = got["aiohttp"]["per_s"] / got["hand"]["per_s"]
                ratios[in_flight].append(ratio)
                print(json.dumps({"round": round_, "in_flight": in_flight, "ratio": round(ratio, 3), **{
                    f"{c}_{k}": v[k] for c, v in got.items() for k in ("per_s", "cpu_ms_per_request")}}), flush=True)
    finally:
        receiver.stop()
    for in_flight, values in ratios.items():
        if values:
            log(f"aiohttp / hand-written, {in_flight} in flight: median {statistics.median(values):.3f} "
                f"({', '.join(f'{v:.3f}' for v in values)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
