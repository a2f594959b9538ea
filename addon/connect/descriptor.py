"""`GET /atlassian-connect.json`: the descriptor template beside this module with `baseUrl` and `key` filled in."""

from __future__ import annotations

import functools
import json
from pathlib import Path

from flask import Blueprint, Response

from addon.process.runtime import current_runtime

bp = Blueprint("descriptor", __name__)

#: Package data, so an installed wheel serves it from any working directory.
DESCRIPTOR_TEMPLATE = Path(__file__).with_name("atlassian-connect.json")


@functools.cache
def render_descriptor(base_url: str, app_key: str) -> str:
    """Fill the template's placeholders as JSON strings, so no value can break out of its string."""
    text = DESCRIPTOR_TEMPLATE.read_text(encoding="utf-8")
    for placeholder, value in (("{{baseUrl}}", base_url.rstrip("/")), ("{{appKey}}", app_key)):
        text = text.replace(placeholder, json.dumps(value)[1:-1])
    return json.dumps(json.loads(text), indent=2)


@bp.get("/atlassian-connect.json")
def descriptor() -> Response:
    settings = current_runtime().settings
    return Response(render_descriptor(settings.base_url, settings.app_key), mimetype="application/json")
