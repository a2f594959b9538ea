"""The add-on as an operator runs it, for the intake and latency benchmarks: a fake Atlassian (install keys,
Jira REST) in this process, `addon serve` (and `addon worker` processes) as real processes, a signed install of
one site with project 10000 `DEMO`, and five webhooks pointing at the receiver process.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from bench.common import (
    PYTHON,
    REPO,
    WEBHOOK_PATHS,
    Database,
    Process,
    Seeded,
    add_webhooks,
    addon,
    addon_env,
    bench_module,
    children,
    log,
    memory_kb,
    new_secret_key,
)
from bench.context import Context


@dataclass
class Stack:
    ctx: Context
    database: Database
    server: Process
    workers: list[Process]
    url: str
    client_key: str
    shared_secret: str
    seeded: Seeded
    atlassian: Any
    idle_memory: dict[str, int] = field(default_factory=dict)

    def web_pids(self) -> dict[str, int]:
        """gunicorn's master, its web process(es) and (on PostgreSQL) the delivery worker it runs as a child."""
        pids = {"server_master": self.server.pid}
        web = [c for c in children(self.server.pid) if not is_worker_child(c)]
        for i, child in enumerate(web):
            pids[f"server_web{i}"] = child
        for i, child in enumerate(c for c in children(self.server.pid) if c not in web):
            pids[f"server_worker_child{i}"] = child
        for i, w in enumerate(self.workers):
            pids[f"worker{i}"] = w.pid
        return pids

    def memory(self) -> dict[str, dict[str, int]]:
        return {name: memory_kb(pid) for name, pid in self.web_pids().items()}

    def loadgen(self, mode: str, seconds: float, *, rate: float = 100.0, threads: int = 8, first_seq: int = 0,
                path: str | None = None) -> Any:
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False, dir=self.ctx.workdir) as f:
            out = f.name
        argv = [PYTHON, "-m", "bench.loadgen", "--url", self.url, f"--client-key={self.client_key}",
                f"--secret={self.shared_secret}", "--mode", mode, "--rate", str(rate), "--seconds", str(seconds),
                "--threads", str(threads), "--first-seq", str(first_seq), "--out", out]
        if path is not None:
            argv += ["--path", path]
        subprocess.run(argv, cwd=REPO, check=True, timeout=seconds + 120)
        with open(out) as f:
            return json.load(f)

    def stop(self) -> None:
        for w in self.workers:
            w.stop()
        self.server.stop()
        self.atlassian.stop()
        self.database.drop()


def is_worker_child(pid: int) -> bool:
    """`addon serve`'s delivery worker child (`python -m addon.cli worker --parent-pid …`)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"\0worker\0" in f.read()
    except OSError:
        return False


def start(ctx: Context, kind: str, *, topology: str = "serve", trivial_route: bool = False,
          timeout_s: float | None = None) -> Stack:
    """`topology`: `serve` (`addon serve` with its delivery worker as a child process), `separate`
    (`addon serve --no-worker` and one `addon worker`), or `intake`
    (`addon serve --no-worker` alone)."""
    from tests.support.atlassian import FakeAtlassian
    from tests.support.http import free_port

    database = ctx.new_database(kind)
    atlassian = FakeAtlassian()
    site = atlassian.new_site()
    site.add_project(10000, "DEMO", "Demo project")
    secret_key = new_secret_key()
    port = free_port()
    env = addon_env(database, ctx.receiver, secret_key, port=port, keys_url=atlassian.keys_url, timeout_s=timeout_s)
    args = ["serve", "--port", str(port)]
    if topology != "serve":
        args.append("--no-worker")
    name = f"serve-{kind}-{topology}"
    server = (bench_module("bench.serve_trivial", args, env, ctx.workdir, name) if trivial_route
              else addon(args, env, ctx.workdir, name))
    url = f"http://127.0.0.1:{port}"
    workers: list[Process] = []
    try:
        server.wait_healthy(url)
        if topology == "separate":
            workers.append(addon(["worker"], env, ctx.workdir, f"worker-{kind}-latency"))
        answer = site.install(url)
        if answer.status_code != 204:
            raise RuntimeError(f"signed install answered {answer.status_code}: {answer.text}")
        from addon.storage.models import Tenant

        engine = database.engine()
        with engine.connect() as conn:
            tenant_id = conn.scalar(select(Tenant.id).where(Tenant.client_key == site.client_key))
        engine.dispose()
        seeded = add_webhooks(database, secret_key, tenant_id, [ctx.receiver.url(p) for p in WEBHOOK_PATHS])
    except BaseException:
        for w in workers:
            w.stop()
        server.stop()
        atlassian.stop()
        database.drop()
        raise
    stack = Stack(ctx, database, server, workers, url, site.client_key, site.shared_secret, seeded, atlassian)
    log(f"stack up: {kind} {topology} at {url}")
    return stack
