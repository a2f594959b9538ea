"""The descriptor, health, configuration and migrations."""

from __future__ import annotations

import pytest
import requests
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from addon.config import ConfigError, load_settings
from addon.storage.engine import make_engine
from addon.storage.migrate import is_current, upgrade
from addon.storage.models import Base


def test_descriptor_is_rendered_with_base_url_and_key(addon):
    response = requests.get(f"{addon.url}/atlassian-connect.json", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    d = response.json()
    assert d["baseUrl"] == addon.url
    assert d["key"] == "projectrak-outgoing-webhooks"
    assert d["authentication"] == {"type": "jwt"}
    assert d["scopes"] == ["READ"]
    assert d["apiMigrations"] == {"signed-install": True, "context-qsh": True, "gdpr": True}
    assert d["lifecycle"] == {"installed": "/lifecycle/installed", "uninstalled": "/lifecycle/uninstalled",
                              "enabled": "/lifecycle/enabled", "disabled": "/lifecycle/disabled"}
    events = ["project_created", "project_updated", "project_deleted", "project_soft_deleted",
              "project_restored_deleted", "project_archived", "project_restored_archived"]
    assert d["modules"]["webhooks"] == [{"event": e, "url": f"/events/jira/{e}"} for e in events]
    assert d["modules"]["webSections"] == [{"key": "projectrak-administration", "location": "admin_plugins_menu",
                                            "name": {"value": "Projectrak Administration"}}]
    assert d["modules"]["adminPages"] == [{
        "key": "outgoing-webhooks", "location": "admin_plugins_menu/projectrak-administration",
        "url": "/admin/webhooks", "name": {"value": "Outgoing webhooks"},
        "conditions": [{"condition": "user_is_admin"}]}]


def test_healthz(addon):
    response = requests.get(f"{addon.url}/healthz", timeout=10)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_unknown_route_is_json_404(addon):
    response = requests.get(f"{addon.url}/nope", timeout=10)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_settings_defaults():
    s = load_settings({}, env_file=None)
    assert s.base_url == "http://localhost:8000"
    assert s.app_key == "projectrak-outgoing-webhooks"
    assert s.database_url == "sqlite:///instance/addon.db"
    assert s.install_keys_url == "https://connect-install-keys.atlassian.com"
    assert s.outgoing_timeout_s == 10.0
    assert not s.allow_private_networks


def test_settings_trailing_slash_and_port():
    s = load_settings({"PORT": "9001"}, env_file=None)
    assert s.base_url == "http://localhost:9001"
    s = load_settings({"ADDON_BASE_URL": "https://abc.ngrok.app/"}, env_file=None)
    assert s.base_url == "https://abc.ngrok.app"


def test_a_port_option_wins_over_port_and_the_default_base_url_follows_it():
    assert load_settings({}, env_file=None, port=9002).base_url == "http://localhost:9002"
    s = load_settings({"PORT": "8000"}, env_file=None, port=9003)
    assert (s.port, s.base_url) == (9003, "http://localhost:9003")
    assert load_settings({"ADDON_BASE_URL": "https://abc.ngrok.app"}, env_file=None, port=9004).base_url == \
        "https://abc.ngrok.app"


def test_settings_read_dotenv(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("ADDON_KEY=from-dotenv\nOUTGOING_TIMEOUT_S=3\n")
    s = load_settings({}, env_file=env_file)
    assert s.app_key == "from-dotenv" and s.outgoing_timeout_s == 3.0
    assert load_settings({"ADDON_KEY": "from-env"}, env_file=env_file).app_key == "from-env"


@pytest.mark.parametrize("name,value", [
    ("PORT", "eighty"), ("ADDON_BASE_URL", "ftp://x"), ("ADDON_KEY", "has space"),
    ("ADDON_SECRET_KEY", "not-a-fernet-key"), ("DATABASE_URL", "mysql://x"),
    ("ADDON_INSTALL_KEYS_URL", "nope"), ("ADDON_JIRA_HOSTS", "bad host!"),
    ("OUTGOING_ALLOW_PRIVATE_NETWORKS", "maybe"), ("OUTGOING_CA_BUNDLE", "/no/such/file.pem"),
    ("OUTGOING_TIMEOUT_S", "-1"), ("OUTGOING_TIMEOUT_S", "nan"), ("PORT", "70000"),
    ("ADDON_BASE_URL", "http://[::1"), ("ADDON_BASE_URL", "http://localhost:0x50"),
    ("ADDON_INSTALL_KEYS_URL", "https://x:99999"), ("ADDON_INSTALL_KEYS_URL", "http://[::1"),
    ("DATABASE_URL", "postgresql+psycopg://u@h:99999/db"), ("DATABASE_URL", "postgresqlx://h/db"),
    ("DATABASE_URL", "not a url"),
])
def test_invalid_setting_names_the_variable(name, value):
    with pytest.raises(ConfigError) as err:
        load_settings({name: value}, env_file=None)
    assert name in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("base_url,allowed", [
    ("https://acme.atlassian.net", True), ("https://acme.jira.com", True),
    ("https://a.b.atlassian.net", False), ("http://acme.atlassian.net", False),
    ("https://atlassian.net", False), ("https://evil.com", False),
    ("https://user:pw@acme.atlassian.net", False), ("http://127.0.0.1:9999/site", False),
])
def test_tenant_base_url_policy(base_url, allowed):
    assert load_settings({}, env_file=None).jira_base_url_allowed(base_url) is allowed


def test_loopback_http_only_when_named():
    s = load_settings({"ADDON_JIRA_HOSTS": "127.0.0.1,*.atlassian.net"}, env_file=None)
    assert s.jira_base_url_allowed("http://127.0.0.1:9999/site")
    assert not s.jira_base_url_allowed("http://localhost:9999/site")
    assert load_settings({"ADDON_JIRA_HOSTS": "*"}, env_file=None).jira_base_url_allowed("https://any.example")
    assert not load_settings({"ADDON_JIRA_HOSTS": "*"}, env_file=None).jira_base_url_allowed("http://127.0.0.1")


def test_migrations_apply_on_both_databases(empty_database_url):
    engine = make_engine(empty_database_url)
    assert not is_current(engine)
    upgrade(engine)
    upgrade(engine)  # idempotent
    assert is_current(engine)
    tables = set(inspect(engine).get_table_names())
    assert {"tenants", "webhooks", "events", "deliveries", "attempts", "project_snapshots",
            "seen_jira_webhooks", "jira_inbox", "used_install_tokens"} <= tables
    with engine.connect() as connection:  # the migrations build exactly the models' tables and indexes
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []
    engine.dispose()
