"""The add-on served over real HTTP on 127.0.0.1 inside the test process, with its background work running."""

from __future__ import annotations

import logging
import threading

from werkzeug.serving import make_server

from addon.app import build_runtime, create_app
from addon.config import Settings
from addon.process.background import Background
from addon.storage.migrate import upgrade
from tests.support.http import free_port
from tests.support.waiting import wait_for  # noqa: F401 - imported from here by many tests

# werkzeug's request log carries the query string (and so `?jwt=` tokens); production uses gunicorn's access log
# without it. Keep tokens out of test logs too.
logging.getLogger("werkzeug").setLevel(logging.WARNING)


class AddonServer:
    """create_app() behind werkzeug's threaded server; `url` is also the add-on's ADDON_BASE_URL."""

    def __init__(self, settings: Settings, *, background: bool = True, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.settings = settings.with_changes(base_url=self.url, port=self.port)
        self.runtime = build_runtime(self.settings)
        upgrade(self.runtime.engine)
        self.app = create_app(runtime=self.runtime)
        self._server = make_server("127.0.0.1", self.port, self.app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        self.background = Background.start(self.runtime) if background else None

    @property
    def sessions(self):  # type: ignore[no-untyped-def]
        return self.runtime.sessions

    def stop(self) -> None:
        if self.background is not None:
            self.background.stop()
        self._server.shutdown()
        self._server.server_close()
        self.runtime.close()
