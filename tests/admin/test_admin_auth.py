"""Who may use the admin REST API and where the admin page may be framed: Jira's permission check (answers kept
at most 60 s, "cannot tell" never taken as "not an administrator") and `frame-ancestors` (the tenant's site).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest

from addon.admin import permissions as auth
from addon.admin.permissions import ADMIN_CACHE_TTL_S, AdminCache
from tests.support.admin import AdminClient
from tests.support.http import BackgroundServer, QuietHandler, free_port


class ScriptedJira:
    """A Jira site whose permission check answers what the test says: each queued (status, body, headers) once,
    then `default`."""

    def __init__(self, port: int = 0) -> None:
        self.queue: list[tuple[int, dict, dict[str, str]]] = []
        self.default: tuple[int, dict, dict[str, str]] = (200, {"globalPermissions": ["ADMINISTER"]}, {})
        self.checks: list[dict] = []
        self._lock = threading.Lock()
        jira = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.read_body() or b"null")
                with jira._lock:
                    jira.checks.append(body)
                    status, answer, headers = jira.queue.pop(0) if jira.queue else jira.default
                self.send_bytes(status, json.dumps(answer).encode(), headers=headers)

        self._server = BackgroundServer(Handler, port=port).start()
        self.base_url = f"http://127.0.0.1:{self._server.port}/jira"

    def stop(self) -> None:
        self._server.stop()


@pytest.fixture
def scripted_jira() -> Iterator[ScriptedJira]:
    jira = ScriptedJira()
    yield jira
    jira.stop()


def installed_at(addon, atlassian, base_url: str, **body_changes):  # type: ignore[no-untyped-def]
    """A site installed with `base_url` as its Jira (the install is signed by the fake Atlassian)."""
    site = atlassian.new_site()
    body = site.lifecycle_body() | {"baseUrl": base_url, "displayUrl": base_url} | body_changes
    response = site.install(addon.url, body=body)
    assert response.status_code == 204, response.text
    return site


def assert_jira_unavailable(response) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "jira_unavailable"
    assert int(response.headers["Retry-After"]) > 0


def test_a_rate_limited_permission_check_is_503_and_not_remembered(addon, atlassian, scripted_jira):
    site = installed_at(addon, atlassian, scripted_jira.base_url)
    scripted_jira.queue.append((429, {"errorMessages": ["Rate limit exceeded"]}, {"Retry-After": "10"}))
    admin = AdminClient(addon.url, site, account_id="rate-limited-admin")
    assert_jira_unavailable(admin.request("GET", "/api/webhooks"))
    # Jira is asked again at once, and the administrator gets in
    response = admin.request("GET", "/api/webhooks")
    assert response.status_code == 200, response.text
    assert [c["accountId"] for c in scripted_jira.checks] == ["rate-limited-admin"] * 2


def test_a_refused_permission_check_is_403_and_not_remembered(addon, atlassian, scripted_jira):
    """Jira answered, but not ADMINISTER (here: it refused the app's token): 403, and the next request asks again."""
    site = installed_at(addon, atlassian, scripted_jira.base_url)
    scripted_jira.queue.append((401, {"errorMessages": ["Unauthorized"]}, {}))
    admin = AdminClient(addon.url, site, account_id="admin-while-jira-refuses")
    response = admin.request("GET", "/api/webhooks")
    assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden", response.text
    assert "HTTP 401" in response.json()["error"]["message"]
    assert admin.request("GET", "/api/webhooks").status_code == 200
    assert len(scripted_jira.checks) == 2


def test_an_unreachable_jira_gives_503_until_it_answers(addon, atlassian):
    port = free_port()  # nothing listens there yet
    site = installed_at(addon, atlassian, f"http://127.0.0.1:{port}/jira")
    admin = AdminClient(addon.url, site, account_id="admin-of-an-unreachable-site")
    for _ in range(2):
        assert_jira_unavailable(admin.request("GET", "/api/webhooks"))
    jira = ScriptedJira(port=port)
    try:
        assert admin.request("GET", "/api/webhooks").status_code == 200
        assert len(jira.checks) == 1
    finally:
        jira.stop()


@pytest.fixture
def clock(monkeypatch) -> Iterator[list[float]]:
    """The admin cache's clock, moved by hand: `clock[0]` is now, in seconds."""
    now = [1000.0]
    monkeypatch.setattr(auth, "_admin_cache", AdminCache(clock=lambda: now[0]))
    yield now


def test_an_admin_answer_is_kept_60_s_and_no_longer(addon, site, clock):
    assert ADMIN_CACHE_TTL_S == 60
    admin = AdminClient(addon.url, site, account_id="admin-for-a-minute")
    site.admins.add("admin-for-a-minute")

    def checks() -> int:
        return sum(1 for c in site.calls_to("POST", "/rest/api/3/permissions/check")
                   if c.body["accountId"] == "admin-for-a-minute")

    assert admin.request("GET", "/api/webhooks").status_code == 200
    site.admins.discard("admin-for-a-minute")  # revoked in Jira
    clock[0] += 59.9
    assert admin.request("GET", "/api/webhooks").status_code == 200  # still the answer Jira gave
    assert checks() == 1
    clock[0] += 0.1  # 60 s after Jira's answer
    response = admin.request("GET", "/api/webhooks")
    assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"
    assert checks() == 2
    site.admins.add("admin-for-a-minute")  # granted again: "not an administrator" is kept 60 s too
    clock[0] += 59.9
    assert admin.request("GET", "/api/webhooks").status_code == 403
    clock[0] += 0.1
    assert admin.request("GET", "/api/webhooks").status_code == 200
    assert checks() == 3


def frame_ancestors(response) -> list[str]:  # type: ignore[no-untyped-def]
    directives = [d.strip() for d in response.headers["Content-Security-Policy"].split(";")]
    found = [d.split()[1:] for d in directives if d.startswith("frame-ancestors ")]
    assert len(found) == 1, directives
    return found[0]


def page(addon, site):  # type: ignore[no-untyped-def]
    response = site.call(addon.url, "GET", "/admin/webhooks?lic=none&cp=", in_query=True)
    assert response.status_code == 200, response.text
    return response


def test_the_page_may_be_framed_by_the_sites_base_url_and_its_custom_domain(addon, atlassian):
    site = installed_at(addon, atlassian, atlassian.url + "/custom-domain-site",
                        displayUrl="https://Jira.Example.COM:8443/some/path/")
    assert frame_ancestors(page(addon, site)) == [atlassian.url, "https://jira.example.com:8443"]


def test_without_a_custom_domain_only_the_base_url_may_frame_the_page(addon, atlassian):
    site = installed_at(addon, atlassian, atlassian.url + "/plain-site")
    assert frame_ancestors(page(addon, site)) == [atlassian.url]
    other = installed_at(addon, atlassian, atlassian.url + "/no-display-url", displayUrl=None)
    assert frame_ancestors(page(addon, other)) == [atlassian.url]


@pytest.mark.parametrize("display_url", ["https://jira.example.com; script-src *", "javascript:alert(1)",
                                         "https://jira.example.com 'unsafe-inline'", "not a url"])
def test_a_display_url_that_is_not_a_site_adds_nothing_to_the_policy(addon, atlassian, display_url):
    site = installed_at(addon, atlassian, atlassian.url + "/odd-display-url", displayUrl=display_url)
    response = page(addon, site)
    assert frame_ancestors(response) == [atlassian.url]
    assert "script-src 'self' https://connect-cdn.atl-paas.net;" in response.headers["Content-Security-Policy"]
