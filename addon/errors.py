"""Every error, on every route, is JSON: {"error": {"code": …, "message": …}}."""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import HTTPException

#: Seconds a client is asked to wait when the database cannot be reached (a restart takes a few seconds).
DATABASE_RETRY_AFTER_S = "5"


class ApiError(Exception):
    """An error answer with a stable code and a message naming what is wrong."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Any:
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable_entity",
    429: "rate_limited",
}


def database_unavailable(err: BaseException) -> bool:
    """Whether a database error means the database cannot be reached right now (down, restarting, connection
    lost, pool exhausted, SQLite busy) rather than a bug: the caller should try again later."""
    if isinstance(err, OperationalError | InterfaceError | DisconnectionError | PoolTimeoutError):
        return True
    return isinstance(err, DBAPIError) and err.connection_invalidated


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(err: ApiError):  # type: ignore[no-untyped-def]
        return error_response(err.status, err.code, err.message, err.headers)

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException):  # type: ignore[no-untyped-def]
        status = err.code or 500
        message = err.description or err.name
        if status == 413:
            message = "the request body is larger than 1 MiB"
        return error_response(status, _HTTP_CODES.get(status, "http_error"), message)

    @app.errorhandler(SQLAlchemyError)
    def _database_error(err: SQLAlchemyError):  # type: ignore[no-untyped-def]
        if not database_unavailable(err):
            return _unexpected(err)
        # The class name only: a database error's text carries the SQL statement and its parameters.
        app.logger.warning("database unavailable: %s", type(getattr(err, "orig", None) or err).__name__)
        return error_response(503, "database_unavailable", "the database is unavailable; try again later",
                              {"Retry-After": DATABASE_RETRY_AFTER_S})

    @app.errorhandler(Exception)
    def _unexpected(err: Exception):  # type: ignore[no-untyped-def]
        app.logger.exception("unhandled error: %s", type(err).__name__)
        return error_response(500, "internal_error", "an unexpected error occurred")
