"""Shared fixtures: databases (SQLite always, PostgreSQL where TEST_DATABASE_URL is set), the fake Atlassian,
and the add-on served over real HTTP."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from addon.config import Settings
from addon.storage.engine import make_engine
from addon.storage.migrate import upgrade
from tests.receivers import Receiver
from tests.support.addon_server import AddonServer
from tests.support.atlassian import FakeAtlassian, FakeSite
from tests.support.forge import FakeForge
from tests.support.intake import install_and_enable

PG_URL = os.environ.get("TEST_DATABASE_URL")
PG_SKIP_REASON = "TEST_DATABASE_URL is not set: PostgreSQL tests skipped"


def pytest_report_header(config: pytest.Config) -> str:
    return f"PostgreSQL tests: {'on ' + make_url(PG_URL).render_as_string() if PG_URL else PG_SKIP_REASON}"


@pytest.fixture(scope="session")
def migrated_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database migrated once per session; each test gets a copy (migrations are tested on their own)."""
    path = tmp_path_factory.mktemp("template") / "addon.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()  # the last connection closing folds the WAL into the file
    return path


@pytest.fixture
def sqlite_url(tmp_path: Path, migrated_sqlite_template: Path) -> str:
    shutil.copyfile(migrated_sqlite_template, tmp_path / "addon.db")
    return f"sqlite:///{tmp_path}/addon.db"


@pytest.fixture
def empty_sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/empty.db"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh schema of the test PostgreSQL database, dropped afterwards."""
    if not PG_URL:
        pytest.skip(PG_SKIP_REASON)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, pool_pre_ping=True)  # the schema is dropped even after a PostgreSQL restart
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    yield url.render_as_string(hide_password=False)
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Both databases: the test runs once on each."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request: pytest.FixtureRequest) -> str:
    """Both databases, with no schema at all (for migration tests)."""
    return request.getfixturevalue("empty_sqlite_url" if request.param == "sqlite" else "pg_url")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A local HTTPS receiver (its own trustme CA); some modules define their own."""
    with Receiver() as r:
        yield r


@pytest.fixture
def atlassian() -> Iterator[FakeAtlassian]:
    fake = FakeAtlassian()
    yield fake
    fake.stop()


def make_settings(atlassian: FakeAtlassian, database_url: str, **changes: object) -> Settings:
    return Settings(database_url=database_url, install_keys_url=atlassian.keys_url,
                    jira_hosts=("127.0.0.1", "*.atlassian.net"), allow_private_networks=True).with_changes(**changes)


@pytest.fixture
def addon(atlassian: FakeAtlassian, sqlite_url: str) -> Iterator[AddonServer]:
    server = AddonServer(make_settings(atlassian, sqlite_url))
    yield server
    server.stop()


@pytest.fixture
def db_addon(atlassian: FakeAtlassian, database_url: str) -> Iterator[AddonServer]:
    """The add-on (with its delivery worker) on SQLite and on PostgreSQL."""
    server = AddonServer(make_settings(atlassian, database_url))
    yield server
    server.stop()


@pytest.fixture
def site(atlassian: FakeAtlassian, addon: AddonServer) -> FakeSite:
    """A Jira site with the add-on installed and enabled, two projects and one administrator."""
    site = atlassian.new_site()
    site.admins.add("admin-account")
    site.add_project(10000, "DEMO", "Demo project")
    site.add_project(10001, "OPS", "Operations")
    install_and_enable(site, addon)
    return site


@pytest.fixture
def forge(atlassian: FakeAtlassian) -> Iterator[FakeForge]:
    """The fake Forge platform (JWKS, FIT minting, invoker, Jira for Forge installations) over the fake Atlassian."""
    fake = FakeForge(atlassian)
    yield fake
    fake.stop()
