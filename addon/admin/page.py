"""`GET /admin/webhooks`: the Outgoing webhooks page, loaded by Jira in an iframe with a qsh-bound JWT."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, g, render_template

from addon.connect.auth import jwt_required
from addon.runtime import current_runtime

bp = Blueprint("admin_page", __name__)

CONNECT_CDN = "https://connect-cdn.atl-paas.net"


def content_security_policy(frame_ancestors: list[str]) -> str:
    return "; ".join([
        "default-src 'self'",
        f"script-src 'self' {CONNECT_CDN}",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors " + " ".join(frame_ancestors),
    ])


@bp.get("/admin/webhooks")
@jwt_required()
def webhooks_page():  # type: ignore[no-untyped-def]
    settings = current_runtime().settings
    base_url = settings.base_url.rstrip("/")
    html = render_template("admin_webhooks.html", base_url=base_url, api_base=f"{base_url}/api")
    site = urlsplit(g.auth.tenant.base_url)
    ancestors = [f"{site.scheme}://{site.netloc}"]
    return html, 200, {
        "Content-Type": "text/html; charset=utf-8",
        "Content-Security-Policy": content_security_policy(ancestors),
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
    }
