"""What gunicorn itself answers and logs, before a request reaches the Flask app.

gunicorn refuses a request line or headers over its limits (414/431) and malformed requests (400) with an HTML
page of its own; every error of this server is JSON (`{"error": {"code", "message"}}`), so its worker writes that
instead. Its loggers print the decoded path and quote refused request lines, so their formatters escape control
characters as the add-on's do.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from gunicorn import util
from gunicorn.glogging import Logger
from gunicorn.http.errors import LimitRequestHeaders, LimitRequestLine
from gunicorn.workers.gthread import ThreadWorker

from addon.web.log_format import EscapingFormatter
from addon.web.log_json import JsonLogFormatter

_CODES = {
    400: "bad_request",
    403: "forbidden",
    414: "uri_too_long",
    417: "expectation_failed",
    431: "request_header_fields_too_large",
    501: "not_implemented",
}


class EscapingGunicornLogger(Logger):
    """gunicorn's logger (its `logger_class`) with every handler's formatter escaping control characters."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for logger in (self.error_log, self.access_log):
            for handler in logger.handlers:
                formatter = handler.formatter or logging.Formatter()
                handler.setFormatter(EscapingFormatter(formatter._fmt, formatter.datefmt))


class JsonGunicornLogger(Logger):
    """gunicorn's logger with every line one JSON object (`LOG_FORMAT=json`), its access lines included."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for logger in (self.error_log, self.access_log):
            for handler in logger.handlers:
                handler.setFormatter(JsonLogFormatter())


class _Captured:
    """Stands in for the client socket while gunicorn writes its HTML error page, to learn its status line."""

    def __init__(self) -> None:
        self.data = b""

    def gettimeout(self) -> float:
        return 0.0

    def sendall(self, data: bytes) -> None:
        self.data += data

    def status(self) -> tuple[int, str] | None:
        parts = self.data.split(b"\r\n", 1)[0].split(b" ", 2)
        if len(parts) < 3 or not parts[1].isdigit():
            return None
        return int(parts[1]), parts[2].decode("latin-1")


class JsonErrorWorker(ThreadWorker):
    """gunicorn's threaded worker whose own error answers are JSON.

    gunicorn keeps deciding the status and writing its log and access lines (`handle_error`); only the page it
    writes is replaced.
    """

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        captured = _Captured()
        super().handle_error(req, captured, addr, exc)
        status = captured.status()
        if status is None:  # gunicorn wrote nothing (or could not): neither do we
            return
        status_int, reason = status
        body = json.dumps({"error": {"code": _CODES.get(status_int, "internal_error" if status_int >= 500 else
                                                        "bad_request"),
                                     "message": self._message(status_int, exc)}}).encode()
        head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
        try:
            util.write_nonblock(client, head + body)
        except Exception:  # noqa: BLE001 - the client may be gone, as gunicorn's own handle_error allows
            self.log.debug("Failed to send error message.")

    def _message(self, status_int: int, exc: BaseException) -> str:
        if isinstance(exc, LimitRequestLine):
            return f"the request line is longer than this server's limit of {self.cfg.limit_request_line} bytes"
        if isinstance(exc, LimitRequestHeaders):
            return (f"the request headers are over this server's limits: at most {self.cfg.limit_request_fields} "
                    f"fields of at most {self.cfg.limit_request_field_size} bytes each")
        if status_int >= 500:
            return "the server could not handle this request"
        return f"the request is malformed: {exc}"
