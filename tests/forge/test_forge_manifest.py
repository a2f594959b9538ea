"""The Forge app's manifest (CONTRACT.md section 9.2): rendered by `addon forge manifest`, checked by Atlassian's own
validator from npm (@forge/manifest: full validation, validateTriggerScopes for every trigger, event names against
its list), and read back as that validator parsed it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from addon.forge.manifest import EXAMPLE_APP_ID, EXAMPLE_BASE_URL, TEMPLATE, render
from tests.support.forge_ui import REPO, UI, build_forge_page, require_node_tools

APP_ID = "ari:cloud:ecosystem::app/3f9c1c4e-5d6b-4a8e-9f10-2b7c8d9e0a1b"
BASE_URL = "https://example.ngrok-free.app"
PROJECT_EVENTS = [f"avi:jira:{e}:project"
                  for e in ("created", "updated", "deleted", "softdeleted", "restored", "archived", "unarchived")]
LIFECYCLE_EVENTS = ["avi:forge:installed:app", "avi:forge:upgraded:app"]


def addon_command(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The installed `addon` console script, in `cwd`, with only the given Forge and base URL settings."""
    script = Path(sys.executable).with_name("addon")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "addon.cli"]
    environ = {k: v for k, v in os.environ.items() if k not in ("FORGE_APP_ID", "ADDON_BASE_URL", "PORT")}
    return subprocess.run([*command, *args], cwd=cwd, env={**environ, **env}, capture_output=True, text=True,
                          timeout=60)


def validate(manifest: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    node = require_node_tools()
    done = subprocess.run([node, str(UI / "scripts" / "validate-manifest.mjs"), "--json", str(manifest)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    return done, json.loads(done.stdout or "{}")


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory) -> Path:
    """A Forge app directory as `addon forge manifest --write` and `make ui` leave it: forge/manifest.yml beside
    the Custom UI build in forge/static/admin."""
    work = tmp_path_factory.mktemp("forge-app")
    written = addon_command("forge", "manifest", "--write", cwd=work, FORGE_APP_ID=APP_ID, ADDON_BASE_URL=BASE_URL)
    assert written.returncode == 0, written.stderr
    build_forge_page(work / "forge" / "static" / "admin")
    return work / "forge"


@pytest.fixture(scope="module")
def checked(app_dir) -> dict[str, Any]:
    done, report = validate(app_dir / "manifest.yml")
    assert done.returncode == 0 and report.get("valid"), f"the validator refused the manifest:\n{done.stderr}"
    return report


def test_the_rendered_manifest_passes_atlassians_validator(checked):
    assert checked["errors"] == []
    assert checked["warnings"] == []


def test_printed_and_written_manifests_are_the_same(app_dir, tmp_path):
    printed = addon_command("forge", "manifest", cwd=tmp_path, FORGE_APP_ID=APP_ID, ADDON_BASE_URL=BASE_URL + "/")
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == (app_dir / "manifest.yml").read_text()  # a trailing / of ADDON_BASE_URL is ignored
    assert not (tmp_path / "forge").exists()


def test_app_id_and_remote(checked):
    manifest = checked["manifest"]
    assert manifest["app"]["id"] == APP_ID
    assert manifest["app"]["runtime"]["name"].startswith("nodejs")
    [remote] = manifest["remotes"]
    assert remote["key"] == "addon"
    assert remote["baseUrl"] == BASE_URL
    assert "compute" in remote["operations"]  # needed for invokeRemote


def _endpoints(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {endpoint["key"]: endpoint for endpoint in manifest["modules"]["endpoint"]}


def test_every_endpoint_is_on_the_remote_with_the_app_system_token(checked):
    endpoints = _endpoints(checked["manifest"])
    for endpoint in endpoints.values():
        assert endpoint["remote"] == "addon"
        assert endpoint["auth"]["appSystemToken"]["enabled"] is True
    routes = {endpoint.get("route", {}).get("path") for endpoint in endpoints.values()}
    assert {"/forge/lifecycle", "/forge/events/jira"} <= routes


def test_triggers_send_the_nine_events_to_their_endpoints(checked):
    manifest = checked["manifest"]
    endpoints = _endpoints(manifest)
    routed: dict[str, str] = {}
    for trigger in manifest["modules"]["trigger"]:
        for event in trigger["events"]:
            assert event not in routed, f"{event} is declared twice"
            routed[event] = endpoints[trigger["endpoint"]]["route"]["path"]
    assert routed == {**{e: "/forge/lifecycle" for e in LIFECYCLE_EVENTS},
                      **{e: "/forge/events/jira" for e in PROJECT_EVENTS}}


def test_the_admin_page_is_custom_ui_calling_the_remote(checked, app_dir):
    manifest = checked["manifest"]
    [page] = manifest["modules"]["jira:adminPage"]
    assert page["key"] == "projectrak-administration"
    assert page["title"] == "Projectrak Administration"
    assert page["pages"] == [{"title": "Outgoing webhooks", "route": "outgoing-webhooks"}]
    resolver = _endpoints(manifest)[page["resolver"]["endpoint"]]
    assert resolver["remote"] == "addon" and resolver["auth"]["appSystemToken"]["enabled"] is True
    assert "route" not in resolver  # invokeRemote's own path (/api/...) goes to the remote's baseUrl
    [resource] = [r for r in manifest["resources"] if r["key"] == page["resource"]]
    index = app_dir / resource["path"] / "index.html"
    assert '<div id="root"></div>' in index.read_text()  # the Connect page's markup, where the bundle renders
    assert (app_dir / resource["path"] / "admin.js").is_file()


def test_scopes(checked):
    scopes = set(checked["manifest"]["permissions"]["scopes"])
    assert {"read:jira-work", "read:jira-user", "read:app-system-token"} <= scopes


@pytest.mark.parametrize(("change", "complaint"), [
    (("avi:jira:archived:project", "avi:jira:archivd:project"),
     '"avi:jira:archivd:project" is not an event Forge knows'),
    (("    - read:jira-work\n", ""), "avi:jira:updated:project needs the scopes read:jira-work"),
    (("endpoint: jira-events-endpoint", "endpoint: jira-events"), "undefined endpoint module with key 'jira-events'"),
    (("path: static/admin", "path: static/missing"), "static/missing"),
])
def test_the_validator_refuses_a_broken_manifest(app_dir, tmp_path, change, complaint):
    shutil.copytree(app_dir / "static", tmp_path / "static")
    text = (app_dir / "manifest.yml").read_text()
    assert change[0] in text
    (tmp_path / "manifest.yml").write_text(text.replace(change[0], change[1]))
    done, report = validate(tmp_path / "manifest.yml")
    assert done.returncode == 1
    assert report["valid"] is False
    assert any(complaint in error for error in report["errors"]), report["errors"]


def test_no_app_id_is_one_clear_line(tmp_path):
    done = addon_command("forge", "manifest", cwd=tmp_path, ADDON_BASE_URL=BASE_URL)
    assert done.returncode == 2
    assert done.stdout == ""
    [line] = done.stderr.strip().splitlines()
    assert "FORGE_APP_ID is not set" in line


@pytest.mark.parametrize(("env", "named"), [
    ({"FORGE_APP_ID": "my-app", "ADDON_BASE_URL": BASE_URL},
     "FORGE_APP_ID must look like ari:cloud:ecosystem::app/<uuid>"),
    ({"FORGE_APP_ID": APP_ID, "ADDON_BASE_URL": "http://localhost:8000"}, "ADDON_BASE_URL must be the public https://"),
    ({"FORGE_APP_ID": APP_ID}, "ADDON_BASE_URL must be the public https://"),  # the default is http://localhost
])
def test_bad_settings_are_one_clear_line(tmp_path, env, named):
    done = addon_command("forge", "manifest", "--write", cwd=tmp_path, **env)
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert named in line
    assert not (tmp_path / "forge").exists()


def test_the_app_id_may_come_from_dot_env(tmp_path):
    (tmp_path / ".env").write_text(f"FORGE_APP_ID={APP_ID}\nADDON_BASE_URL={BASE_URL}\n")
    done = addon_command("forge", "manifest", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f'id: "{APP_ID}"' in done.stdout


def test_the_repositorys_example_is_the_template_rendered():
    assert TEMPLATE.is_file()
    assert (REPO / "forge" / "manifest.yml").read_text() == render(EXAMPLE_APP_ID, EXAMPLE_BASE_URL)
