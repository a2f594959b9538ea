"""Reading request bodies: 400 for what is not JSON, so handlers only ever see parsed documents."""

from __future__ import annotations

import json
from typing import Any

from flask import current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from addon.errors import ApiError


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def read_json() -> Any:
    """The request body as JSON (`NaN`/`Infinity` refused); 413 past the size limit, 400 when unparseable."""
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    if limit is not None and request.content_length is None:
        # A body without Content-Length (chunked) is cut at the limit without an error (werkzeug's LimitedStream
        # under gunicorn and the dev server alike): read one byte more, so a body over the limit is told apart.
        request.max_content_length = limit + 1
    raw = request.get_data(cache=True)
    if limit is not None and len(raw) > limit:
        raise RequestEntityTooLarge()
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        reason = "the body is not UTF-8" if isinstance(err, UnicodeDecodeError) else "the body is not valid JSON"
        raise ApiError(400, "invalid_json", reason) from None


def unprocessable(path: str, message: str) -> ApiError:
    """422 naming the part of the document that does not fit, e.g. `changes[3].field.type`."""
    return ApiError(422, "invalid_body", f"{path}: {message}")
