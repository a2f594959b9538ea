"""The add-on's long-lived parts, built once per process from the settings and shared by routes and workers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from flask import current_app
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from addon.config import Settings
from addon.connect.install_keys import InstallKeyFetcher
from addon.connect.jira import JiraClient
from addon.db import make_engine, make_sessionmaker
from addon.secrets_box import SecretBox
from addon.signals import Wakeup


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    box: SecretBox
    install_keys: InstallKeyFetcher
    jira: JiraClient
    deliveries_committed: Wakeup = field(default_factory=Wakeup)
    jira_events_committed: Wakeup = field(default_factory=Wakeup)
    # Called with a tenant id after a signed install commits (the project snapshot hooks in here).
    on_installed: list[Callable[[int], None]] = field(default_factory=list)

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        engine = make_engine(settings.database_url)
        return cls(
            settings=settings,
            engine=engine,
            sessions=make_sessionmaker(engine),
            box=SecretBox(settings.secret_key),
            install_keys=InstallKeyFetcher(settings.install_keys_url),
            jira=JiraClient(settings.app_key),
        )

    def close(self) -> None:
        self.engine.dispose()


def current_runtime() -> Runtime:
    return current_app.extensions["addon"]
