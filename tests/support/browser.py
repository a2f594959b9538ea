"""Driving the admin page in headless Chromium (Debian's /usr/bin/chromium) through Python Playwright, the way
Jira shows it: loaded with a qsh-bound `jwt` in the query, with a stand-in for Atlassian's `all.js` whose
`AP.context.getToken()` hands out real context tokens signed by the test's FakeSite.

Nothing here downloads a browser: when /usr/bin/chromium is missing the tests are skipped with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.support.atlassian import FakeSite

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CONNECT_CDN = "https://connect-cdn.atl-paas.net"
ADMIN_PAGE_PATH = "/admin/webhooks"
REPO = Path(__file__).resolve().parents[2]
# Screenshots go to test-artifacts/, or where ADMIN_PAGE_SCREENSHOTS says (docs/screenshots for the README's).
ARTIFACTS = REPO / os.environ.get("ADMIN_PAGE_SCREENSHOTS", "test-artifacts")
AXE_JS = REPO / "ui" / "node_modules" / "axe-core" / "axe.min.js"
STATIC_DIR = REPO / "addon" / "admin" / "static"  # where `make ui` puts the page's bundle

# The stand-in for https://connect-cdn.atl-paas.net/all.js. Like the real one, `AP.context.getToken(callback)`
# calls back with a fresh context token (and returns a promise when no callback is given); `AP.resize()` only
# counts its calls; `AP.flag.create(options)` records the flag Jira would show (`window.__apFlags`). Tokens come
# from the test through the `mintContextToken` binding (page.expose_function).
ALL_JS_STAND_IN = """
(function () {
  'use strict';
  window.__apResizeCalls = 0;
  window.__apFlags = [];
  window.AP = {
    flag: {
      create: function (options) {
        window.__apFlags.push({title: options.title, body: options.body, type: options.type});
        return {close: function () {}};
      }
    },
    context: {
      getToken: function (callback) {
        var token = window.mintContextToken();
        if (typeof callback === 'function') { token.then(callback); return undefined; }
        return token;
      }
    },
    resize: function () { window.__apResizeCalls += 1; }
  };
})();
"""

# Installed before any page script: records Content-Security-Policy violations (which Chromium reports to the
# console through a channel Playwright's "console" event does not always carry).
CSP_LISTENER = """
document.addEventListener('securitypolicyviolation', function (e) {
  window.reportCspViolation([e.violatedDirective, e.blockedURI, e.sourceFile + ':' + e.lineNumber].join(' '));
}, true);
"""


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    """One headless Chromium for the test module (and the page's bundle, which `make ui` builds, in place)."""
    if not (STATIC_DIR / "admin.js").is_file():
        pytest.fail(f"the admin page's bundle is not in {STATIC_DIR}: run `make ui`, which `make test` does")
    if not os.path.exists(CHROMIUM):
        print(f"{CHROMIUM} is missing: admin page browser tests skipped (.ci/run installs Debian's chromium)")
        pytest.skip(f"{CHROMIUM} is missing (Debian's chromium package; .ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def admin_page_url(addon_url: str, site: FakeSite, account_id: str = "admin-account") -> str:
    """The iframe URL Jira builds for the admin page, with a qsh-bound token for exactly this path and query."""
    query = urlencode({"xdm_e": site.base_url, "xdm_c": "channel-outgoing-webhooks", "cp": "", "lic": "none",
                       "cv": "1001.0.0"})
    token = site.token("GET", ADMIN_PAGE_PATH, query, sub=account_id)
    return f"{addon_url}{ADMIN_PAGE_PATH}?{query}&jwt={token}"


@dataclass
class AdminPage:
    """A browser tab on the admin page, recording what an administrator would not want to see: JavaScript
    errors, console errors, CSP violations and failed API calls."""

    page: object
    addon_url: str
    site: FakeSite
    account_id: str = "admin-account"
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)
    api_failures: list[str] = field(default_factory=list)
    tokens_minted: int = 0

    def install(self) -> AdminPage:
        page = self.page
        page.expose_function("mintContextToken", self._mint)
        page.expose_function("reportCspViolation", self._on_csp_violation)
        page.add_init_script(CSP_LISTENER)
        page.route(f"{CONNECT_CDN}/**", self._serve_cdn)
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self.page_errors.append(str(exc)))
        page.on("response", self._on_response)
        page.on("requestfailed", self._on_request_failed)
        return self

    def _on_csp_violation(self, report: str) -> None:
        self.csp_violations.append(report)

    def _mint(self) -> str:
        self.tokens_minted += 1
        return self.site.context_token(sub=self.account_id)

    @staticmethod
    def _serve_cdn(route) -> None:  # type: ignore[no-untyped-def]
        if route.request.url.split("?", 1)[0] == f"{CONNECT_CDN}/all.js":
            route.fulfill(status=200, content_type="application/javascript; charset=utf-8", body=ALL_JS_STAND_IN)
        else:
            route.fulfill(status=404, content_type="text/plain", body="not served by the test")

    def _on_console(self, message) -> None:  # type: ignore[no-untyped-def]
        if message.type in ("error", "assert"):
            self.console_errors.append(message.text)
        if "Content Security Policy" in message.text:
            self.csp_violations.append(message.text)

    def _on_response(self, response) -> None:  # type: ignore[no-untyped-def]
        if response.url.startswith(self.addon_url) and response.status >= 400:
            path = response.url[len(self.addon_url):].split("?", 1)[0]
            self.api_failures.append(f"{response.request.method} {path} -> {response.status}")

    def _on_request_failed(self, request) -> None:  # type: ignore[no-untyped-def]
        if request.failure != "net::ERR_ABORTED":  # a fetch cut short by reloading the page is no failure
            self.api_failures.append(f"{request.method} {request.url}: {request.failure}")

    def open(self) -> object:
        """Load the page as Jira does, with a fresh page-load token each time."""
        response = self.page.goto(admin_page_url(self.addon_url, self.site, self.account_id))
        assert response is not None and response.status == 200, response and response.status
        return response

    def screenshot(self, name: str) -> Path:
        return screenshot(self.page, name)

    def flags(self) -> list[dict]:
        """The flags the page asked Jira to show (AP.flag.create), oldest first."""
        return self.page.evaluate("window.__apFlags")

    def forget_problems(self) -> None:
        for found in (self.console_errors, self.page_errors, self.csp_violations, self.api_failures):
            found.clear()

    def problems(self, *, expected_api_failures: tuple[str, ...] = ()) -> dict[str, list[str]]:
        """Everything that went wrong in the browser, except the API failures the test provoked on purpose
        (each given as the end of its record, e.g. `"POST /api/webhooks -> 400"`) and the console lines Chromium
        writes for them."""
        api = [f for f in self.api_failures if not any(f.endswith(e) for e in expected_api_failures)]
        codes = {e.rsplit(" ", 1)[-1] for e in expected_api_failures}
        console = [m for m in self.console_errors
                   if not (m.startswith("Failed to load resource") and any(f"status of {c}" in m for c in codes))]
        return {name: items for name, items in [("page errors", self.page_errors), ("console errors", console),
                                                 ("CSP violations", self.csp_violations), ("API failures", api)]
                if items}


def screenshot(page, name: str) -> Path:  # type: ignore[no-untyped-def]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def axe_violations(page, impacts: tuple[str, ...] = ("serious", "critical")) -> list[str]:  # type: ignore[no-untyped-def]
    """axe-core (ui/'s npm package) run on the page as it is now: its violations of the given impacts, one line
    each (rule, impact, the elements). Evaluated through the DevTools protocol, so the page's CSP stays as served."""
    if not AXE_JS.is_file():
        pytest.fail("axe-core is missing: run `make ui` (npm ci --prefix ui), which `make test` does")
    if not page.evaluate("typeof window.axe === 'object'"):
        page.evaluate(AXE_JS.read_text(encoding="utf-8") + "\n;undefined")
    found = page.evaluate("""async (impacts) => {
        // what is still fading in (a dialog, a flag) is judged once it is there
        await Promise.all(document.getAnimations().map((a) => a.finished.catch(() => null)));
        const result = await window.axe.run(document, {resultTypes: ['violations']});
        return result.violations.filter((v) => impacts.includes(v.impact)).map((v) =>
            `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
    }""", list(impacts))
    return found
