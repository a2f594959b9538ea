"""`addon demo`: the demo door over the real core, in Chromium end to end; its refusal of a database of real sites;
and `addon serve`, which serves none of it."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import jwt
import pytest
import requests
from sqlalchemy import insert, select

from addon.sending.addresses import UrlRejected, check_url_for_saving
from addon.sending.client import Sender
from addon.storage.engine import make_engine
from addon.storage.migrate import upgrade
from addon.storage.models import Tenant
from addon.storage.secrets import SecretBox
from addon.storage.tenants import find_installed
from tests.support.addon_server import wait_for
from tests.support.browser import ARTIFACTS, CSP_LISTENER, axe_violations, chromium  # noqa: F401 - the fixture
from tests.support.http import free_port
from tests.support.processes import ADDON, AddonProcess, addon_env

DEMO_PATHS = [("GET", "/demo"), ("GET", "/demo/site/state"), ("POST", "/demo/site/token"),
              ("GET", "/demo/site/received"), ("GET", "/demo/static/demo.js")]


def _printed_url(proc: AddonProcess) -> str:
    def url() -> str | None:
        if proc.proc.poll() is not None:
            raise AssertionError(f"addon demo exited with {proc.proc.returncode}: {proc.output()}")
        lines = [line for line in proc.output().splitlines() if line.startswith("Open http://")]
        return lines[0].split(" ", 1)[1] if lines else None

    return wait_for(url, timeout=60, interval=0.1, message="addon demo to print its URL")


def _free_pair() -> int:
    """A free port whose next one is free too (the demo's receiver takes it)."""
    while True:
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


@pytest.fixture
def demo(tmp_path: Path):
    port = free_port()
    proc = AddonProcess(["demo", "--port", str(port), "--database", f"sqlite:///{tmp_path / 'demo.sqlite'}"],
                        addon_env(), tmp_path, tmp_path / "demo.log")
    proc.database = f"sqlite:///{tmp_path / 'demo.sqlite'}"  # type: ignore[attr-defined]
    try:
        yield proc, _printed_url(proc)
    finally:
        code = proc.stop()
        assert code == 0, proc.output()


def test_demo_in_chromium_end_to_end(demo, chromium) -> None:  # noqa: F811 - the fixture
    """Create a webhook on the real admin page, rename a project on the demo site, and see the delivery arrive at
    the local HTTPS receiver with a signature that verifies."""
    proc, url = demo
    context = chromium.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.add_init_script(CSP_LISTENER.replace("window.reportCspViolation(", "console.error('CSP ' + "))
    try:
        page.goto(url)
        assert page.url.endswith("/demo"), "the one-time login leaves the address bar"
        receiver_url = page.get_by_test_id("receiver-url").inner_text()
        assert receiver_url.startswith("https://127.0.0.1:")
        page.get_by_test_id("list-state").wait_for()  # the admin page loaded its (empty) list: signed in, admin

        page.get_by_test_id("create-name").fill("Demo receiver")
        page.get_by_test_id("create-url").fill(receiver_url)
        page.get_by_test_id("create-submit").click()
        page.get_by_text("whsec_").first.wait_for()  # the new secret, shown once
        page.keyboard.press("Escape")
        page.get_by_test_id("webhook-count").filter(has_text="(1)").wait_for()

        page.get_by_test_id("demo-name").fill("Apollo")
        page.get_by_test_id("demo-project-save").click()
        answer = page.get_by_test_id("project-answer")
        answer.wait_for()
        assert answer.get_attribute("data-status") == "204"

        received = page.get_by_test_id("received-item").filter(has_text="Apollo").first
        received.wait_for(timeout=30_000)
        assert received.get_attribute("data-verified") == "yes", received.inner_text()
        body = json.loads(received.get_by_test_id("received-body").text_content() or "")
        assert body["data"]["project"] == {"id": 10000, "key": "DEMO", "name": "Apollo"}
        assert body["data"]["user"] == "demo-admin-ada"
        assert body["data"]["fields"][0]["value"] == {"current": "Apollo", "previous": "Demo project"}
        headers = received.get_by_test_id("received-headers").text_content() or ""
        assert "webhook-signature: v1," in headers and "webhook-id: msg_" in headers

        # A Projectrak field change, through Projectrak's intake with its token.
        page.get_by_test_id("demo-field-type").select_option("multi_user")
        page.get_by_test_id("demo-field-send").click()
        page.get_by_test_id("field-answer").wait_for()
        assert page.get_by_test_id("field-answer").get_attribute("data-status") == "202"
        team = page.get_by_test_id("received-item").filter(has_text="Team").first
        team.wait_for(timeout=30_000)
        assert team.get_attribute("data-verified") == "yes"

        # For the README: the page as it looks once the list has refreshed (the webhook's last run is OK).
        page.reload()
        page.get_by_test_id("webhook-status").filter(has_text="OK").wait_for()
        page.get_by_test_id("received-item").nth(1).wait_for()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "demo.png"))
        assert errors == []
        assert axe_violations(page) == []
        login = url.split("login=", 1)[1]
        assert proc.output().count(login) == 1, "the one-time login is printed once, never logged"
    finally:
        context.close()


def _context_token(database: str, sub: str) -> str:
    """A context token of the demo site for `sub`, signed with its shared secret as stored (no ADDON_SECRET_KEY)."""
    engine = make_engine(database)
    with engine.connect() as connection:
        sealed = connection.scalar(select(Tenant.shared_secret).where(Tenant.door == "demo"))
    engine.dispose()
    now = int(time.time())
    return jwt.encode({"iss": "demo-site", "sub": sub, "qsh": "context-qsh", "iat": now, "exp": now + 60},
                      SecretBox(None).open(sealed), algorithm="HS256")


def test_demo_admin_api_is_the_real_one(demo) -> None:
    """The demo door's tokens go through the admin API's real checks: only the demo site's administrator may use
    it (Jira's permission check, answered by the demo site); no token or a forged one is 401; the demo site's
    endpoints refuse a browser that did not open the printed URL."""
    proc, url = demo
    base = url.split("/demo", 1)[0]
    admin = _context_token(proc.database, "demo-admin-ada")
    assert requests.get(f"{base}/api/webhooks", headers={"Authorization": f"JWT {admin}"}, timeout=10).json() == []
    user = _context_token(proc.database, "demo-user-grace")
    refused = requests.get(f"{base}/api/webhooks", headers={"Authorization": f"JWT {user}"}, timeout=10)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    intake = requests.post(f"{base}/events/projectrak/field-changes", headers={"Authorization": f"JWT {admin}"},
                           json={"project": {"key": "DEMO"}, "changes": []}, timeout=10)
    assert intake.status_code == 401  # a context token is for the admin API only
    assert requests.get(f"{base}/api/webhooks", timeout=10).status_code == 401
    forged = requests.get(f"{base}/api/webhooks", headers={"Authorization": "JWT a.b.c"}, timeout=10)
    assert forged.status_code == 401
    assert requests.post(f"{base}/demo/site/token", timeout=10).status_code == 401
    assert requests.get(f"{base}/demo", timeout=10).status_code == 401
    assert requests.get(f"{base}/demo?login=wrong", timeout=10).status_code == 403


def test_a_webhook_saved_in_one_run_reaches_the_receiver_in_the_next(tmp_path: Path) -> None:
    """The receiver listens on the port after the demo's, so the demo's database can be kept between runs."""
    port = _free_pair()
    args = ["demo", "--port", str(port), "--database", f"sqlite:///{tmp_path / 'demo.sqlite'}"]
    env = addon_env(ADDON_SECRET_KEY="kG0aHf8Oe6Z4b3lOdpd0tt4_CV5dUiX6TmpwAPc2t8Y=")
    base = f"http://127.0.0.1:{port}"
    first = AddonProcess(args, env, tmp_path, tmp_path / "first.log")
    try:
        session = requests.Session()
        session.get(_printed_url(first), timeout=10)
        receiver_url = session.get(f"{base}/demo/site/state", timeout=10).json()["receiverUrl"]
        assert receiver_url == f"https://127.0.0.1:{port + 1}/webhook"
        token = session.post(f"{base}/demo/site/token", timeout=10).json()["token"]
        created = requests.post(f"{base}/api/webhooks", headers={"Authorization": f"JWT {token}"},
                                json={"name": "Kept", "url": receiver_url}, timeout=10)
        assert created.status_code == 201, created.text
    finally:
        assert first.stop() == 0
    second = AddonProcess(args, env, tmp_path, tmp_path / "second.log")
    try:
        session = requests.Session()
        session.get(_printed_url(second), timeout=10)
        changed = session.post(f"{base}/demo/site/projects/10001", json={"category": None}, timeout=10)
        assert changed.json()["addon"]["status"] == 204
        items = wait_for(lambda: session.get(f"{base}/demo/site/received", timeout=10).json()["items"], timeout=30,
                         interval=0.2, message="the delivery")
        assert items[0]["verified"] is True, items[0]["detail"]
        fields = json.loads(items[0]["body"])["data"]["fields"]
        assert fields == [{"id": -7, "name": "Category", "type": "list",
                           "value": {"current": None, "previous": "Marketing"}}]
    finally:
        assert second.stop() == 0


def test_demo_refuses_a_database_with_real_tenants(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'real.sqlite'}"
    engine = make_engine(database)
    upgrade(engine)
    with engine.begin() as connection:
        connection.execute(insert(Tenant).values(door="connect", client_key="real-site", shared_secret="plain:s",
                                                 base_url="https://real.atlassian.net", state="enabled"))
    engine.dispose()
    result = subprocess.run([ADDON, "demo", "--port", "0", "--database", database], env=addon_env(), cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "1 tenant(s) of real Jira sites" in result.stderr
    assert "Open http" not in result.stdout


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    """`addon serve` as an operator runs it (its own SQLite file, no delivery worker)."""
    tmp_path = tmp_path_factory.mktemp("serve")
    port = free_port()
    env = addon_env(DATABASE_URL=f"sqlite:///{tmp_path / 'addon.db'}", PORT=str(port))
    proc = AddonProcess(["serve", "--no-worker"], env, tmp_path, tmp_path / "serve.log")
    base = f"http://127.0.0.1:{port}"
    try:
        proc.wait_healthy(base)
        yield base
    finally:
        proc.stop()


def test_addon_serve_serves_no_demo_route(served: str) -> None:
    for method, path in DEMO_PATHS:
        answer = requests.request(method, served + path, timeout=10)
        assert answer.status_code == 404, (method, path, answer.status_code)


def test_addon_serve_front_page_says_what_it_is(served: str) -> None:
    about = requests.get(served + "/", headers={"Accept": "application/json"}, timeout=10).json()
    assert about["name"] == "Projectrak Outgoing Webhooks" and about["version"]
    port = served.rsplit(":", 1)[1]
    assert about["descriptor_url"] == f"http://localhost:{port}/atlassian-connect.json"  # ADDON_BASE_URL's default
    assert about["forge_manifest_command"] == "addon forge manifest"
    assert about["health_url"] == f"http://localhost:{port}/healthz"
    assert requests.get(f"{served}/healthz", timeout=10).status_code == 200
    page = requests.get(served + "/", headers={"Accept": "text/html"}, timeout=10)
    assert page.headers["Content-Type"].startswith("text/html") and "addon forge manifest" in page.text


def test_only_the_exact_local_target_passes_the_address_policy() -> None:
    """The demo's receiver is let through by its exact (host, port); its other ports and other private addresses
    are refused as ever, and without local targets (as `addon serve` runs) the receiver's address is refused."""
    local = frozenset({("127.0.0.1", 4443)})
    assert check_url_for_saving("https://127.0.0.1:4443/webhook", False, local_targets=local)
    for url in ("https://127.0.0.1:4444/webhook", "https://10.0.0.1:4443/webhook", "https://localhost:4443/x"):
        with pytest.raises(UrlRejected):
            check_url_for_saving(url, False, local_targets=local, resolve=lambda *a, **k: [
                (2, 1, 6, "", ("127.0.0.1", 4443))])
    with pytest.raises(UrlRejected):
        check_url_for_saving("https://127.0.0.1:4443/webhook", False)
    with Sender(timeout_s=2, ca_bundle=None, allow_private=False, user_agent="test") as sender:
        result = sender.send("https://127.0.0.1:4443/webhook", b"{}", {})
    assert not result.ok and "blocked private address 127.0.0.1" in (result.error or "")


def test_a_demo_tenant_is_found_only_through_the_demo_door(empty_database_url: str) -> None:
    """On both databases: the migration admits `door = 'demo'` with a key and a secret, and a key is looked up
    within one door, so a demo tenant never authenticates through Connect (nor a Connect one through the demo)."""
    engine = make_engine(empty_database_url)
    upgrade(engine)
    box = SecretBox(None)
    with engine.begin() as connection:
        connection.execute(insert(Tenant).values(door="demo", client_key="demo-site", shared_secret=box.seal("s1"),
                                                 base_url="https://demo-site.invalid", state="enabled"))
        connection.execute(insert(Tenant).values(door="connect", client_key="real", shared_secret=box.seal("s2"),
                                                 base_url="https://real.atlassian.net", state="enabled"))
    try:
        assert find_installed(engine, "demo-site", box) is None
        demo_tenant = find_installed(engine, "demo-site", box, "demo")
        assert demo_tenant is not None and demo_tenant.door == "demo" and demo_tenant.shared_secret == "s1"
        assert find_installed(engine, "real", box, "demo") is None
        real = find_installed(engine, "real", box)
        assert real is not None and real.door == "connect"
    finally:
        engine.dispose()


def test_the_receiver_can_answer_410_and_the_webhook_is_disabled(demo) -> None:
    """The panel's "The receiver answers" choice: a 410 disables the webhook, as for any receiver."""
    proc, url = demo
    base = url.split("/demo", 1)[0]
    session = requests.Session()
    session.get(url, timeout=10)
    state = session.get(f"{base}/demo/site/state", timeout=10).json()
    assert state["receiverAnswer"] == 200
    admin = {"Authorization": f"JWT {_context_token(proc.database, 'demo-admin-ada')}"}
    created = {"name": "Gone soon", "url": state["receiverUrl"]}
    webhook = requests.post(f"{base}/api/webhooks", headers=admin, json=created, timeout=10).json()
    assert session.put(f"{base}/demo/site/receiver", json={"answer": 418}, timeout=10).status_code == 422
    assert session.put(f"{base}/demo/site/receiver", json={"answer": 410}, timeout=10).status_code == 200
    session.post(f"{base}/demo/site/projects/10003", json={"name": "Research and development"}, timeout=10)
    items = wait_for(lambda: session.get(f"{base}/demo/site/received", timeout=10).json()["items"], timeout=30,
                     interval=0.2, message="the delivery")
    assert items[0]["answered"] == 410 and items[0]["verified"] is True

    def disabled() -> dict | None:
        listed = requests.get(f"{base}/api/webhooks", headers=admin, timeout=10).json()
        found = next(w for w in listed if w["id"] == webhook["id"])
        return found if not found["enabled"] else None

    found = wait_for(disabled, timeout=30, interval=0.2, message="the webhook to be disabled")
    assert found["disabled_reason"] == "gone" and found["last_status_code"] == 410
