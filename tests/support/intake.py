"""Helpers for the intake tests: webhooks written straight into the database, and reading what intake stored."""

from __future__ import annotations

import json
from typing import Any

import requests
from sqlalchemy import func, select

from addon.intake.jira_attributes import load_snapshot
from addon.sending.signing import generate_secret
from addon.storage.models import Delivery, Event, JiraInboxEvent, ProjectSnapshot, Tenant, Webhook
from tests.support.addon_server import AddonServer, wait_for
from tests.support.atlassian import FakeSite

FIELD_CHANGES = "/events/projectrak/field-changes"
# A discard port on loopback: a delivery worker's attempt fails at once and never leaves the machine.
RECEIVER_URL = "https://127.0.0.1:9/hook"


def install_and_enable(site: FakeSite, addon: AddonServer) -> None:
    assert site.install(addon.url).status_code == 204
    enabled = site.call(addon.url, "POST", "/lifecycle/enabled", json_body=site.lifecycle_body("enabled"))
    assert enabled.status_code == 204


def tenant_id(addon: AddonServer, site: FakeSite) -> int:
    with addon.sessions() as session:
        return session.scalar(select(Tenant.id).where(Tenant.client_key == site.client_key))


def add_webhook(addon: AddonServer, site: FakeSite, *, enabled: bool = True, name: str = "receiver") -> int:
    with addon.sessions() as session, session.begin():
        webhook = Webhook(tenant_id=tenant_id(addon, site), name=name, url=RECEIVER_URL, enabled=enabled,
                          secret=addon.runtime.box.seal(generate_secret()))
        session.add(webhook)
        session.flush()
        return webhook.id


def post_changes(site: FakeSite, addon: AddonServer, body: Any, *, sub: str | None = "user-account",
                 **kwargs: Any) -> requests.Response:
    return site.call(addon.url, "POST", FIELD_CHANGES, json_body=body, sub=sub, **kwargs)


def count(addon: AddonServer, model: type, *conditions: Any) -> int:
    with addon.sessions() as session:
        return session.scalar(select(func.count()).select_from(model).where(*conditions))


def events(addon: AddonServer, site: FakeSite | None = None) -> list[Event]:
    query = select(Event).order_by(Event.id)
    if site is not None:
        query = query.where(Event.tenant_id == tenant_id(addon, site))
    with addon.sessions() as session:
        return list(session.scalars(query))


def bodies(addon: AddonServer, site: FakeSite | None = None) -> list[dict]:
    return [json.loads(event.body) for event in events(addon, site)]


def deliveries(addon: AddonServer, event_id: int) -> list[Delivery]:
    with addon.sessions() as session:
        return list(session.scalars(select(Delivery).where(Delivery.event_id == event_id).order_by(Delivery.id)))


def snapshot(addon: AddonServer, site: FakeSite, project_id: int | str) -> dict[int, str | None] | None:
    with addon.sessions() as session:
        text = session.scalar(select(ProjectSnapshot.attributes).where(
            ProjectSnapshot.tenant_id == tenant_id(addon, site), ProjectSnapshot.project_id == str(project_id)))
    return None if text is None else load_snapshot(text)


def inbox(addon: AddonServer, site: FakeSite) -> list[JiraInboxEvent]:
    with addon.sessions() as session:
        return list(session.scalars(select(JiraInboxEvent).where(JiraInboxEvent.tenant_id == tenant_id(addon, site))
                                    .order_by(JiraInboxEvent.id)))


def wait_inbox_done(addon: AddonServer, site: FakeSite, timeout: float = 15.0) -> list[JiraInboxEvent]:
    """Wait until every inbox row of the site (its install snapshot included) is processed."""
    return wait_for(lambda: (rows := inbox(addon, site)) and all(r.processed_at for r in rows) and rows,
                    timeout, message="the Jira inbox to be processed")
