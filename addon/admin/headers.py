"""A webhook's custom headers (CONTRACT §10.3): checked, stored with each value sealed, never shown again.

Stored as one JSON object, `{name: sealed value}`: the names are listed in answers (each value `null`), the values
are opened only to send.
"""

from __future__ import annotations

import json
import re
from typing import Any

from addon.storage.secrets import SecretBox
from addon.web.json_body import unprocessable

MAX_HEADERS = 10
MAX_NAME_CHARS = 64
MAX_VALUE_CHARS = 1024
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # RFC 9110's token
_PRINTABLE = re.compile(r"^[\x20-\x7e]*$")
_RESERVED = {"host", "content-type", "content-length", "connection", "transfer-encoding", "user-agent"}
_RESERVED_PREFIXES = ("webhook-", "projectrak-")


def stored_names(stored: str | None) -> list[str]:
    return list(json.loads(stored)) if stored else []


def opened(stored: str | None, box: SecretBox) -> dict[str, str]:
    """The headers to send, values opened."""
    return {name: box.open(value) for name, value in json.loads(stored).items()} if stored else {}


def validated(given: Any, stored: str | None, box: SecretBox) -> str | None:
    """The new stored form of `headers` from a request: it replaces every header; a name given with `null` keeps
    the value stored for it (a name stored before, compared without case). 422 naming the header otherwise.
    `null` is no header at all, as `{}` is (as a filter's `null` is no filter)."""
    if given is None:
        return None
    if not isinstance(given, dict):
        raise unprocessable("headers", "must be an object of header names and values")
    if len(given) > MAX_HEADERS:
        raise unprocessable("headers", f"at most {MAX_HEADERS} headers")
    before = {name.lower(): value for name, value in json.loads(stored).items()} if stored else {}
    result: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in given.items():
        where = f"headers.{name}"
        if not name or len(name) > MAX_NAME_CHARS or not _TOKEN.match(name):
            raise unprocessable(where, f"is not a header name (a token of 1 to {MAX_NAME_CHARS} characters)")
        lower = name.lower()
        if lower in _RESERVED or lower.startswith(_RESERVED_PREFIXES):
            raise unprocessable(where, "is set by the add-on itself and cannot be replaced")
        if lower in seen:
            raise unprocessable(where, "is given twice (header names are not case-sensitive)")
        seen.add(lower)
        if value is None:
            if lower not in before:
                raise unprocessable(where, "has no stored value to keep: give its value")
            result[name] = before[lower]
            continue
        if not isinstance(value, str) or len(value) > MAX_VALUE_CHARS or not _PRINTABLE.match(value):
            raise unprocessable(where, f"must be printable ASCII of at most {MAX_VALUE_CHARS} characters")
        # HTTP has no leading or trailing spaces in a field's value (RFC 9110 §5.5): stored as it can be sent, and
        # as a receiver would read it anyway, rather than saved and then refused by the sender on every attempt.
        result[name] = box.seal(value.strip(" "))
    return json.dumps(result) if result else None
