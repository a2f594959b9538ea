"""The add-on's long-lived parts, built once per process from the settings and shared by routes and workers."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from flask import current_app
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from addon import __version__
from addon.config import Settings
from addon.outbox.sqlite import Doorbell
from addon.outbox.wakeup import Wakeup
from addon.sending.client import Sender
from addon.storage.engine import make_engine, make_sessionmaker, sqlite_file
from addon.storage.secrets import SecretBox
from addon.storage.tenants import TenantCache, TenantView

if TYPE_CHECKING:  # addon.doors reads the runtime of the request being handled from here
    from addon.doors import Door, JiraApi


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    box: SecretBox
    deliveries_committed: Wakeup = field(default_factory=Wakeup)
    jira_events_committed: Wakeup = field(default_factory=Wakeup)
    tenant_cache: TenantCache = field(default_factory=TenantCache)
    # Called with a tenant id after a signed install commits (the project snapshot hooks in here).
    on_installed: list[Callable[[int], None]] = field(default_factory=list)
    # On a SQLite file, how committed deliveries wake the delivery workers of other processes (on PostgreSQL
    # the commit's NOTIFY does).
    doorbell: Doorbell | None = None
    # The front doors (`addon.doors`), added by whoever assembles the process (`addon.app.build_runtime`): the core
    # asks them who calls and for a tenant's Jira, and never imports one.
    doors: list[Door] = field(default_factory=list)
    # Webhook targets `(host, port)` let through the address policy, at saving and at sending: only `addon demo`
    # sets its own loopback receiver here (no setting can), so `addon serve`'s policy is never weakened.
    local_targets: frozenset[tuple[str, int]] = frozenset()

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        engine = make_engine(settings.database_url)
        database_file = sqlite_file(engine)
        doorbell = Doorbell(database_file) if database_file else None
        return cls(
            settings=settings,
            engine=engine,
            sessions=make_sessionmaker(engine),
            box=SecretBox(settings.secret_key),
            deliveries_committed=Wakeup(doorbell.ring if doorbell else None),
            doorbell=doorbell,
        )

    _sender: Sender | None = None
    _sender_lock: threading.Lock = field(default_factory=threading.Lock)

    def get_sender(self) -> Sender:
        """The process's webhook sender (one event loop and its connection pools for all attempts), built lazily."""
        with self._sender_lock:
            if self._sender is None:
                self._sender = Sender(
                    timeout_s=self.settings.outgoing_timeout_s,
                    ca_bundle=self.settings.ca_bundle,
                    allow_private=self.settings.allow_private_networks,
                    user_agent=f"Projectrak-Outgoing-Webhooks/{__version__} ({self.settings.app_key})",
                    local_targets=self.local_targets,
                )
            return self._sender

    def door(self, name: str) -> Door:
        for door in self.doors:
            if door.name == name:
                return door
        raise LookupError(f"no {name!r} door in this runtime")

    def jira_for(self, tenant: TenantView) -> JiraApi:
        """The tenant's Jira, through the door it came in by."""
        return self.door(tenant.door).jira_for(tenant)

    def close(self) -> None:
        with self._sender_lock:
            if self._sender is not None:
                self._sender.close()
                self._sender = None
        if self.doorbell is not None:
            self.doorbell.close()
        self.engine.dispose()


def current_runtime() -> Runtime:
    return current_app.extensions["addon"]
