"""A lone `addon worker`'s own `/metrics` (`--metrics-port`), behind the same `METRICS_TOKEN` as the server's;
without the token, `/metrics` is `404` there too (CONTRACT §10.6).

A small threaded WSGI server of the standard library: one route, answered as `addon.web.metrics` answers it.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from sqlalchemy.engine import Engine

from addon.process.metrics import exposition, token_matches

log = logging.getLogger(__name__)


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the standard library's name
        pass  # a scrape every few seconds would fill the log


def _error(start_response: Callable[..., Any], status: str, code: str, message: str,
           headers: list[tuple[str, str]] | None = None) -> list[bytes]:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                            *(headers or [])])
    return [body]


def metrics_app(engine: Engine, token: str | None) -> Callable[..., Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/metrics":
            return _error(start_response, "404 Not Found", "not_found", "only /metrics is served here")
        if token is None:
            return _error(start_response, "404 Not Found", "not_found",
                          "metrics are not enabled on this worker (METRICS_TOKEN is unset)")
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _error(start_response, "405 Method Not Allowed", "method_not_allowed", "use GET",
                          [("Allow", "GET, HEAD")])
        if not token_matches(environ.get("HTTP_AUTHORIZATION"), token):
            return _error(start_response, "401 Unauthorized", "unauthorized",
                          "metrics need Authorization: Bearer <METRICS_TOKEN>", [("WWW-Authenticate", "Bearer")])
        try:
            body, content_type = exposition(engine)
        except Exception:  # noqa: BLE001 - the database may be down: say so, keep serving
            log.exception("metrics could not be read")
            return _error(start_response, "503 Service Unavailable", "database_unavailable",
                          "the database does not answer")
        start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [body]

    return app


class MetricsServer:
    def __init__(self, host: str, port: int, engine: Engine, token: str | None) -> None:
        self._server = make_server(host, port, metrics_app(engine, token), server_class=_ThreadingServer,
                                   handler_class=_QuietHandler)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
