"""Every error, on every route, is JSON: {"error": {"code": …, "message": …}}."""

from __future__ import annotations

import os
from collections.abc import Iterator
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


#: Modules whose errors may carry a statement's values in their text (PostgreSQL's DETAIL: "Failing row contains
#: (…)", "Key (…)=(…)"), besides SQLAlchemy's own.
_DRIVER_MODULES = ("sqlite3", "psycopg", "psycopg2", "psycopg_pool")
_ADDON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the package, addon/


def exception_chain(err: BaseException) -> Iterator[BaseException]:
    """The error and the ones it was raised from or while handling."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_database_error(err: BaseException) -> bool:
    return isinstance(err, SQLAlchemyError) or type(err).__module__.split(".")[0] in _DRIVER_MODULES


def database_error_summary(err: BaseException) -> str:
    """One line naming an error that involves the database, without any of its text (which may carry the
    statement's values, a shared secret among them): the error classes, the SQLSTATE, and where in the add-on
    it was raised."""
    names: list[str] = []
    sqlstate = None
    for link in exception_chain(err):
        names.append(type(link).__name__)
        orig = getattr(link, "orig", None)
        sqlstate = sqlstate or getattr(link, "sqlstate", None) or getattr(orig, "sqlstate", None) \
            or getattr(link, "sqlite_errorname", None) or getattr(orig, "sqlite_errorname", None)
    where = None
    tb = err.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if os.path.abspath(filename).startswith(_ADDON_DIR + os.sep):
            where = f"{os.path.relpath(filename, os.path.dirname(_ADDON_DIR))}:{tb.tb_lineno}"
        tb = tb.tb_next
    return " from ".join(dict.fromkeys(names)) + (f" ({sqlstate})" if sqlstate else "") + \
        (f" at {where}" if where else "")


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(err: ApiError):
        return error_response(err.status, err.code, err.message, err.headers)

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException):
        status = err.code or 500
        message = err.description or err.name
        if status == 413:
            message = "the request body is larger than 1 MiB"
        return error_response(status, _HTTP_CODES.get(status, "http_error"), message)

    @app.errorhandler(SQLAlchemyError)
    def _database_error(err: SQLAlchemyError):
        if not database_unavailable(err):
            return _unexpected(err)
        # The class name only: a database error's text carries the SQL statement and its parameters.
        app.logger.warning("database unavailable: %s", type(getattr(err, "orig", None) or err).__name__)
        return error_response(503, "database_unavailable", "the database is unavailable; try again later",
                              {"Retry-After": DATABASE_RETRY_AFTER_S})

    @app.errorhandler(Exception)
    def _unexpected(err: Exception):
        if any(is_database_error(link) for link in exception_chain(err)):
            # Neither the text nor the traceback: a database error's text may carry the statement's values (even
            # with the engine's hide_parameters, PostgreSQL's DETAIL may quote the failing row).
            app.logger.error("unhandled database error: %s", database_error_summary(err))
        else:
            app.logger.exception("unhandled error: %s", type(err).__name__)
        return error_response(500, "internal_error", "an unexpected error occurred")
