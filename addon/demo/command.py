"""`addon demo`: the add-on with the demo door alone, on a database of its own, with the demo site, its receiver,
the delivery worker and the web server in this one process. It prints one URL to open."""

from __future__ import annotations

import logging
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from addon.config import Settings

if TYPE_CHECKING:
    from flask import Flask

    from addon.demo.receiver import Receiver
    from addon.process.runtime import Runtime

log = logging.getLogger(__name__)

DEFAULT_PORT = 8765
BUNDLE = Path(__file__).resolve().parent / "static" / "demo.js"
DEFAULT_DATABASE_URL = "sqlite:///instance/demo.sqlite"


def demo_settings(settings: Settings, port: int, database_url: str, ca_bundle: str) -> Settings:
    """The demo's settings: its own database and address; the receiver's CA as the one extra CA the sender trusts
    (this process's sender only); no Forge door, no metrics route."""
    return settings.with_changes(database_url=database_url, base_url=f"http://127.0.0.1:{port}", port=port,
                                 ca_bundle=ca_bundle, allow_private_networks=False, forge_app_id=None,
                                 metrics_token=None)


def _receiver(workdir: Path, port: int) -> Receiver:
    """The receiver on the port after the demo's, so that a webhook saved in one run still reaches it in the next;
    on any free port when that one is taken (the saved webhooks then fail until their URL is changed)."""
    from addon.demo.receiver import Receiver

    if port:
        try:
            return Receiver(workdir, port)
        except OSError as err:
            print(f"addon demo: the receiver cannot listen on port {port} ({err.strerror}); it takes another",
                  file=sys.stderr, flush=True)
    return Receiver(workdir)


def run(settings: Settings, port: int, database_url: str, create_app: Callable[[Runtime], Flask]) -> int:
    """Serve the demo until SIGTERM or Ctrl-C; 2 when the database holds real tenants. `create_app` is
    `addon.app.create_app`'s, passed in by the command line (the assembly, which imports every door: this door
    imports no other)."""
    from werkzeug.serving import WSGIRequestHandler, make_server

    class RequestLog(WSGIRequestHandler):
        """werkzeug's request log without the query string: the page's one-time `login` stays out of the log."""

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            self.log("info", '"%s %s" %s %s', self.command, self.path.split("?", 1)[0], code, size)

    from addon.demo import tenant as demo_tenant
    from addon.demo.door import DemoDoor
    from addon.demo.receiver import stored_secret_verifier
    from addon.demo.site import DemoSite
    from addon.process.background import Background
    from addon.process.runtime import Runtime
    from addon.storage.engine import make_engine
    from addon.storage.migrate import upgrade

    if database_url.startswith("sqlite:///") and not database_url.startswith("sqlite:////"):
        Path(database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="addon-demo-"))
    apps: dict[str, Any] = {}

    def app(environ: Any, start_response: Any) -> Any:  # the port is known before the app is built
        return apps["app"](environ, start_response)

    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # a line per housekeeping job at every start
    requested_port = port
    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=RequestLog)
    port = server.server_port
    receiver = runtime = background = None
    try:
        receiver = _receiver(workdir, 0 if requested_port == 0 else port + 1)
        settings = demo_settings(settings, port, database_url, str(receiver.ca_file))
        engine = make_engine(settings.database_url)
        upgrade(engine)
        engine.dispose()
        runtime = Runtime.build(settings)
        try:
            demo_tenant.refuse_real_tenants(runtime)
        except demo_tenant.RealTenants as err:
            print(f"addon demo: {err}", file=sys.stderr)
            return 2
        runtime.local_targets = frozenset({("127.0.0.1", receiver.port)})
        door = DemoDoor(runtime, DemoSite(), receiver)
        runtime.doors.append(door)
        apps["app"] = create_app(runtime)
        tenant_id = demo_tenant.install(runtime)
        receiver.verifier = stored_secret_verifier(runtime, tenant_id)
        receiver.start()
        background = Background.start(runtime, deliveries=True)
        for hook in runtime.on_installed:  # the projects' snapshot, as after a signed install
            hook(tenant_id)
        url = f"http://127.0.0.1:{port}/demo?login={door.login_key}"
        if not BUNDLE.is_file():
            print(f"addon demo: the page's bundle is not built ({BUNDLE}): run `make ui` (`make demo` does)",
                  file=sys.stderr, flush=True)
        print(f"The demo is running on {settings.database_url}; its receiver is {receiver.url}.\n"
              f"Open {url}\n(Ctrl-C stops it.)", flush=True)
        for stop_signal in (signal.SIGTERM, signal.SIGINT):  # Ctrl-C too: the same orderly stop
            signal.signal(stop_signal, lambda *_: threading.Thread(target=server.shutdown).start())
        server.serve_forever()
        return 0
    finally:
        server.server_close()
        if background is not None:
            background.stop()
        if receiver is not None:
            receiver.stop()
        if runtime is not None:
            runtime.close()
        shutil.rmtree(workdir, ignore_errors=True)
