"""`GET /admin/webhooks`: the Outgoing webhooks page, loaded by Jira in an iframe with a qsh-bound JWT."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from flask import Blueprint, render_template
from sqlalchemy import select

from addon.doors import Purpose, caller_required, current_caller
from addon.process.runtime import current_runtime
from addon.storage.models import Tenant

bp = Blueprint("admin_page", __name__)

CONNECT_CDN = "https://connect-cdn.atl-paas.net"


def content_security_policy(frame_ancestors: list[str]) -> str:
    return "; ".join([
        "default-src 'self'",
        f"script-src 'self' {CONNECT_CDN}",
        # Atlassian's design system (Compiled CSS-in-JS) inserts its style rules at run time; every value from
        # the API is still inserted as text (React), never as markup.
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors " + " ".join(frame_ancestors),
    ])


_HOST = re.compile(r"[a-z0-9.-]+|[0-9a-f:.]+")


def site_origin(url: str | None) -> str | None:
    """`scheme://host[:port]` of a site URL, for `frame-ancestors`; None unless it is a plain http(s) URL (so
    nothing else can reach the header)."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname or ""
    if parts.scheme.lower() not in ("http", "https") or not _HOST.fullmatch(host):
        return None
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme.lower()}://{host}" + (f":{port}" if port is not None else "")


def site_origins(base_url: str, display_url: str | None) -> list[str]:
    """The tenant's site: its base URL and, when Jira sent one, its display URL (a custom domain)."""
    origins = [site_origin(base_url), site_origin(display_url)]
    return list(dict.fromkeys(origin for origin in origins if origin)) or ["'none'"]


@bp.get("/admin/webhooks")
@caller_required(Purpose.ADMIN_PAGE)
def webhooks_page():
    runtime = current_runtime()
    base_url = runtime.settings.base_url.rstrip("/")
    html = render_template("admin_webhooks.html", base_url=base_url, api_base=f"{base_url}/api")
    with runtime.sessions() as session:
        display_url = session.scalar(select(Tenant.display_url).where(Tenant.id == current_caller().tenant_id))
    ancestors = site_origins(current_caller().tenant.base_url, display_url)
    return html, 200, {
        "Content-Type": "text/html; charset=utf-8",
        "Content-Security-Policy": content_security_policy(ancestors),
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
    }
