"""`GET /metrics` (CONTRACT §10.6): the Prometheus series of every process of this server, behind `METRICS_TOKEN`.

Without a token set the route does not exist (`404`); a missing or wrong bearer token is `401`. Intake answers are
counted here too, by source and status class, so refusals made before a handler runs (authentication) count.
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, request

from addon.process.metrics import count_event, exposition, token_matches
from addon.process.runtime import current_runtime
from addon.web.errors import error_response

bp = Blueprint("metrics", __name__)

_SOURCES = (("/events/projectrak/", "projectrak"), ("/events/jira/", "jira"), ("/forge/events/jira", "jira"))


@bp.get("/metrics")
def metrics():
    token = current_runtime().settings.metrics_token
    if not token:
        return error_response(404, "not_found", "metrics are not enabled on this server (METRICS_TOKEN is unset)")
    if not token_matches(request.headers.get("Authorization"), token):
        return error_response(401, "unauthorized", "metrics need Authorization: Bearer <METRICS_TOKEN>",
                              {"WWW-Authenticate": "Bearer"})
    body, content_type = exposition(current_runtime().engine)
    return Response(body, 200, content_type=content_type)


def count_intake(app: Flask) -> None:
    """Count every answer to an intake route, accepted or refused, by its source."""

    @app.after_request
    def _count(response: Response) -> Response:
        if request.method == "POST":
            for prefix, source in _SOURCES:
                if request.path.startswith(prefix):
                    count_event(source, response.status_code)
                    break
        return response
