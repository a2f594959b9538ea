"""Reading request bodies: 400 for what is not JSON, so handlers only ever see parsed documents."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from flask import current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from addon.web.errors import ApiError

_CONSTANTS = {"NaN": Decimal("NaN"), "Infinity": Decimal("Infinity"), "-Infinity": Decimal("-Infinity")}

_DECODER = json.JSONDecoder(parse_float=Decimal, parse_constant=_CONSTANTS.__getitem__)
"""Numbers with a fraction or an exponent become `Decimal`s, so the written literal is kept exactly
(`0.30000000000000001` stays that, `1e400` is not infinity). The bare `NaN`, `Infinity` and `-Infinity` that
Python's `json`/`requests` write are read as non-finite `Decimal`s: not valid JSON, but refused where they
stand (a `422` naming the path: a number field says NaN and infinities are not numbers), not as unparseable."""


def read_json() -> Any:
    """The request body as JSON (numbers with a fraction or exponent as `Decimal`, see `_DECODER`); 413 past the
    size limit, 400 when unparseable."""
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    if limit is not None and request.content_length is None:
        # A body without Content-Length (chunked) is cut at the limit without an error (werkzeug's LimitedStream
        # under gunicorn and the dev server alike): read one byte more, so a body over the limit is told apart.
        request.max_content_length = limit + 1
    raw = request.get_data(cache=True)
    if limit is not None and len(raw) > limit:
        raise RequestEntityTooLarge()
    try:
        return _DECODER.decode(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        reason = "the body is not UTF-8" if isinstance(err, UnicodeDecodeError) else "the body is not valid JSON"
        raise ApiError(400, "invalid_json", reason) from None


def unprocessable(path: str, message: str) -> ApiError:
    """422 naming the part of the document that does not fit, e.g. `changes[3].field.type`."""
    return ApiError(422, "invalid_body", f"{path}: {message}")
