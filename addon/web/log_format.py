"""Log records rendered on one line each, whatever a request put in them.

Paths, headers and names come from requests; a newline, carriage return or escape sequence in one of them could
forge a log line or rewrite a terminal. Every record's message is escaped here, once, for the add-on's loggers and
gunicorn's (error and access), rather than at each call site.
"""

from __future__ import annotations

import logging
import re
from typing import Any

#: C0 controls, DEL, C1 controls and the Unicode line and paragraph separators: everything a terminal or a log
#: reader may take as a line break or a control sequence.
_CONTROL_CODES = [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029]
_NAMED = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}
_ESCAPES = {code: _NAMED.get(code, f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}") for code in _CONTROL_CODES}
#: In a traceback the line breaks are the traceback's own; only the other controls are escaped.
_ESCAPES_KEEPING_NEWLINES = {code: text for code, text in _ESCAPES.items() if code != 0x0A}
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape_controls(text: str) -> str:
    """`text` with every control character written as a visible escape (`\\n`, `\\x1b`, `\\u2028`)."""
    # Nearly every line has none: one search in C, rather than a translation character by character.
    return text.translate(_ESCAPES) if _CONTROL.search(text) else text


class EscapingFormatter(logging.Formatter):
    """A Formatter whose output is one line per record, plus an indented traceback when there is one.

    A traceback's lines are indented, so that no line of it (an exception message may quote a request) can look
    like the start of a record.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        return escape_controls(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:  # noqa: N802 - logging's name
        return _indent(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:  # noqa: N802 - logging's name
        return _indent(super().formatStack(stack_info))


def _indent(text: str) -> str:
    return "  " + text.translate(_ESCAPES_KEEPING_NEWLINES).replace("\n", "\n  ")
