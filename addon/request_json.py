"""Reading request bodies: 400 for what is not JSON, so handlers only ever see parsed documents."""

from __future__ import annotations

import json
from typing import Any

from flask import request

from addon.errors import ApiError


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def read_json() -> Any:
    """The request body as JSON (`NaN`/`Infinity` refused); 413 past the size limit, 400 when unparseable."""
    raw = request.get_data(cache=True)
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        reason = "the body is not UTF-8" if isinstance(err, UnicodeDecodeError) else "the body is not valid JSON"
        raise ApiError(400, "invalid_json", reason) from None


def unprocessable(path: str, message: str) -> ApiError:
    """422 naming the part of the document that does not fit, e.g. `changes[3].field.type`."""
    return ApiError(422, "invalid_body", f"{path}: {message}")
