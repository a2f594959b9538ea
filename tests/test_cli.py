"""The `addon` command as an operator runs it: serve (gunicorn), worker, db upgrade, bad configuration."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from cryptography.fernet import Fernet
from sqlalchemy import inspect

from addon.config import ConfigError, load_settings
from addon.storage.engine import make_engine
from tests.support.http import free_port
from tests.support.processes import ADDON, AddonProcess, addon_env


def test_serve_applies_migrations_and_serves(tmp_path, atlassian):
    port = free_port()
    db = tmp_path / "serve.db"
    env = addon_env(PORT=str(port), DATABASE_URL=f"sqlite:///{db}", ADDON_INSTALL_KEYS_URL=atlassian.keys_url,
                    ADDON_JIRA_HOSTS="127.0.0.1", ADDON_BASE_URL=f"http://127.0.0.1:{port}")
    proc = AddonProcess(["serve"], env, tmp_path, tmp_path / "serve.log")
    try:
        proc.wait_healthy(f"http://127.0.0.1:{port}")
        descriptor = requests.get(f"http://127.0.0.1:{port}/atlassian-connect.json", timeout=5).json()
        assert descriptor["baseUrl"] == f"http://127.0.0.1:{port}"
        site = atlassian.new_site()
        assert site.install(f"http://127.0.0.1:{port}").status_code == 204
        response = site.call(f"http://127.0.0.1:{port}", "POST", "/lifecycle/enabled?x=1", json_body={},
                             in_query=True)
        assert response.status_code == 204
    finally:
        assert proc.stop() == 0
    log = proc.output()
    assert "Listening at: http://127.0.0.1:" in log and "Booting worker with pid" in log  # gunicorn's own lines
    assert "Logging error" not in log and "Traceback" not in log
    assert f"http://127.0.0.1:{port}/atlassian-connect.json" in log
    assert "/lifecycle/enabled" in log
    assert "jwt=" not in log, "the access log must not carry tokens"
    assert site.shared_secret not in log


def test_serve_works_from_another_directory(tmp_path):
    """Templates, static files and migrations are found relative to the code, not the working directory."""
    port = free_port()
    env = addon_env(PORT=str(port))
    proc = AddonProcess(["serve"], env, tmp_path, tmp_path / "serve.log")
    try:
        proc.wait_healthy(f"http://127.0.0.1:{port}")
        assert requests.get(f"http://127.0.0.1:{port}/static/admin.js", timeout=5).status_code == 200
    finally:
        proc.stop()
    assert (tmp_path / "instance" / "addon.db").exists()


def test_db_upgrade(tmp_path):
    db = tmp_path / "up.db"
    result = subprocess.run([ADDON, "db", "upgrade"], env=addon_env(DATABASE_URL=f"sqlite:///{db}"), cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    engine = make_engine(f"sqlite:///{db}")
    assert "webhooks" in inspect(engine).get_table_names()
    engine.dispose()


def test_bad_configuration_stops_with_one_clear_line(tmp_path):
    result = subprocess.run([ADDON, "serve"], env=addon_env(OUTGOING_TIMEOUT_S="soon"), cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    [line] = result.stderr.splitlines()  # one line, nothing else
    assert "OUTGOING_TIMEOUT_S" in line, line


@pytest.mark.parametrize(("command", "name", "value"), [
    (["serve"], "ADDON_BASE_URL", "http://[::1"),
    (["db", "upgrade"], "ADDON_BASE_URL", "http://[::1"),
    (["serve"], "ADDON_INSTALL_KEYS_URL", "https://keys.example:99999"),
    (["worker"], "DATABASE_URL", "postgresql+psycopg://u@db.example:99999/addon"),
])
def test_an_unparseable_url_stops_with_one_clear_line(tmp_path, command, name, value):
    result = subprocess.run([ADDON, *command], env=addon_env(**{name: value}), cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()  # one line, nothing else
    assert line.startswith(f"configuration error: {name} must be "), line
    assert not (tmp_path / "instance").exists()  # stopped before anything was created


def test_serve_port_option_sets_the_default_base_url(tmp_path, atlassian):
    """`addon serve --port P` without PORT or ADDON_BASE_URL: the descriptor, the install audience and the
    printed descriptor URL all say http://localhost:P."""
    port = free_port()
    env = addon_env(DATABASE_URL=f"sqlite:///{tmp_path}/port.db", ADDON_INSTALL_KEYS_URL=atlassian.keys_url,
                    ADDON_JIRA_HOSTS="127.0.0.1")
    env.pop("PORT", None)
    proc = AddonProcess(["serve", "--port", str(port)], env, tmp_path, tmp_path / "serve.log")
    url = f"http://127.0.0.1:{port}"
    try:
        proc.wait_healthy(url)
        assert requests.get(f"{url}/atlassian-connect.json", timeout=5).json()["baseUrl"] == f"http://localhost:{port}"
        site = atlassian.new_site()
        assert site.install(url, aud=f"http://localhost:{port}").status_code == 204
        assert site.install(url, aud="http://localhost:8000").status_code == 401
    finally:
        proc.stop()
    assert f"Descriptor: http://localhost:{port}/atlassian-connect.json" in proc.output()


def test_worker_waits_for_schema_and_stops_on_sigterm(tmp_path):
    db = tmp_path / "w.db"
    env = addon_env(DATABASE_URL=f"sqlite:///{db}")
    subprocess.run([ADDON, "db", "upgrade"], env=env, cwd=tmp_path, check=True, timeout=120, capture_output=True)
    proc = AddonProcess(["worker"], env, tmp_path, tmp_path / "worker.log")
    from tests.support.addon_server import wait_for

    wait_for(lambda: "worker started" in proc.output(), timeout=60, message="worker start")
    assert proc.stop() == 0
    assert "worker stopping" in proc.output()


def test_site_import_carries_webhooks_over_with_their_secrets(tmp_path, atlassian):
    """After a site import (same baseUrl, new clientKey) the operator copies the webhooks to the new tenant."""
    from tests.conftest import make_settings
    from tests.support.addon_server import AddonServer
    from tests.support.delivery import add_webhook, tenant_id_of

    db = f"sqlite:///{tmp_path}/import.db"
    server = AddonServer(make_settings(atlassian, db), background=False)
    try:
        old = atlassian.new_site()
        assert old.install(server.url).status_code == 204
        add_webhook(server, tenant_id_of(server, old.client_key), "https://hooks.example.com/a", name="A")
        imported = atlassian.new_site(name=old.name)
        assert imported.install(server.url).status_code == 204
        env = addon_env(DATABASE_URL=db)
        listed = subprocess.run([ADDON, "tenants", "list"], env=env, cwd=tmp_path, capture_output=True, text=True,
                                timeout=60)
        assert old.client_key in listed.stdout and imported.client_key in listed.stdout
        result = subprocess.run([ADDON, "tenants", "copy-webhooks", old.client_key, imported.client_key], env=env,
                                cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert "copied 1 webhook(s)" in result.stdout
        from sqlalchemy import func, select

        from addon.storage.models import Webhook
        with server.sessions() as session:
            hooks = session.scalars(select(Webhook).order_by(Webhook.id)).all()
        assert [h.tenant_id for h in hooks] == [tenant_id_of(server, old.client_key),
                                                tenant_id_of(server, imported.client_key)]
        assert hooks[0].secret == hooks[1].secret and hooks[1].url == "https://hooks.example.com/a"
        again = subprocess.run([ADDON, "tenants", "copy-webhooks", old.client_key, imported.client_key], env=env,
                               cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert "copied 0 webhook(s)" in again.stdout
        for n in range(49):  # the new site now has 50: one more from the old one would be 51
            add_webhook(server, tenant_id_of(server, imported.client_key), f"https://hooks.example.com/n{n}")
        add_webhook(server, tenant_id_of(server, old.client_key), "https://hooks.example.com/b", name="B")
        over = subprocess.run([ADDON, "tenants", "copy-webhooks", old.client_key, imported.client_key], env=env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert over.returncode == 1 and "more than 50; nothing was copied" in over.stderr, over.stderr
        with server.sessions() as session:
            assert session.scalar(select(func.count()).select_from(Webhook).where(
                Webhook.tenant_id == tenant_id_of(server, imported.client_key))) == 50
    finally:
        server.stop()


ROOT = Path(__file__).resolve().parent.parent


def _make_run(workdir: Path) -> str:
    """`make run` in a copy of the Makefile whose .venv and ui/ packages are already installed, whose `addon` only
    reports how it was started and whose UI build only says it ran: what `make run` does before serving, quickly."""
    shutil.copy(ROOT / "Makefile", workdir)
    shutil.copy(ROOT / "pyproject.toml", workdir)
    bin_dir = workdir / ".venv" / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    (bin_dir / "python").write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    (bin_dir / "addon").write_text('#!/bin/sh\necho "addon $* PORT=$PORT"\n')
    for tool in ("python", "addon"):
        (bin_dir / tool).chmod(0o755)
    (workdir / ".venv" / ".installed").touch()
    (workdir / "ui" / "scripts").mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copy(ROOT / "ui" / name, workdir / "ui")
    (workdir / "ui" / "node_modules").mkdir(exist_ok=True)
    (workdir / "ui" / "node_modules" / ".installed").touch()
    (workdir / "ui" / "scripts" / "build.mjs").write_text("console.log('built the admin page');\n")
    result = subprocess.run(["make", "--no-print-directory", "run"], cwd=workdir, env=addon_env(), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "addon serve --port 8000 PORT=8000" in result.stdout
    assert "built the admin page" in result.stdout  # the page's bundle is built before serving
    return result.stdout


def test_make_run_adds_a_secret_key_to_an_existing_env_file_and_keeps_it(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("# set up by hand before the first start\nADDON_BASE_URL=https://abc.ngrok.app")
    assert "generated a new ADDON_SECRET_KEY" in _make_run(tmp_path)
    lines = env_file.read_text().splitlines()
    assert lines[:2] == ["# set up by hand before the first start", "ADDON_BASE_URL=https://abc.ngrok.app"]
    assert len(lines) == 3 and lines[2].startswith("ADDON_SECRET_KEY=")
    key = lines[2].split("=", 1)[1]
    Fernet(key.encode())
    settings = load_settings({}, env_file=env_file)
    assert (settings.base_url, settings.secret_key) == ("https://abc.ngrok.app", key)

    first = env_file.read_bytes()
    assert "generated" not in _make_run(tmp_path)  # the next start keeps the key
    assert env_file.read_bytes() == first


def test_make_run_creates_the_env_file_and_never_replaces_a_key(tmp_path):
    _make_run(tmp_path)
    [line] = (tmp_path / ".env").read_text().splitlines()
    Fernet(line.removeprefix("ADDON_SECRET_KEY=").encode())

    own = Fernet.generate_key().decode()
    (tmp_path / ".env").write_text(f"export ADDON_SECRET_KEY='{own}'\n")
    _make_run(tmp_path)
    assert (tmp_path / ".env").read_text() == f"export ADDON_SECRET_KEY='{own}'\n"


def test_serve_removes_its_metrics_directory_when_it_stops(tmp_path):
    """`addon serve` shares its processes' series through a directory of its own (`PROMETHEUS_MULTIPROC_DIR`); it
    is gone once the server stopped, even one that never started (a bad setting)."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    result = subprocess.run([ADDON, "serve"], env=addon_env(OUTGOING_TIMEOUT_S="soon", TMPDIR=str(temp)),
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert list(temp.iterdir()) == []


def test_metrics_token_is_any_bearer_token():
    """The contract sets no length: a short token works (docs advise a long one); one that cannot be sent in an
    `Authorization: Bearer` header stops start-up."""
    assert load_settings({"METRICS_TOKEN": "short"}, env_file=None).metrics_token == "short"
    assert load_settings({"METRICS_TOKEN": "a" * 16}, env_file=None).metrics_token == "a" * 16
    assert load_settings({}, env_file=None).metrics_token is None
    for bad in ("two words", "caf\u00e9", "line\nbreak"):
        with pytest.raises(ConfigError, match="^METRICS_TOKEN "):
            load_settings({"METRICS_TOKEN": bad}, env_file=None)


def test_an_unknown_log_format_stops_with_one_clear_line(tmp_path):
    result = subprocess.run([ADDON, "serve"], env=addon_env(LOG_FORMAT="xml"), cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line == "configuration error: LOG_FORMAT must be text or json, not 'xml'", line
