"""`GET /healthz`: 200 when the database answers, 503 otherwise. No authentication."""

from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy import text

from addon.process.runtime import current_runtime
from addon.web.errors import error_response

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    try:
        with current_runtime().engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception:  # noqa: BLE001 - any database failure is "not healthy"
        return error_response(503, "database_unavailable", "the database does not answer")
    return jsonify({"status": "ok"})
