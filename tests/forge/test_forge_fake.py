"""The fake Forge's invoker calls a remote as Forge does: the FIT, the system token, timeouts and retries."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field

import pytest
import requests

from addon.forge.fit import FitVerifier
from tests.support.forge import FakeForge, FakeInstallation
from tests.support.http import BackgroundServer, QuietHandler


@dataclass
class Remote:
    """A stand-in remote that answers the scripted statuses in turn (None: too slow), then 204."""

    script: list[int | None] = field(default_factory=list)
    delay_s: float = 1.0
    requests: list[tuple[str, dict[str, str], dict]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def serve(self) -> BackgroundServer:
        remote = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.read_body())
                with remote.lock:
                    remote.requests.append((self.path, dict(self.headers), body))
                    status = remote.script.pop(0) if remote.script else 204
                if status is None:
                    time.sleep(remote.delay_s)
                    status = 204
                self.send_bytes(status, b"" if status == 204 else b'{"error": {"code": "x", "message": "x"}}')

        return BackgroundServer(Handler).start()


@pytest.fixture
def inst(forge: FakeForge) -> FakeInstallation:
    return forge.install()


def test_an_event_is_retried_up_to_four_times_with_fresh_tokens_and_retry_context(forge: FakeForge,
                                                                                  inst: FakeInstallation) -> None:
    remote = Remote(script=[500, None, 503])
    server = remote.serve()
    try:
        url = f"http://127.0.0.1:{server.port}/forge/events/jira"
        body = inst.project_event_body("avi:jira:updated:project", inst.site.add_project(1, "A", "Alpha")["id"])
        invocation = inst.invoke(url, body, wrapped=True, timeout_s=0.3)
    finally:
        server.stop()
    assert [a.status for a in invocation.attempts] == [500, None, 503, 204]
    assert invocation.succeeded
    verifier = FitVerifier(forge.app_id, forge.jwks_url, ("127.0.0.1",))
    fits, system_tokens = set(), set()
    for count, (path, headers, sent) in enumerate(remote.requests):
        assert path == "/forge/events/jira"
        fit = headers["Authorization"].removeprefix("Bearer ")
        assert verifier.verify(fit).installation_id == inst.installation_id
        fits.add(fit)
        system_tokens.add(headers["x-forge-oauth-system"])
        payload = sent["payload"]
        assert payload["eventType"] == "avi:jira:updated:project" and payload["project"]["key"] == "A"
        assert payload.get("retryContext", {}).get("retryCount") == (count or None)
    assert len(fits) == 4 and len(system_tokens) == 1
    assert remote.requests[2][2]["payload"]["retryContext"]["retryReason"] == "TIMEOUT"
    # The system token the remote got is the one the installation's Jira accepts.
    answer = requests.get(f"{inst.api_base_url}/rest/api/3/project/1",
                          headers={"Authorization": f"Bearer {system_tokens.pop()}"}, timeout=10)
    assert answer.status_code == 200 and answer.json()["name"] == "Alpha"


def test_an_event_gives_up_after_four_retries(inst: FakeInstallation) -> None:
    remote = Remote(script=[500] * 10)
    server = remote.serve()
    try:
        invocation = inst.invoke(f"http://127.0.0.1:{server.port}/forge/lifecycle", inst.lifecycle_body())
    finally:
        server.stop()
    assert [a.status for a in invocation.attempts] == [500] * 5 and not invocation.succeeded
    assert all(sent["eventType"] == "avi:forge:installed:app" for _, _, sent in remote.requests)
    assert [sent.get("retryContext", {}).get("retryCount") for _, _, sent in remote.requests] == [None, 1, 2, 3, 4]


def test_invoke_remote_sends_the_user_and_does_not_retry(forge: FakeForge, inst: FakeInstallation) -> None:
    remote = Remote(script=[500])
    server = remote.serve()
    try:
        answer = inst.invoke_remote(f"http://127.0.0.1:{server.port}", "/admin/api/webhooks", method="POST",
                                    body={"url": "https://x"}, principal="admin-1")
    finally:
        server.stop()
    assert answer.status_code == 500 and len(remote.requests) == 1
    path, headers, sent = remote.requests[0]
    verified = FitVerifier(forge.app_id, forge.jwks_url, ("127.0.0.1",)).verify(
        headers["Authorization"].removeprefix("Bearer "))
    assert (path, sent, verified.principal, verified.module_type) == (
        "/admin/api/webhooks", {"url": "https://x"}, "admin-1", "jira:adminPage")
