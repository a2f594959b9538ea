"""`GET /`: what this server is, for whoever opens its address: JSON for `Accept: application/json`, else a short
HTML page. Nothing secret: the name, version, descriptor address and where the documentation is."""

from __future__ import annotations

from html import escape

from flask import Blueprint, Response, jsonify, request

from addon import __version__
from addon.process.runtime import current_runtime

bp = Blueprint("home", __name__)

NAME = "Projectrak Outgoing Webhooks"
#: The vendor's site, as the descriptor's `vendor.url`: the add-on's users find its documentation there.
DOCS_URL = "https://www.projectrak.com"


def about() -> dict[str, str]:
    base_url = current_runtime().settings.base_url.rstrip("/")
    return {"name": NAME, "version": __version__, "descriptor_url": f"{base_url}/atlassian-connect.json",
            "docs": DOCS_URL}


@bp.get("/")
def home() -> Response:
    info = about()
    if request.accept_mimetypes.best_match(["text/html", "application/json"]) == "application/json":
        return jsonify(info)
    page = (
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{name}</title></head><body>"
        "<h1>{name}</h1><p>Version {version}. A Jira Cloud add-on that sends Projectrak field changes to the "
        "HTTPS webhooks a Jira administrator registers.</p>"
        "<p>Descriptor: <a href=\"{descriptor_url}\">{descriptor_url}</a></p>"
        "<p>Documentation: <a href=\"{docs}\">{docs}</a></p></body></html>"
    ).format(**{key: escape(value) for key, value in info.items()})
    return Response(page, mimetype="text/html")
