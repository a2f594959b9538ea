"""The `addon` command: serve, worker, db upgrade."""

from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import shutil
import signal
import sys
import tempfile

from addon.admin.test_slots import DEFAULT_WEB_THREADS, WEB_THREADS_KEY
from addon.config import ConfigError, Settings, load_settings, read_log_format

log = logging.getLogger("addon")

# Gunicorn's access log without the query string, so a `?jwt=` token never reaches the log.
ACCESS_LOG_FORMAT = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms'


def _settings_or_exit(port: int | None = None) -> Settings:
    try:
        return load_settings(port=port)
    except ConfigError as err:
        print(f"configuration error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_db_upgrade(_args: argparse.Namespace) -> int:
    from addon.storage.engine import make_engine
    from addon.storage.migrate import upgrade

    settings = _settings_or_exit()
    engine = make_engine(settings.database_url)
    upgrade(engine)
    engine.dispose()
    log.info("database schema is current")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from gunicorn.app.base import BaseApplication

    from addon.app import build_runtime, create_app
    from addon.process.background import Background
    from addon.process.children import ServeArbiter, WorkerChild
    from addon.storage.engine import is_sqlite, make_engine
    from addon.storage.migrate import upgrade

    settings = _settings_or_exit(port=args.port)  # --port wins over PORT; the default ADDON_BASE_URL follows it
    engine = make_engine(settings.database_url)
    upgrade(engine)
    engine.dispose()

    sqlite = is_sqlite(settings.database_url)
    workers = 1 if sqlite else max(1, args.workers)
    if sqlite and args.workers > 1:
        log.warning("SQLite allows one web process: --workers %s ignored (threads serve requests)", args.workers)
    # The delivery worker is a child process (addon/worker_child.py), with a core of its own.
    worker_child = None if args.no_worker else WorkerChild(stop_timeout_s=settings.outgoing_timeout_s + 20)
    state: dict[str, Background] = {}

    class AddonServer(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("bind", f"{args.host}:{settings.port}")
            self.cfg.set("workers", workers)
            # gunicorn's threaded worker and logger, with JSON error answers and escaped log lines (serve_edge.py)
            self.cfg.set("worker_class", "addon.process.serve_edge.JsonErrorWorker")
            self.cfg.set("logger_class", "addon.process.serve_edge.JsonGunicornLogger" if settings.log_format == "json"
                         else "addon.process.serve_edge.EscapingGunicornLogger")
            self.cfg.set("threads", args.threads)
            self.cfg.set("timeout", 60)
            self.cfg.set("graceful_timeout", 20)
            self.cfg.set("accesslog", "-")
            self.cfg.set("access_log_format", ACCESS_LOG_FORMAT)
            self.cfg.set("post_worker_init", _post_worker_init)
            self.cfg.set("worker_exit", _worker_exit)
            self.cfg.set("child_exit", _child_exit)

        def load(self):
            runtime = build_runtime(settings)
            state["runtime"] = runtime
            app = create_app(runtime=runtime)
            app.config[WEB_THREADS_KEY] = args.threads  # tests may hold at most a quarter of them
            return app

        def run(self) -> None:
            try:
                ServeArbiter(self, worker_child).run()
            except RuntimeError as err:  # as gunicorn's own run(): a configuration it refuses
                print(f"\nError: {err}\n", file=sys.stderr)
                raise SystemExit(1) from None

    def _post_worker_init(_worker) -> None:
        runtime = state["runtime"]
        state["background"] = Background.start(runtime, deliveries=False)  # type: ignore[arg-type]

    def _worker_exit(_server, _worker) -> None:
        background = state.get("background")
        if background is not None:
            background.stop()

    def _child_exit(_server, worker) -> None:  # in the master, as prometheus_client's multi-process mode asks
        from addon.process.metrics import mark_process_dead

        mark_process_dead(worker.pid)

    log.info("Descriptor: %s/atlassian-connect.json", settings.base_url.rstrip("/"))  # a log line: JSON as the rest
    AddonServer().run()
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from addon.app import build_runtime
    from addon.process.background import Background
    from addon.process.children import die_with_parent
    from addon.storage.migrate import wait_until_current

    if args.parent_pid is not None:  # started by `addon serve`: never outlive it
        die_with_parent(args.parent_pid)
    settings = _settings_or_exit()
    runtime = build_runtime(settings)
    wait_until_current(runtime.engine)  # until here SIGTERM ends the process at once
    # From here SIGTERM and SIGINT stay pending (every thread started below inherits the mask) until `sigwait`
    # takes them. A Python handler setting an Event that the main thread waits on can deadlock: the handler runs
    # in the main thread, which may be holding the Event's lock at that moment (the likely cause of an orphaned
    # worker once found still running 16 minutes after its SIGTERM).
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1`: every thread's stack, to stderr
    metrics_server = None
    if args.metrics_port is not None:
        from addon.process.metrics_server import MetricsServer

        metrics_server = MetricsServer(args.metrics_host, args.metrics_port, runtime.engine,
                                       settings.metrics_token or None).start()
        log.info("worker metrics at http://%s:%s/metrics", args.metrics_host, metrics_server.port)
        if not settings.metrics_token:
            log.warning("METRICS_TOKEN is unset: the worker's /metrics answers 404")
    background = Background.start(runtime, deliveries=True, concurrency=args.concurrency)
    log.info("worker started concurrency=%s", args.concurrency)
    signal.sigwait(stop_signals)
    log.info("worker stopping")
    background.stop()
    if metrics_server is not None:
        metrics_server.stop()
    runtime.close()
    return 0


def cmd_tenants(args: argparse.Namespace) -> int:
    import json

    from addon.admin.tenants import copy_webhooks, list_tenants
    from addon.app import build_runtime
    from addon.storage.migrate import wait_until_current

    runtime = build_runtime(_settings_or_exit())
    wait_until_current(runtime.engine, timeout_s=10)
    try:
        if args.tenants_command == "list":
            for tenant in list_tenants(runtime):
                print(json.dumps(tenant))
        else:
            try:
                copied = copy_webhooks(runtime, args.from_client_key, args.to_client_key)
            except (LookupError, ValueError) as err:
                print(f"error: {err}", file=sys.stderr)
                return 1
            print(f"copied {copied} webhook(s)")
    finally:
        runtime.close()
    return 0


def cmd_privacy_report(_args: argparse.Namespace) -> int:
    from addon.app import build_runtime
    from addon.privacy.report import report_all
    from addon.storage.migrate import wait_until_current

    runtime = build_runtime(_settings_or_exit())
    wait_until_current(runtime.engine, timeout_s=10)
    try:
        counts = report_all(runtime)
    finally:
        runtime.close()
    print(f"accounts reported: {counts.reported}, closed: {counts.closed}, updated: {counts.updated} "
          f"({counts.tenants} tenant(s))")
    if counts.failed_tenants:
        print(f"{counts.failed_tenants} tenant(s) not finished (see the log); the next pass resumes them",
              file=sys.stderr)
        return 1
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from addon.app import create_app
    from addon.demo.command import run

    return run(_settings_or_exit(), args.port, args.database, lambda runtime: create_app(runtime=runtime))


def cmd_forge_manifest(args: argparse.Namespace) -> int:
    from addon.forge.manifest import manifest_command

    return manifest_command(write=args.write)


def build_parser() -> argparse.ArgumentParser:
    from addon.delivery.worker import DEFAULT_CONCURRENCY

    parser = argparse.ArgumentParser(prog="addon", description="Projectrak Outgoing Webhooks")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the production server (gunicorn)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=None, help="default: $PORT or 8000")
    serve.add_argument("--workers", type=int, default=1, help="web processes (PostgreSQL only)")
    serve.add_argument("--threads", type=int, default=DEFAULT_WEB_THREADS, help="threads per web process")
    serve.add_argument("--no-worker", action="store_true",
                       help="run no delivery worker (by default a child `addon worker` process)")
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", help="run a delivery worker alone")
    worker.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY,
                        help=f"deliveries sent at once (default {DEFAULT_CONCURRENCY}; a quarter of them per webhook)")
    worker.add_argument("--metrics-port", type=int, default=None,
                        help="serve this worker's /metrics on this port (404 without METRICS_TOKEN; 0: any free port)")
    worker.add_argument("--metrics-host", default="127.0.0.1", help="the address of --metrics-port")
    worker.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)  # set by `addon serve`
    worker.set_defaults(func=cmd_worker)

    db = sub.add_parser("db", help="database commands")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_upgrade = db_sub.add_parser("upgrade", help="apply Alembic migrations")
    db_upgrade.set_defaults(func=cmd_db_upgrade)

    tenants = sub.add_parser("tenants", help="operator commands on tenants")
    tenants_sub = tenants.add_subparsers(dest="tenants_command", required=True)
    tenants_sub.add_parser("list", help="one JSON line per tenant").set_defaults(func=cmd_tenants)
    copy = tenants_sub.add_parser("copy-webhooks", help="carry webhooks over after a site import")
    copy.add_argument("from_client_key")
    copy.add_argument("to_client_key")
    copy.set_defaults(func=cmd_tenants)

    privacy = sub.add_parser("privacy", help="personal data (accountIds) reported to Atlassian")
    privacy_sub = privacy.add_subparsers(dest="privacy_command", required=True)
    privacy_sub.add_parser("report", help="report the stored accountIds now, erase those of closed accounts, "
                           "print how many were reported, closed and updated").set_defaults(func=cmd_privacy_report)

    from addon.demo.command import DEFAULT_DATABASE_URL, DEFAULT_PORT

    demo = sub.add_parser("demo", help="try the add-on without a Jira site: a local demo site, its receiver and "
                          "the admin page (see docs/demo.md)")
    demo.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}; 0: any free port")
    demo.add_argument("--database", default=DEFAULT_DATABASE_URL,
                      help=f"the demo's own database (default {DEFAULT_DATABASE_URL}); one holding real tenants "
                      "is refused")
    demo.set_defaults(func=cmd_demo)

    forge = sub.add_parser("forge", help="the Forge app whose remote this add-on is")
    forge_sub = forge.add_subparsers(dest="forge_command", required=True)
    forge_manifest = forge_sub.add_parser(
        "manifest", help="print the Forge manifest with FORGE_APP_ID and ADDON_BASE_URL filled in")
    forge_manifest.add_argument("--write", action="store_true",
                                help="write it to forge/manifest.yml under the current directory instead")
    forge_manifest.set_defaults(func=cmd_forge_manifest)
    return parser


METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
METRICS_DIR_PREFIX = "addon-metrics-"


def _share_metrics_between_processes(argv: list[str]) -> str | None:
    """For `addon serve`: a fresh directory where each of its processes (gunicorn's web processes, the worker
    child, which inherit the environment) writes its series for `/metrics` to add up. prometheus_client reads the
    variable when it is first imported, so this comes before any import of the add-on's modules."""
    if argv[:1] != ["serve"] or "-h" in argv or "--help" in argv:
        return None
    os.environ[METRICS_DIR_ENV] = path = tempfile.mkdtemp(prefix=METRICS_DIR_PREFIX)
    return path


def main(argv: list[str] | None = None) -> int:
    metrics_dir = _share_metrics_between_processes(sys.argv[1:] if argv is None else argv)
    owner = os.getpid()
    try:
        from addon.app import configure_logging

        try:
            log_format = read_log_format()
        except ConfigError as err:
            print(f"configuration error: {err}", file=sys.stderr)
            raise SystemExit(2) from None
        configure_logging(log_format=log_format)
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    finally:
        # gunicorn's web processes leave through here too (a SystemExit after their fork): only the server removes it
        if metrics_dir is not None and os.getpid() == owner:
            shutil.rmtree(metrics_dir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
