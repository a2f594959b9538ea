"""`LOG_FORMAT=json` (CONTRACT §10.6): every log record as one JSON object on one line, through python-json-logger.

The fields: `time` (ISO 8601, UTC), `level`, `logger`, `message`, an exception's traceback as `exc_info`, and the
ids a line is about as numbers: `tenant_id`, `webhook_id`, `delivery_id`. The add-on's lines write those ids into
their text (`… tenant=%s delivery=%s`); the ids are taken from the arguments the code passed for them (never from
the text, which may quote what a request or a receiver sent), or from `extra=` where a call gives them so. JSON's
own escaping keeps control characters out of the line, and the message is escaped as text lines are
(`addon.web.log_format`), so that one decoded and printed rewrites no terminal either.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from addon.web.log_format import escape_controls

_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"
_RENAMED = {"asctime": "time", "levelname": "level", "name": "logger"}
_ID_KEYS = {"tenant": "tenant_id", "webhook": "webhook_id", "delivery": "delivery_id"}
#: A %-placeholder of a log format, and the `key=` written just before it.
_PLACEHOLDER = re.compile(r"(?:\b(tenant|webhook|delivery)=)?%[-#0 +]*\d*(?:\.\d+)?[a-zA-Z%]")


def ids_of(record: logging.LogRecord) -> dict[str, Any]:
    """The ids a record's format names (`tenant=%s`, `webhook=%s`, `delivery=%s`), from the matching arguments."""
    if not isinstance(record.msg, str) or not isinstance(record.args, tuple) or "=%" not in record.msg:
        return {}
    found: dict[str, Any] = {}
    position = 0
    for match in _PLACEHOLDER.finditer(record.msg):
        if match.group(0).endswith("%%"):
            continue
        key = match.group(1)
        if key is not None and position < len(record.args):
            value = record.args[position]
            if isinstance(value, int) and not isinstance(value, bool):
                found[_ID_KEYS[key]] = value
        position += 1
    return found


class JsonLogFormatter(JsonFormatter):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(_FIELDS, rename_fields=_RENAMED, *args, **kwargs)  # noqa: B026 - the library's signature

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - logging's
        return dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds")

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        super().add_fields(log_data, record, message_dict)
        # As in text lines: a reader that prints the decoded message gets no control sequence from a request.
        if isinstance(log_data.get("message"), str):
            log_data["message"] = escape_controls(log_data["message"])
        for key, value in ids_of(record).items():
            log_data.setdefault(key, value)  # an `extra=` of the call wins
