"""Reading request bodies: 400 for what is not JSON, so handlers only ever see parsed documents."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

from flask import current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from addon.web.errors import ApiError

_CONSTANTS = {"NaN": Decimal("NaN"), "Infinity": Decimal("Infinity"), "-Infinity": Decimal("-Infinity")}

_INT_DIGITS_LIMIT = 4000
"""Below Python's limit on converting digits to an `int` (4,300, whose ValueError made a long integer a 400 as if
the JSON were malformed); the conversion's cost grows with the square of the length, which this bounds too."""


def _integer(literal: str) -> int | Decimal:
    """A JSON integer: an `int`, or past `_INT_DIGITS_LIMIT` digits the `Decimal` of its literal (linear to read),
    which every numeric field then refuses as too long or not an integer (a 422 naming it)."""
    return int(literal) if len(literal) <= _INT_DIGITS_LIMIT else Decimal(literal)


_DECODER = json.JSONDecoder(parse_float=Decimal, parse_int=_integer, parse_constant=_CONSTANTS.__getitem__)
"""Numbers with a fraction or an exponent become `Decimal`s, so the written literal is kept exactly
(`0.30000000000000001` stays that, `1e400` is not infinity). The bare `NaN`, `Infinity` and `-Infinity` that
Python's `json`/`requests` write are read as non-finite `Decimal`s: not valid JSON, but refused where they
stand (a `422` naming the path: a number field says NaN and infinities are not numbers), not as unparseable."""


_ESCAPED_UNSTORABLE = re.compile(r"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")
"""In a body's text, the only ways to a NUL or a surrogate: a JSON parser refuses them written raw (a raw NUL is a
control character, a raw surrogate is not UTF-8). A match (a surrogate pair, or an escaped backslash before `u`
included) only means the parsed document is walked to be sure."""
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
"""What no database stores in text (PostgreSQL refuses NUL; neither encodes a lone surrogate)."""
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _key_path(path: str, key: str) -> str:
    """`path.key`, or `path["key"]` for a key that is not a plain name (ASCII-escaped, cut: a path is shown)."""
    if _PLAIN_KEY.fullmatch(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key[:50])}]"


def unstorable_at(document: Any) -> str | None:
    """Where the first string (or object key) holding a NUL or a lone surrogate stands in a parsed JSON document,
    e.g. `changes[0].current` (`body` for the document itself); None when there is none. Iterative, so as deep a
    document as the parser read costs no recursion."""
    stack: list[tuple[str, Any]] = [("", document)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if _UNSTORABLE.search(value):
                return path or "body"
        elif isinstance(value, dict):
            items = []
            for key, item in value.items():
                if _UNSTORABLE.search(key):
                    return _key_path(path, key)
                items.append((_key_path(path, key), item))
            stack.extend(reversed(items))
        elif isinstance(value, list):
            stack.extend((f"{path}[{index}]", item) for index, item in reversed(list(enumerate(value))))
    return None


def read_json() -> Any:
    """The request body as JSON (numbers with a fraction or exponent as `Decimal`, see `_DECODER`); 413 past the
    size limit, 400 when unparseable, 422 naming where a string holds a NUL or a lone surrogate (CONTRACT §5:
    refused here, for every route, rather than failing the write that would store it)."""
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    if limit is not None and request.content_length is None:
        # A body without Content-Length (chunked) is cut at the limit without an error (werkzeug's LimitedStream
        # under gunicorn and the dev server alike): read one byte more, so a body over the limit is told apart.
        request.max_content_length = limit + 1
    raw = request.get_data(cache=True)
    if limit is not None and len(raw) > limit:
        raise RequestEntityTooLarge()
    try:
        text = raw.decode("utf-8")
        document = _DECODER.decode(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        reason = "the body is not UTF-8" if isinstance(err, UnicodeDecodeError) else "the body is not valid JSON"
        raise ApiError(400, "invalid_json", reason) from None
    if _ESCAPED_UNSTORABLE.search(text):
        where = unstorable_at(document)
        if where is not None:
            raise unprocessable(where, "a string cannot hold a NUL or a lone surrogate")
    return document


def unprocessable(path: str, message: str) -> ApiError:
    """422 naming the part of the document that does not fit, e.g. `changes[3].field.type`."""
    return ApiError(422, "invalid_body", f"{path}: {message}")
