"""The tenant's settings (CONTRACT §10.5): its operational webhook, which receives the add-on's notices about the
tenant's webhooks (disabled, failing, recovered).

The operational webhook is a webhook row of kind `operational`, so its notices go through the outbox, the worker and
the sender as every delivery does; it is not one of the administrators' webhooks (not listed, not counted in the 50,
never sent the tenant's events). Its secret is shown once: by the `PATCH` that sets a URL (each such `PATCH` issues
a new one, as a new webhook would get) or by a rotation.
"""

from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy import select

from addon.admin.api import checked_url, rotate, rotation_keeps_old_secret
from addon.admin.permissions import admin_required
from addon.delivery import outcomes
from addon.delivery.operational import operational_webhook
from addon.doors import current_caller
from addon.process.runtime import current_runtime
from addon.sending.signing import generate_secret
from addon.storage.engine import transaction
from addon.storage.models import Tenant, Webhook, WebhookKind
from addon.web.errors import ApiError
from addon.web.json_body import read_json, unprocessable

bp = Blueprint("admin_settings", __name__, url_prefix="/api")

OPERATIONAL_NAME = "Operational webhook"


@bp.after_request
def _no_store(response):
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/settings")
@admin_required
def get_settings():
    with transaction(current_runtime().sessions) as session:
        webhook = operational_webhook(session, current_caller().tenant_id)
        return jsonify({"operational_url": webhook.url if webhook is not None else None})


@bp.patch("/settings")
@admin_required
def update_settings():
    body = read_json()
    if not isinstance(body, dict):
        raise unprocessable("body", "must be a JSON object")
    unknown = sorted(set(body) - {"operational_url"})
    if unknown:
        raise unprocessable(unknown[0], "is not a setting (only operational_url)")
    if "operational_url" not in body:
        return get_settings()
    raw = body["operational_url"]
    url = None if raw is None else checked_url("operational_url", raw)  # before the transaction: it may resolve
    runtime = current_runtime()
    tenant_id = current_caller().tenant_id
    with transaction(runtime.sessions) as session:
        # Settings of one tenant change one at a time (two PATCHes would otherwise make two operational webhooks).
        session.execute(select(Tenant.id).where(Tenant.id == tenant_id).with_for_update(key_share=True))
        webhook = operational_webhook(session, tenant_id, lock=True)
        if url is None:
            if webhook is not None:
                outcomes.delete_webhook(session, webhook)  # its pending notices are cancelled
            return jsonify({"operational_url": None})
        secret = generate_secret()
        if webhook is None:
            session.add(Webhook(tenant_id=tenant_id, kind=WebhookKind.OPERATIONAL, name=OPERATIONAL_NAME, url=url,
                                enabled=True, secret=runtime.box.seal(secret)))
        else:
            webhook.url = url  # pending notices go to the new URL, signed with the new secret
            webhook.secret = runtime.box.seal(secret)
            webhook.previous_secret = webhook.previous_secret_expires_at = None
        return jsonify({"operational_url": url, "secret": secret})


@bp.post("/settings/rotate-secret")
@admin_required
def rotate_operational_secret():
    """As a webhook's rotation: the old secret signs alongside for 24 h unless `{"keep_old": false}`. The answer is
    the contract's `{"secret"}` alone (§10.5), unlike a webhook's rotation: the page knows the grace is 24 h."""
    keep_old = rotation_keeps_old_secret()
    with transaction(current_runtime().sessions) as session:
        webhook = operational_webhook(session, current_caller().tenant_id, lock=True)
        if webhook is None:
            raise ApiError(409, "no_operational_webhook",
                           "no operational webhook is set: PATCH /api/settings with an operational_url first")
        return jsonify({"secret": rotate(webhook, keep_old)["secret"]})
