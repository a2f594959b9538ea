"""`GET /`: what this server is, for whoever opens its address: JSON for `Accept: application/json`, else a short
HTML page. Nothing secret: the name, version, descriptor address, the command that prints the Forge manifest, the
health check and where the documentation is."""

from __future__ import annotations

from html import escape

from flask import Blueprint, Response, jsonify, request

from addon import __version__
from addon.process.runtime import current_runtime

bp = Blueprint("home", __name__)

NAME = "Projectrak Outgoing Webhooks"
#: The vendor's site, as the descriptor's `vendor.url`: the add-on's users find its documentation there.
DOCS_URL = "https://www.projectrak.com"
FORGE_MANIFEST_COMMAND = "addon forge manifest"


def about() -> dict[str, str]:
    base_url = current_runtime().settings.base_url.rstrip("/")
    return {"name": NAME, "version": __version__, "descriptor_url": f"{base_url}/atlassian-connect.json",
            "forge_manifest_command": FORGE_MANIFEST_COMMAND, "health_url": f"{base_url}/healthz", "docs": DOCS_URL}


@bp.get("/")
def home() -> Response:
    info = about()
    if request.accept_mimetypes.best_match(["text/html", "application/json"]) == "application/json":
        return jsonify(info)
    page = (
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{name}</title></head><body>"
        "<h1>{name}</h1><p>Version {version}. A Jira Cloud add-on that sends Projectrak field changes to the "
        "HTTPS webhooks a Jira administrator registers.</p>"
        "<p>Descriptor (Connect): <a href=\"{descriptor_url}\">{descriptor_url}</a></p>"
        "<p>Forge manifest: run <code>{forge_manifest_command}</code></p>"
        "<p>Health: <a href=\"{health_url}\">{health_url}</a></p>"
        "<p>Documentation: <a href=\"{docs}\">{docs}</a></p></body></html>"
    ).format(**{key: escape(value) for key, value in info.items()})
    return Response(page, mimetype="text/html")
