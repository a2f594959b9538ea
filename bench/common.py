"""What every benchmark needs: the machine, the receiver process, databases, `addon` processes, seeding rows
straight into the database, memory readings and percentiles.

Everything runs on 127.0.0.1. Every wait here is bounded by a deadline.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from sqlalchemy import create_engine, insert, select, text
from sqlalchemy.engine import Engine, make_url

# The tests' helpers, which import nothing of `addon` (measure_addon_src chooses which `addon` is loaded).
from tests.support.figures import percentile
from tests.support.processes import CommandProcess
from tests.support.waiting import wait_for

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BENCH_PG_DATABASE = "bench"
#: Payload timestamps are BASE_TIMESTAMP_MS + an event's sequence number, so the receiver can tell events apart.
BASE_TIMESTAMP_MS = 1_700_000_000_000
WEBHOOK_PATHS = ("/w1", "/w2", "/w3", "/w4", "/w5")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the machine --------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    }


def postgres_version(url: str) -> str | None:
    try:
        engine = create_engine(url)
        with engine.connect() as conn:
            version = conn.scalar(text("SHOW server_version"))
        engine.dispose()
        return str(version)
    except Exception:  # noqa: BLE001 - reported as absent
        return None


# -- numbers ------------------------------------------------------------------------------------------------


def summary_ms(values_s: Iterable[float]) -> dict[str, float]:
    values = sorted(v * 1000 for v in values_s)
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "min_ms": round(values[0], 2),
        "p50_ms": round(percentile(values, 50), 2),
        "p90_ms": round(percentile(values, 90), 2),
        "p99_ms": round(percentile(values, 99), 2),
        "max_ms": round(values[-1], 2),
    }


def wait_until(condition: Callable[[], Any], timeout: float, interval: float = 0.05, what: str = "") -> Any:
    return wait_for(condition, timeout=timeout, interval=interval, message=what)


# -- memory -------------------------------------------------------------------------------------------------


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak resident set since the process started) of a process, in KiB."""
    values: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(("VmHWM:", "VmRSS:")):
                    key, value = line.split(":", 1)
                    values[key.lower()] = int(value.split()[0])
    except OSError:
        pass
    return values


def children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return found


# -- the receiver process -----------------------------------------------------------------------------------


class ReceiverProcess:
    """`bench.receiver_proc` in a child process; see its docstring for the protocol."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([PYTHON, "-m", "bench.receiver_proc"], cwd=REPO, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)
        assert self.proc.stdout is not None
        ready = self.proc.stdout.readline().split()
        if len(ready) != 3 or ready[0] != "READY":
            raise RuntimeError(f"receiver did not start: {ready}")
        self.port = int(ready[1])
        self.ca_path = ready[2]

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def _ask(self, line: str) -> dict:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def count(self) -> int:
        return self._ask("count")["count"]

    def behave(self, path: str, **options: Any) -> None:
        self._ask(f"behave {path} {json.dumps(options)}")

    def clear(self) -> None:
        self._ask("clear")

    def rows(self) -> list[tuple[str, int | None, float]]:
        """Every request received: (path, payload timestamp, monotonic arrival time)."""
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
            name = f.name
        try:
            self._ask(f"dump {name}")
            with open(name) as f:
                return [tuple(row) for row in json.load(f)]  # type: ignore[misc]
        finally:
            os.unlink(name)

    def memory(self) -> dict[str, int]:
        return self._ask("rss")

    def wait_count(self, count: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while True:
            got = self.count()
            if got >= count or time.monotonic() > deadline:
                return got
            time.sleep(0.05)

    def wait_paths(self, paths: Sequence[str], count: int, timeout: float) -> int:
        """Wait until `count` requests to `paths` have arrived, or `timeout`; returns how many did."""
        deadline = time.monotonic() + timeout
        while True:
            got = self._ask("countp " + ",".join(paths))["count"]
            if got >= count or time.monotonic() > deadline:
                return got
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)


# -- databases ----------------------------------------------------------------------------------------------


@dataclass
class Database:
    """A database for one scenario: a SQLite file, or a fresh schema of the PostgreSQL database `bench`."""

    kind: str  # sqlite | postgresql
    url: str
    _drop: Callable[[], None] | None = None

    def engine(self) -> Engine:
        from addon.storage.engine import make_engine

        return make_engine(self.url)

    def drop(self) -> None:
        if self._drop is not None:
            self._drop()
            self._drop = None


def sqlite_database(workdir: Path) -> Database:
    path = workdir / f"bench-{uuid.uuid4().hex[:8]}.db"
    return Database("sqlite", f"sqlite:///{path}")


def ensure_pg_database(admin_url: str) -> str:
    """The URL of the PostgreSQL database `bench` (created if missing), on the server of `admin_url`.

    A database of its own keeps the benchmarks' NOTIFYs and load away from tests running on `test`."""
    url = make_url(admin_url)
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        exists = conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": BENCH_PG_DATABASE})
        if not exists:
            conn.execute(text(f'CREATE DATABASE "{BENCH_PG_DATABASE}"'))
    engine.dispose()
    return url.set(database=BENCH_PG_DATABASE).render_as_string(hide_password=False)


def pg_database(bench_url: str) -> Database:
    schema = f"b_{uuid.uuid4().hex[:10]}"
    admin = create_engine(bench_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    url = make_url(bench_url).update_query_dict({"options": f"-csearch_path={schema}"})

    def drop() -> None:
        engine = create_engine(bench_url)
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()

    return Database("postgresql", url.render_as_string(hide_password=False), drop)


def migrate(database: Database) -> None:
    from addon.storage.migrate import upgrade

    engine = database.engine()
    upgrade(engine)
    engine.dispose()


# -- seeding rows straight into the database ----------------------------------------------------------------


@dataclass
class Seeded:
    tenant_id: int
    webhook_ids: list[int]
    secrets: list[str] = field(default_factory=list)


def seed_tenant(database: Database, secret_key: str, *, client_key: str | None = None,
                shared_secret: str = "bench-shared-secret", base_url: str = "http://127.0.0.1:1/site") -> int:
    from addon.storage.models import Tenant, TenantState
    from addon.storage.secrets import SecretBox

    engine = database.engine()
    box = SecretBox(secret_key)
    with engine.begin() as conn:
        tenant_id = conn.execute(insert(Tenant).values(
            client_key=client_key or f"bench-{uuid.uuid4()}", shared_secret=box.seal(shared_secret),
            base_url=base_url, state=TenantState.ENABLED).returning(Tenant.id)).scalar_one()
    engine.dispose()
    return tenant_id


def add_webhooks(database: Database, secret_key: str, tenant_id: int, urls: Sequence[str]) -> Seeded:
    from addon.sending.signing import generate_secret
    from addon.storage.models import Webhook
    from addon.storage.secrets import SecretBox

    engine = database.engine()
    box = SecretBox(secret_key)
    seeded = Seeded(tenant_id, [])
    with engine.begin() as conn:
        for i, url in enumerate(urls):
            secret = generate_secret()
            seeded.webhook_ids.append(conn.execute(insert(Webhook).values(
                tenant_id=tenant_id, name=f"bench {i + 1}", url=url, enabled=True,
                secret=box.seal(secret)).returning(Webhook.id)).scalar_one())
            seeded.secrets.append(secret)
    engine.dispose()
    return seeded


def event_body(seq: int) -> str:
    """The outgoing body of a typical change (two fields), as the outbox stores it."""
    from addon.outbox.store import encode_body

    return encode_body({"data": {
        "event": "updated", "user": "bench-user", "timestamp": BASE_TIMESTAMP_MS + seq,
        "project": {"id": 10000, "key": "DEMO", "name": "Demo project"},
        "fields": [
            {"id": 12345, "name": "Budget", "type": "number", "value": {"current": "23000", "previous": "25000"}},
            {"id": 54321, "name": "Status", "type": "status", "value": {"current": "Done", "previous": "On track"}},
        ]}})


def bulk_enqueue(database: Database, seeded: Seeded, events: int, *, first_seq: int = 0,
                 due: dt.datetime | None = None, batch: int = 2000) -> None:
    """`events` events and one pending delivery per webhook each, due at `due` (now), in big INSERTs: what
    the intake would have left in the outbox, written fast."""
    from addon.storage.models import Delivery, DeliveryStatus, Event, utcnow

    due = due or utcnow()
    engine = database.engine()
    with engine.begin() as conn:
        for start in range(first_seq, first_seq + events, batch):
            seqs = range(start, min(start + batch, first_seq + events))
            event_ids = conn.execute(
                insert(Event).returning(Event.id, sort_by_parameter_order=True),
                [{"tenant_id": seeded.tenant_id, "source": "projectrak", "project_id": "10000",
                  "body": event_body(seq), "created_at": due} for seq in seqs]).scalars().all()
            conn.execute(insert(Delivery), [
                {"tenant_id": seeded.tenant_id, "event_id": event_id, "webhook_id": webhook_id,
                 "message_id": f"msg_bench{event_id:012d}w{webhook_id:06d}{uuid.uuid4().hex[:6]}",
                 "status": DeliveryStatus.PENDING, "attempt_count": 0, "next_attempt_at": due,
                 "schedule_started_at": due, "created_at": due}
                for event_id in event_ids for webhook_id in seeded.webhook_ids])
    engine.dispose()


def count_pending(database: Database) -> int:
    from addon.storage.models import Delivery, DeliveryStatus

    engine = database.engine()
    with engine.connect() as conn:
        n = conn.scalar(select(text("count(*)")).select_from(Delivery).where(
            Delivery.status == DeliveryStatus.PENDING))
    engine.dispose()
    return int(n or 0)


# -- addon processes ----------------------------------------------------------------------------------------


def new_secret_key() -> str:
    return Fernet.generate_key().decode()


def addon_env(database: Database, receiver: ReceiverProcess, secret_key: str, *, port: int | None = None,
              keys_url: str = "http://127.0.0.1:9/keys", timeout_s: float | None = None) -> dict[str, str]:
    from tests.support.processes import addon_env as clean_env

    values = {
        "DATABASE_URL": database.url,
        "ADDON_SECRET_KEY": secret_key,
        "OUTGOING_ALLOW_PRIVATE_NETWORKS": "1",
        "OUTGOING_CA_BUNDLE": receiver.ca_path,
        "ADDON_INSTALL_KEYS_URL": keys_url,
        "ADDON_JIRA_HOSTS": "127.0.0.1",
        "PYTHONUNBUFFERED": "1",
    }
    if port is not None:
        values["PORT"] = str(port)
        values["ADDON_BASE_URL"] = f"http://127.0.0.1:{port}"
    if timeout_s is not None:
        values["OUTGOING_TIMEOUT_S"] = str(timeout_s)
    return clean_env(**values)


ADDON = str(Path(PYTHON).with_name("addon"))


class Process(CommandProcess):
    """A command started by a benchmark, its output in `<workdir>/<name>.log` (the tests' `CommandProcess`)."""

    def __init__(self, argv: list[str], env: dict[str, str], workdir: Path, name: str) -> None:
        super().__init__(argv, env, workdir, workdir / f"{name}.log", name)


#: A directory holding another copy of the `addon` package to measure instead of the working tree's (set by
#: `run_all --addon-src`, e.g. a snapshot taken before a change, for a before/after comparison in one sitting).
ADDON_SRC: str | None = None


def add_addon_src_option(parser: argparse.ArgumentParser) -> None:
    """`--addon-src DIR`, which every tool that starts the add-on takes; pass its value to `measure_addon_src`."""
    parser.add_argument("--addon-src", metavar="DIR", help="measure the `addon` package found in this directory "
                        "instead of the working tree's (a snapshot taken before a change)")


def measure_addon_src(addon_src: str | None) -> None:
    """Measure the `addon` package under `addon_src` (`--addon-src`) instead of the working tree's: in the processes
    the benchmarks start, and in this one, which builds the schema with that copy's migrations."""
    global ADDON_SRC
    if not addon_src:
        return
    ADDON_SRC = str(Path(addon_src).resolve())
    sys.path.insert(0, ADDON_SRC)
    import addon

    log(f"measuring the addon package at {Path(addon.__file__).parent}")


def python_path() -> str:
    return os.pathsep.join(p for p in (ADDON_SRC, str(REPO)) if p)


def addon(args: list[str], env: dict[str, str], workdir: Path, name: str) -> Process:
    """The real `addon` console script (importing `addon` from ADDON_SRC when set)."""
    return Process([ADDON, *args], {**env, "PYTHONPATH": ADDON_SRC} if ADDON_SRC else env, workdir, name)


def bench_module(module: str, args: list[str], env: dict[str, str], workdir: Path, name: str) -> Process:
    """`python -m bench.MODULE ARGS` with the repository (and ADDON_SRC) on the path."""
    return Process([PYTHON, "-m", module, *args], {**env, "PYTHONPATH": python_path()}, workdir, name)
