"""The building blocks of the reliability scenarios.

- `Collector`: everything the secrets scenario scans at the end (subprocess log files, in-process log records,
  every answer the add-on gave) and the secrets it must not find there.
- `ProcessStack`: `addon serve` and `addon worker` subprocesses on one database, killed and restarted at will.
- `LoadGenerator`: field-change events at a steady rate, signed as Projectrak signs them, retried on `503` and on
  connection errors as Jira retries; every event carries a sequence number in its one field's value.
- `Tally`: what arrived at the receiver, per webhook: lost, duplicated, signatures checked, latencies.
- `record_figures`: one JSON line per scenario in `test-artifacts/reliability.jsonl`.

Every wait is on a condition with a deadline. The only sleeps are the load generator's pacing (a request is due at
start + i/rate) and its back-off before a retry, as a real sender's.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import os
import platform
import random
import re
import resource
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from addon.storage.models import Delivery, DeliveryStatus, utcnow
from tests.receivers import ReceivedRequest, Receiver
from tests.support.addon_server import wait_for
from tests.support.admin import AdminClient
from tests.support.atlassian import FakeAtlassian, FakeSite
from tests.support.figures import percentile
from tests.support.http import free_port
from tests.support.processes import AddonProcess, addon_env

REPO_ROOT = Path(__file__).resolve().parents[2]
REPORT_PATH = REPO_ROOT / "test-artifacts" / "reliability.jsonl"
RUN_ID = f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
FIELD_CHANGES = "/events/projectrak/field-changes"
PROJECT_ID = 10000


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


#: Seconds of steady load in the load scenarios: the issue's 2 minutes (shorter runs: RELIABILITY_LOAD_S=45).
LOAD_S = env_float("RELIABILITY_LOAD_S", 120.0)
#: Seconds of load during which the fault scenarios kill processes or restart the database.
FAULT_S = env_float("RELIABILITY_FAULT_S", 40.0)
#: Field-change events per second: 40/s is 200 deliveries/s to 5 webhooks, well under what this 2-core machine
#: holds (the opt-in ramp `test_find_the_rate_this_machine_holds` measured 100/s; docs/reliability.md), so the
#: scenarios stay green while other work shares the machine.
RATE = env_float("RELIABILITY_RATE", 40.0)


# -- the report -----------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cores": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "load_avg_1m": round(os.getloadavg()[0], 2)}


def record_figures(scenario: str, figures: dict[str, Any]) -> dict[str, Any]:
    """Append one scenario's figures to the report (and print them, for `-s`)."""
    line = {"run": RUN_ID, "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "scenario": scenario,
            **figures, "machine": machine()}
    REPORT_PATH.parent.mkdir(parents=True, exist_ok=True)
    with REPORT_PATH.open("a") as out:
        out.write(json.dumps(line) + "\n")
    print(f"\nRELIABILITY {json.dumps(line)}")
    return line


def percentiles(values: list[float], scale: float = 1000.0) -> dict[str, float | None]:
    """p50/p95/p99/max of seconds, in milliseconds (nearest rank)."""
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    ordered = sorted(values)

    def rank(p: float) -> float:
        return round(percentile(ordered, p * 100) * scale, 1)

    return {"p50": rank(0.50), "p95": rank(0.95), "p99": rank(0.99), "max": round(ordered[-1] * scale, 1)}


# -- what the secrets scenario scans --------------------------------------------------------------------------


JWT_PATTERN = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
WHSEC_PATTERN = re.compile(r"whsec_[A-Za-z0-9+/=]{8,}")


@dataclass
class Answer:
    """One answer of the add-on: what the secrets scan reads."""

    method: str
    url: str
    status: int
    text: str  # headers and body
    may_carry_secret: bool  # the answer of a create, a rotation or a new operational URL, which carries a new secret


class Collector:
    """Logs, answers and secrets gathered over the whole run (one per test session)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.log_files: list[Path] = []
        self.log_lines: list[str] = []
        self.answers: list[Answer] = []
        self.addon_urls: set[str] = set()
        self.secrets: dict[str, str] = {}  # secret -> what it is

    def add_secret(self, value: str, kind: str) -> None:
        with self._lock:
            self.secrets[value] = kind
            if value.startswith("whsec_"):
                self.secrets[value[len("whsec_"):]] = kind + " (base64 part)"

    def add_site(self, site: FakeSite) -> None:
        self.add_secret(site.shared_secret, f"shared secret of {site.name}")

    def add_addon_url(self, url: str) -> None:
        with self._lock:
            self.addon_urls.add(url.rstrip("/"))

    def add_log_file(self, path: Path) -> None:
        with self._lock:
            self.log_files.append(path)

    def add_log_line(self, line: str) -> None:
        with self._lock:
            self.log_lines.append(line)

    def is_addon_url(self, url: str) -> bool:
        return any(url.startswith(base + "/") or url == base for base in self.addon_urls)

    def add_answer(self, method: str, url: str, status: int, headers: dict[str, str], body: bytes) -> None:
        path = url.split("?", 1)[0]
        may_carry = (method == "POST" and status == 201 and path.endswith("/api/webhooks")) or (
            method == "POST" and status == 200 and path.endswith("/rotate-secret")) or (
            # the operational webhook's: the PATCH that sets its URL (one that clears it carries none)
            method == "PATCH" and status == 200 and path.endswith("/api/settings") and b'"secret"' in body)
        text = "\n".join(f"{k}: {v}" for k, v in headers.items()) + "\n\n" + body.decode("utf-8", "replace")
        with self._lock:
            self.answers.append(Answer(method, url, status, text, may_carry))


COLLECTOR = Collector()


class CollectingHandler(logging.Handler):
    """Keeps every in-process log record (message and traceback) for the secrets scan."""

    def __init__(self, collector: Collector) -> None:
        super().__init__(logging.DEBUG)
        self.collector = collector
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.collector.add_log_line(self.format(record))
        except Exception:  # noqa: BLE001 - a log line that cannot be formatted is not worth failing a request
            self.handleError(record)


# -- receivers -----------------------------------------------------------------------------------------------


class StatusReceiver(Receiver):
    """A `Receiver` that also remembers the status it answered each request with (`status_of`), so that a request
    answered `503` is not counted as delivered."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._current = threading.local()
        self._statuses: dict[int, int] = {}

    def _record(self, request: ReceivedRequest) -> None:
        self._current.request = request  # the handler asks for the behaviour right after recording, same thread
        super()._record(request)

    def behaviour_for(self, path: str) -> Any:
        behaviour = super().behaviour_for(path)
        request = getattr(self._current, "request", None)
        if request is not None:
            self._statuses[id(request)] = behaviour.status
            self._current.request = None
        return behaviour

    def status_of(self, request: ReceivedRequest) -> int | None:
        """The status `request` was answered with; None while the handler has not decided it yet."""
        return self._statuses.get(id(request))


# -- subprocesses ---------------------------------------------------------------------------------------------


class ProcessStack:
    """`addon serve` (and `addon worker`s) as an operator runs them, on one port and one database."""

    def __init__(self, tmp_path: Path, database_url: str, atlassian: FakeAtlassian, receiver: Receiver, *,
                 secret_key: str | None, timeout_s: float = 5.0) -> None:
        self.tmp_path = tmp_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        values = {"PORT": str(self.port), "ADDON_BASE_URL": self.url, "DATABASE_URL": database_url,
                  "ADDON_INSTALL_KEYS_URL": atlassian.keys_url, "ADDON_JIRA_HOSTS": "127.0.0.1",
                  "OUTGOING_ALLOW_PRIVATE_NETWORKS": "1", "OUTGOING_CA_BUNDLE": receiver.ca_path,
                  "OUTGOING_TIMEOUT_S": str(timeout_s)}
        if secret_key:
            values["ADDON_SECRET_KEY"] = secret_key
            COLLECTOR.add_secret(secret_key, "ADDON_SECRET_KEY")
        self.env = addon_env(**values)
        self.timeout_s = timeout_s
        self.server: AddonProcess | None = None
        self.workers: list[AddonProcess] = []
        self._names = itertools.count(1)
        self.server_args: list[str] = []
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self._own_cpu_at_start = usage.ru_utime + usage.ru_stime
        COLLECTOR.add_addon_url(self.url)

    def _spawn(self, kind: str, args: list[str]) -> AddonProcess:
        log_path = self.tmp_path / f"{kind}-{next(self._names)}.log"
        COLLECTOR.add_log_file(log_path)
        return AddonProcess(args, self.env, self.tmp_path, log_path)

    def start_server(self, *args: str) -> AddonProcess:
        self.server_args = list(args)
        self.server = self._spawn("serve", ["serve", "--port", str(self.port), *args])
        self.server.wait_healthy(self.url, timeout=60)
        return self.server

    def restart_server(self) -> AddonProcess:
        return self.start_server(*self.server_args)

    def kill_server(self) -> None:
        assert self.server is not None
        self.server.kill()
        self.server = None

    def start_worker(self, concurrency: int = 16, wait: bool = True) -> AddonProcess:
        worker = self._spawn("worker", ["worker", "--concurrency", str(concurrency)])
        self.workers.append(worker)
        if wait:
            wait_until(lambda: worker_started(worker), timeout=60, message="the worker to start")
        return worker

    @property
    def topology(self) -> str:
        serve = "addon serve " + " ".join(self.server_args)
        return serve.strip() + (" + addon worker" if self.workers else " (delivery worker in-process)")

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds used so far by the live server and workers, and by this test process (load generator,
        receiver, fake Jira) since the stack was built."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {"server": group_cpu_s(self.server.proc.pid) if self.server else 0.0,
                "workers": round(sum(group_cpu_s(w.proc.pid) for w in self.workers if w.proc.poll() is None), 1),
                "test_process": round(usage.ru_utime + usage.ru_stime - self._own_cpu_at_start, 1)}

    def stop(self) -> None:
        for proc in [*self.workers, *([self.server] if self.server else [])]:
            if proc.proc.poll() is None:
                proc.stop(timeout=20)
            elif not proc._log.closed:
                proc._log.close()


def group_cpu_s(pgid: int) -> float:
    """User + system CPU seconds of the live processes of one process group (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after the name: state, ppid, pgrp, ..., utime (12), stime (13)
            total += int(fields[11]) + int(fields[12])
    return round(total / tick, 1)


def start_topology(stack: ProcessStack, backend: str) -> None:
    """The deployment README describes for each database: on SQLite one `addon serve` with its delivery worker
    in-process (a separate worker on SQLite is only woken by polling, every 5 s); on PostgreSQL web processes
    without a worker beside an `addon worker` woken by LISTEN/NOTIFY."""
    if backend == "sqlite":
        stack.start_server()
    else:
        stack.start_server("--no-worker")
        stack.start_worker()


def worker_started(worker: AddonProcess) -> bool:
    if worker.proc.poll() is not None:
        raise AssertionError(f"worker exited with {worker.proc.returncode}: {worker.output()[-2000:]}")
    return "worker started" in worker.output()


def wait_until(condition: Any, timeout: float, message: str, interval: float = 0.05) -> Any:
    return wait_for(condition, timeout=timeout, interval=interval, message=message)


# -- a tenant with webhooks -----------------------------------------------------------------------------------


@dataclass
class Hook:
    id: int
    path: str
    secret: str


def new_site(atlassian: FakeAtlassian, addon_url: str) -> FakeSite:
    """A Jira site with one project and one administrator, installed and enabled."""
    site = atlassian.new_site()
    COLLECTOR.add_site(site)
    site.admins.add("admin-account")
    site.add_project(PROJECT_ID, "DEMO", "Demo project")
    assert site.install(addon_url).status_code == 204
    enabled = site.call(addon_url, "POST", "/lifecycle/enabled", json_body=site.lifecycle_body("enabled"))
    assert enabled.status_code == 204, enabled.text
    return site


def create_hooks(addon_url: str, site: FakeSite, receiver: Receiver, count: int, prefix: str = "/hook") -> list[Hook]:
    """`count` webhooks on the receiver (one path each), created through the admin API as the page does."""
    admin = AdminClient(addon_url, site)
    hooks = []
    for i in range(count):
        created = admin.create(f"receiver {i}", receiver.url(f"{prefix}/{i}", host="127.0.0.1"))
        COLLECTOR.add_secret(created["secret"], f"webhook secret {created['id']}")
        hooks.append(Hook(created["id"], f"{prefix}/{i}", created["secret"]))
    return hooks


# -- the load generator ---------------------------------------------------------------------------------------


@dataclass
class Outcome:
    seq: int
    due: float
    tries: int = 0
    statuses: Counter = field(default_factory=Counter)
    accepted_at: float | None = None
    event_id: int | None = None
    latency_s: float | None = None  # of the request that got the 202
    final_error: str | None = None


class LoadGenerator:
    """Events at `rate` per second for `duration_s`, each retried (after a short back-off) on `503`, other `5xx`
    and connection errors until `give_up_s` after the end of the load, as Jira retries a webhook. `4xx` is final.

    Event `seq` is due at start + seq/rate. Its one change is a text field whose value is `<tag>:<seq>`, so each
    arrival names its event.
    """

    def __init__(self, url: str, site: FakeSite, rate: float, duration_s: float, *, tag: str | None = None,
                 threads: int = 24, give_up_s: float = 90.0, timeout_s: float = 15.0) -> None:
        self.url = url
        self.site = site
        self.rate = rate
        self.duration_s = duration_s
        self.tag = tag or uuid.uuid4().hex[:8]
        self.threads = threads
        self.give_up_s = give_up_s
        self.timeout_s = timeout_s
        self.outcomes: dict[int, Outcome] = {}
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self.started_at = 0.0
        self.finished_sending_at = 0.0
        self.max_lag_s = 0.0
        self.stop_event = threading.Event()

    # life cycle

    def start(self) -> LoadGenerator:
        self.started_at = time.monotonic()
        self._workers = [threading.Thread(target=self._run, name=f"load-{i}", daemon=True)
                         for i in range(self.threads)]
        for thread in self._workers:
            thread.start()
        return self

    @property
    def load_ends_at(self) -> float:
        return self.started_at + self.duration_s

    def finish(self) -> None:
        """End the load now (for a load started with a generous `duration_s`): no event is due after this."""
        self.duration_s = min(self.duration_s, self.elapsed())

    def join(self) -> None:
        for thread in self._workers:
            thread.join(self.duration_s + self.give_up_s + self.timeout_s + 30)
        self.finished_sending_at = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started_at

    # one sender thread

    def body(self, seq: int) -> bytes:
        return json.dumps({
            "project": {"id": PROJECT_ID},
            "timestamp": 1_700_000_000_000 + seq,
            "changes": [{"field": {"id": 7001, "name": "Sequence", "type": "text"}, "previous": None,
                         "current": f"{self.tag}:{seq}"}],
        }, separators=(",", ":")).encode()

    def _run(self) -> None:
        session = requests.Session()
        while not self.stop_event.is_set():
            with self._lock:
                seq = next(self._seq)
            due = self.started_at + seq / self.rate
            if due >= self.load_ends_at:
                return
            outcome = Outcome(seq, due)
            with self._lock:
                self.outcomes[seq] = outcome
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            else:
                self.max_lag_s = max(self.max_lag_s, -wait)
            self._send(session, outcome)
        session.close()

    def _send(self, session: requests.Session, outcome: Outcome) -> None:
        body = self.body(outcome.seq)
        while True:
            outcome.tries += 1
            token = self.site.token("POST", FIELD_CHANGES, sub="projectrak-user")
            sent = time.monotonic()
            backoff = 0.25
            try:
                response = session.post(self.url + FIELD_CHANGES, data=body, timeout=self.timeout_s,
                                        headers={"Authorization": f"JWT {token}",
                                                 "Content-Type": "application/json"})
            except requests.RequestException as exc:
                outcome.statuses[f"connection error: {type(exc).__name__}"] += 1
                session.close()
            else:
                outcome.statuses[response.status_code] += 1
                if response.status_code == 202:
                    outcome.accepted_at = time.monotonic()
                    outcome.latency_s = outcome.accepted_at - sent
                    outcome.event_id = response.json().get("event_id")
                    return
                if response.status_code < 500:
                    outcome.final_error = f"{response.status_code} {response.text[:200]}"
                    return
                retry_after = response.headers.get("Retry-After", "")
                if retry_after.isdigit():
                    backoff = min(float(retry_after), 1.0)  # honoured, but kept short so the scenario stays short
            if time.monotonic() + backoff > self.load_ends_at + self.give_up_s or self.stop_event.is_set():
                outcome.final_error = "gave up: " + ", ".join(f"{k}×{v}" for k, v in outcome.statuses.items())
                return
            time.sleep(backoff)

    # figures

    def accepted(self) -> dict[int, Outcome]:
        return {seq: o for seq, o in self.outcomes.items() if o.accepted_at is not None}

    def figures(self) -> dict[str, Any]:
        outcomes = list(self.outcomes.values())
        statuses: Counter = Counter()
        for o in outcomes:
            statuses.update(o.statuses)
        accepted = [o for o in outcomes if o.accepted_at is not None]
        final_4xx = [o for o in outcomes if o.final_error and not o.final_error.startswith("gave up")]
        return {
            "target_rate_per_s": self.rate,
            "load_s": round(self.duration_s, 1),
            "sent": len(outcomes),
            "accepted": len(accepted),
            "accepted_rate_per_s": round(len(accepted) / self.duration_s, 1),
            "requests": sum(o.tries for o in outcomes),
            "answers": {str(k): v for k, v in sorted(statuses.items(), key=lambda kv: str(kv[0]))},
            "status_500": statuses.get(500, 0),
            "retried_events": sum(1 for o in outcomes if o.tries > 1),
            "refused_4xx": len(final_4xx),
            "gave_up": sum(1 for o in outcomes if o.final_error and o.final_error.startswith("gave up")),
            "max_lag_behind_schedule_s": round(self.max_lag_s, 2),
            "intake_latency_ms": percentiles([o.latency_s for o in accepted if o.latency_s is not None]),
        }

    def errors(self) -> list[str]:
        return [f"event {o.seq}: {o.final_error}" for o in self.outcomes.values() if o.final_error][:20]


# -- what arrived ---------------------------------------------------------------------------------------------


@dataclass
class Arrival:
    webhook_id_header: str
    received_at: float
    request: ReceivedRequest


class Tally:
    """What the receiver got for one load generator's events, per webhook path; updated incrementally."""

    def __init__(self, receiver: Receiver, hooks: list[Hook], tag: str, *, sample_every: int = 25) -> None:
        self.receiver = receiver
        self.hooks = {hook.path: hook for hook in hooks}
        self.tag = tag
        self.sample_every = sample_every
        self.by_path: dict[str, dict[int, list[Arrival]]] = {path: defaultdict(list) for path in self.hooks}
        self.foreign = 0
        self.refused_by_receiver = 0  # requests the receiver answered with an error: attempts, not arrivals
        self._seen = 0
        self.signatures_checked = 0
        self.signature_failures: list[str] = []
        self.first_arrival_at: float | None = None
        self.last_arrival_at: float | None = None

    def update(self) -> None:
        status_of = getattr(self.receiver, "status_of", None)
        for request in self.receiver.requests[self._seen:]:
            status = status_of(request) if status_of is not None else 200
            if status is None:
                break  # answered in a moment: look again at the next update
            self._seen += 1
            if not 200 <= status <= 299:
                self.refused_by_receiver += 1
                continue
            arrivals = self.by_path.get(request.path)
            if arrivals is None:
                continue
            try:
                value = request.json()["data"]["fields"][0]["value"]["current"]
                tag, seq_text = value.split(":")
                seq = int(seq_text)
            except (ValueError, KeyError, IndexError, TypeError, AttributeError):
                self.foreign += 1
                continue
            if tag != self.tag:
                self.foreign += 1
                continue
            arrivals[seq].append(Arrival(request.headers.get("webhook-id", ""), request.received_at, request))
            if self.first_arrival_at is None:
                self.first_arrival_at = request.received_at
            self.last_arrival_at = request.received_at
            if seq % self.sample_every == 0 or len(arrivals[seq]) > 1:
                self._verify(request)

    def _verify(self, request: ReceivedRequest) -> None:
        self.signatures_checked += 1
        try:
            Receiver.verify(request, [self.hooks[request.path].secret])
        except Exception as exc:  # noqa: BLE001 - collected, asserted by the scenario
            self.signature_failures.append(f"{request.path} {request.headers.get('webhook-id')}: {exc}")

    def duplicate_ids(self) -> set[str]:
        """`webhook-id`s received more than once (at-least-once after a crash)."""
        self.update()
        return {webhook_id for arrivals in self.by_path.values() for items in arrivals.values()
                for webhook_id, n in Counter(a.webhook_id_header for a in items).items() if n > 1}

    def duplicate_event_seqs(self) -> set[int]:
        """Events that arrived under more than one `webhook-id`: intake accepted them twice."""
        self.update()
        return {seq for arrivals in self.by_path.values() for seq, items in arrivals.items()
                if len({a.webhook_id_header for a in items}) > 1}

    def drain_after(self, moment: float) -> float:
        """Seconds from `moment` (the end of the load) to the last arrival."""
        return round(max(0.0, (self.last_arrival_at or moment) - moment), 2)

    def delivery_rate(self) -> float:
        """Requests received per second between the first and the last arrival."""
        if self.first_arrival_at is None or self.last_arrival_at is None:
            return 0.0
        total = sum(len(items) for arrivals in self.by_path.values() for items in arrivals.values())
        return round(total / max(1e-9, self.last_arrival_at - self.first_arrival_at), 1)

    def missing(self, accepted: set[int]) -> int:
        """(event, webhook) pairs accepted and not (yet) arrived."""
        self.update()
        return sum(len(accepted - arrivals.keys()) for arrivals in self.by_path.values())

    def figures(self, accepted: dict[int, Outcome], started_at: float) -> dict[str, Any]:
        self.update()
        accepted_seqs = set(accepted)
        duplicated_deliveries = duplicated_events = unacknowledged = arrived = 0
        latencies: list[float] = []
        for arrivals in self.by_path.values():
            for seq, items in arrivals.items():
                ids = Counter(a.webhook_id_header for a in items)
                duplicated_deliveries += sum(n - 1 for n in ids.values())
                duplicated_events += len(ids) - 1
                if seq in accepted_seqs:
                    arrived += 1
                    latencies.append(min(a.received_at for a in items) - accepted[seq].accepted_at)
                else:
                    unacknowledged += 1
        return {
            "webhooks": len(self.hooks),
            "expected_deliveries": len(accepted_seqs) * len(self.hooks),
            "arrived": arrived,
            "lost": sum(len(accepted_seqs - arrivals.keys()) for arrivals in self.by_path.values()),
            "duplicated_deliveries": duplicated_deliveries,
            "duplicated_events": duplicated_events,
            "arrived_unacknowledged": unacknowledged,
            "received_requests": sum(len(items) for arrivals in self.by_path.values() for items in arrivals.values()),
            "foreign_requests": self.foreign,
            "signatures_checked": self.signatures_checked,
            "signature_failures": len(self.signature_failures),
            "delivery_latency_ms": percentiles(latencies),
            "last_arrival_after_start_s": None if self.last_arrival_at is None
            else round(self.last_arrival_at - started_at, 1),
        }


def wait_for_arrivals(tally: Tally, load: LoadGenerator, timeout: float, *, engine: Engine | None = None,
                      lease_s: float | None = None, timeout_s: float = 5.0) -> tuple[float, list[str]]:
    """Wait until every accepted event has arrived at every webhook; returns (seconds waited, the `webhook-id`s
    whose leases were ended early).

    With `engine`, a lease older than one attempt can take (`timeout_s` + 10 s) is ended early every few seconds: a
    delivery whose attempt was recorded by nobody (its worker was killed, or the database was down when the worker
    tried to record it) would otherwise wait for the rest of its lease (`OUTGOING_TIMEOUT_S` + 60 s). That is the
    lease clock fast-forwarded, not a change of outcome: no attempt is running on such a delivery any more.
    """
    started = time.monotonic()
    accepted = set(load.accepted())
    released: list[str] = []
    next_release = started + 5.0
    while tally.missing(accepted):
        now = time.monotonic()
        if now - started > timeout:
            break
        if engine is not None and lease_s is not None and now >= next_release:
            released += release_stale_leases(engine, lease_s=lease_s, older_than_s=timeout_s + 10)
            next_release = now + 5.0
        time.sleep(0.1)
    return time.monotonic() - started, released


# -- leases ---------------------------------------------------------------------------------------------------


def release_all_leases(engine: Engine) -> list[str]:
    """End every lease of a pending delivery now; returns their `webhook-id`s. Only while no worker runs: the
    leases are then all a killed worker's, which would otherwise end by themselves `OUTGOING_TIMEOUT_S` + 60 s
    after they were taken (the lease clock fast-forwarded, to keep the scenario short)."""
    leased = (Delivery.status == DeliveryStatus.PENDING) & Delivery.lease_until.is_not(None)
    with engine.begin() as conn:
        ids = list(conn.execute(select(Delivery.message_id).where(leased)).scalars())
        conn.execute(update(Delivery).where(leased).values(lease_until=None))
    return ids


def release_stale_leases(engine: Engine, *, lease_s: float, older_than_s: float) -> list[str]:
    """End the leases taken more than `older_than_s` ago (lease_until = claimed + lease_s); returns their
    `webhook-id`s."""
    cutoff = utcnow() + dt.timedelta(seconds=lease_s - older_than_s)
    stale = ((Delivery.status == DeliveryStatus.PENDING) & Delivery.lease_until.is_not(None)
             & (Delivery.lease_until < cutoff))
    with engine.begin() as conn:
        ids = list(conn.execute(select(Delivery.message_id).where(stale)).scalars())
        conn.execute(update(Delivery).where(stale).values(lease_until=None))
    return ids


def rng(name: str) -> tuple[random.Random, int]:
    """A seeded random source (RELIABILITY_SEED, else a fresh seed that the report records)."""
    seed = int(os.environ.get("RELIABILITY_SEED") or random.SystemRandom().randrange(2**31))
    return random.Random(f"{seed}:{name}"), seed
