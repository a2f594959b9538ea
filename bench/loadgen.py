"""Load on the intake, from a process of its own (`python -m bench.loadgen`), as Projectrak's backend sends it:
`POST /events/projectrak/field-changes` with a qsh-bound HS256 token signed with the tenant's shared secret
and the acting user in `sub`, over keep-alive HTTP/1.1 connections (one per thread, `http.client`).

Two modes:
- `rate`: an open loop at `--rate` requests per second for `--seconds` (request i is due at start + i/rate,
  whatever happened to the others). Each request's payload `timestamp` is BASE + its sequence number, so the
  receiver can tell which event a delivery belongs to. Writes `[[seq, sent, answered, status], ...]`
  (monotonic seconds) to `--out`.
- `closed`: `--threads` connections send back to back for `--seconds`. Writes
  `{"ok", "errors", "seconds", "per_s", "latency": {...}}` to `--out`.

Every loop stops at its deadline and after at most `--max-requests` requests.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import threading
import time
from urllib.parse import urlsplit

import jwt
from atlassian_jwt.url_utils import hash_url

BASE_TIMESTAMP_MS = 1_700_000_000_000
INTAKE_PATH = "/events/projectrak/field-changes"


def body_for(seq: int) -> bytes:
    return json.dumps({
        "project": {"id": 10000},
        "timestamp": BASE_TIMESTAMP_MS + seq,
        "changes": [
            {"field": {"id": 12345, "name": "Budget", "type": "number"}, "previous": 25000, "current": 23000},
            {"field": {"id": 54321, "name": "Status", "type": "status"}, "previous": {"name": "On track"},
             "current": {"name": "Done"}},
        ],
    }, separators=(",", ":")).encode()


class Signer:
    """Tokens as Projectrak signs them; one per request (as a real sender would). With `tenants`, `client_key`
    is a pattern holding `{i}` and the requests go round the sites `i` = 1…`tenants` (all sharing one secret)."""

    def __init__(self, client_key: str, shared_secret: str, path: str, tenants: int = 0) -> None:
        self.client_key = client_key
        self.secret = shared_secret
        self.qsh = hash_url("POST", path)
        self.tenants = tenants
        self._next = itertools.count()

    def header(self) -> str:
        now = int(time.time())
        issuer = self.client_key
        if self.tenants:
            issuer = self.client_key.format(i=next(self._next) % self.tenants + 1)
        claims = {"iss": issuer, "iat": now, "exp": now + 180, "qsh": self.qsh, "sub": "bench-user"}
        return "JWT " + jwt.encode(claims, self.secret, algorithm="HS256")


class Client:
    def __init__(self, base_url: str, path: str, signer: Signer) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.path = path
        self.signer = signer
        self.conn: http.client.HTTPConnection | None = None

    def post(self, body: bytes) -> int:
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                self.conn.connect()
                self.conn.sock.setsockopt(6, 1, 1)  # TCP_NODELAY
            try:
                self.conn.request("POST", self.path, body=body, headers={
                    "Authorization": self.signer.header(), "Content-Type": "application/json"})
                response = self.conn.getresponse()
                response.read()
                if response.will_close:
                    self.conn.close()
                    self.conn = None
                return response.status
            except (OSError, http.client.HTTPException):
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                if attempt == 2:
                    return 0
        return 0


def run_rate(args: argparse.Namespace, signer: Signer) -> list[list[float]]:
    total = min(args.max_requests, int(args.rate * args.seconds))
    results: list[list[float]] = [[] for _ in range(total)]
    start = time.monotonic() + 0.2

    def worker(index: int) -> None:
        client = Client(args.url, args.path, signer)
        for i in range(index, total, args.threads):
            due = start + i / args.rate
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            seq = args.first_seq + i
            sent = time.monotonic()
            status = client.post(body_for(seq))
            results[i] = [seq, sent, time.monotonic(), status]

    threads = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(args.seconds + 60)
    return [r for r in results if r]


def run_closed(args: argparse.Namespace, signer: Signer) -> dict:
    deadline = time.monotonic() + args.seconds
    lock = threading.Lock()
    durations: list[float] = []
    counts = {"ok": 0, "errors": 0}
    per_thread = max(1, args.max_requests // args.threads)

    def worker(index: int) -> None:
        client = Client(args.url, args.path, signer)
        mine: list[float] = []
        ok = errors = 0
        for n in range(per_thread):
            before = time.monotonic()
            if before >= deadline:
                break
            status = client.post(body_for(args.first_seq + index * per_thread + n))
            mine.append(time.monotonic() - before)
            if 200 <= status < 300:
                ok += 1
            else:
                errors += 1
        with lock:
            durations.extend(mine)
            counts["ok"] += ok
            counts["errors"] += errors

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(args.seconds + 60)
    elapsed = time.monotonic() - started
    durations.sort()
    pick = (lambda q: round(durations[min(len(durations) - 1, int(len(durations) * q))] * 1000, 2)) \
        if durations else (lambda q: None)
    return {**counts, "seconds": round(elapsed, 3), "per_s": round(counts["ok"] / elapsed, 1),
            "latency": {"p50_ms": pick(0.5), "p99_ms": pick(0.99)}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True, help="the add-on's base URL")
    parser.add_argument("--path", default=INTAKE_PATH)
    parser.add_argument("--client-key", required=True, help="with --tenants, a pattern holding {i}")
    parser.add_argument("--tenants", type=int, default=0, help="go round this many sites (see Signer)")
    parser.add_argument("--secret", required=True, help="the tenant's shared secret")
    parser.add_argument("--mode", choices=("rate", "closed"), required=True)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--first-seq", type=int, default=0)
    parser.add_argument("--max-requests", type=int, default=1_000_000)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    signer = Signer(args.client_key, args.secret, args.path, args.tenants)
    result = run_rate(args, signer) if args.mode == "rate" else run_closed(args, signer)
    with open(args.out, "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
