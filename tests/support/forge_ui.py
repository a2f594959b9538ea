"""The Forge side of the admin page in tests: Node tools from ui/ (Atlassian's manifest validator, the Custom UI
build) and a stand-in for the Forge host that a Custom UI page talks to.

The page under test is the real build: the admin page's one bundle (React, Atlassian's design system) with the
real @forge/bridge. What is
faked is what Forge provides around it: the host frame's `window.__bridge.callBridge`, through which @forge/bridge's
`invokeRemote` asks Forge to call the remote, and Forge's proxy, which makes that call over HTTP from the test
process (as Forge's servers do, not the browser) with the headers a test-injected function mints (a Connect context
token today; Forge Invocation Tokens with the system token where the add-on takes them).
"""

from __future__ import annotations

import json
import mimetypes
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.browser import CSP_LISTENER

REPO = Path(__file__).resolve().parents[2]
UI = REPO / "ui"
NODE_MISSING = "npm dependencies of ui/ are missing: run `make ui` (npm ci --prefix ui), which `make test` does"
# Where the test serves the built page from: an origin of its own, as Forge serves Custom UI from its CDN.
FORGE_PAGE_ORIGIN = "https://admin-page.forge-cdn.test"
# Custom UI runs under a CSP that allows no inline script or style and no outside origin unless the manifest's
# permissions name it; this one is as strict, with the inline styles the manifest's `permissions.content.styles`
# allows (Atlassian's design system inserts its rules at run time), so a page that needs more fails here first.
FORGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
             "connect-src 'self'; object-src 'none'; base-uri 'none'")
UI_TIMEOUT_S = 25  # Forge's timeout for a UI call to a remote

# The host side of @forge/bridge: `callBridge('invoke', {invokeType: 'ui-remote-fetch', path, method, headers,
# body})` resolves to `{success, payload | error}`, whose payload is the remote's `{status, headers, body}`.
# The call itself goes to the test's `forgeRemoteCall` binding (page.expose_function). `callBridge('showFlag',
# options)` records the flag Jira would show (`window.__forgeFlags`).
BRIDGE_STAND_IN = """
(function () {
  'use strict';
  window.__forgeBridgeCalls = [];
  window.__forgeFlags = [];
  window.__bridge = {
    callBridge: function (name, payload) {
      window.__forgeBridgeCalls.push(name + ':' + (payload && payload.invokeType));
      if (name === 'showFlag') {
        window.__forgeFlags.push({title: payload.title, description: payload.description, type: payload.type});
        return Promise.resolve();
      }
      if (name !== 'invoke' || !payload || payload.invokeType !== 'ui-remote-fetch') {
        return Promise.reject(new Error('the Forge stand-in does not do ' + name));
      }
      var request = {path: payload.path, method: payload.method, headers: payload.headers || {}, body: payload.body};
      return window.forgeRemoteCall(JSON.stringify(request)).then(function (answer) { return JSON.parse(answer); });
    }
  };
})();
"""


def require_node_tools() -> str:
    """The `node` executable, once ui/'s npm packages are installed; fails the test with what to run if not."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: the Forge manifest check and the Custom UI build need Node 20+ and npm")
    for package in ("@forge/manifest", "@forge/bridge", "esbuild", "react", "@atlaskit/dynamic-table"):
        if not (UI / "node_modules" / package / "package.json").is_file():
            pytest.fail(f"{NODE_MISSING} ({package} is not there)")
    return node


def build_forge_page(out_dir: Path, connect_out: Path | None = None) -> Path:
    """Build the Custom UI from the working tree into out_dir (so no stale build is ever tested), and the Connect
    copy of the bundle into `connect_out`: beside it unless told, never into the package other tests serve."""
    node = require_node_tools()
    connect_out = connect_out or out_dir.parent / "connect"
    command = [node, str(UI / "scripts" / "build.mjs"), str(out_dir), "--connect-out", str(connect_out)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"the Custom UI build failed:\n{done.stdout}\n{done.stderr}"
    return out_dir


@dataclass
class ForgeAdminPage:
    """A browser tab on the built Custom UI page, with the Forge host played by the test. `remote_headers` mints
    the headers Forge's proxy adds to each call (authorization, x-forge-oauth-system...)."""

    page: Any
    build_dir: Path
    remote_url: str
    remote_headers: Callable[[], dict[str, str]]
    calls: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)

    def install(self) -> ForgeAdminPage:
        page = self.page
        page.expose_function("forgeRemoteCall", self._remote_call)
        page.expose_function("reportCspViolation", self._on_csp_violation)
        page.add_init_script(CSP_LISTENER)
        page.add_init_script(BRIDGE_STAND_IN)
        page.route(f"{FORGE_PAGE_ORIGIN}/**", self._serve_build)
        page.on("console", lambda m: m.type in ("error", "assert") and self.console_errors.append(m.text))
        page.on("pageerror", lambda exc: self.page_errors.append(str(exc)))
        return self

    def _on_csp_violation(self, report: str) -> None:
        self.csp_violations.append(report)

    def open(self) -> None:
        response = self.page.goto(f"{FORGE_PAGE_ORIGIN}/index.html")
        assert response is not None and response.status == 200

    def _serve_build(self, route) -> None:  # type: ignore[no-untyped-def]
        name = route.request.url[len(FORGE_PAGE_ORIGIN):].split("?", 1)[0].lstrip("/") or "index.html"
        file = (self.build_dir / name).resolve()
        if self.build_dir.resolve() not in file.parents or not file.is_file():
            route.fulfill(status=404, content_type="text/plain", body="not in the build")
            return
        content_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        route.fulfill(status=200, body=file.read_bytes(), headers={
            "Content-Type": content_type, "Content-Security-Policy": FORGE_CSP})

    def _remote_call(self, raw: str) -> str:
        """Forge's proxy: the remote's baseUrl + path, JSON body, minted headers; redirects are errors."""
        request = json.loads(raw)
        self.calls.append(f"{request['method']} {request['path']}")
        headers = {k: v for k, v in request["headers"].items() if k.lower() not in ("authorization",)}
        headers.update(self.remote_headers())
        body = request.get("body")
        try:
            answer = requests.request(request["method"], self.remote_url + request["path"], headers=headers,
                                      data=None if body is None else json.dumps(body),
                                      timeout=UI_TIMEOUT_S, allow_redirects=False)
        except requests.RequestException as err:
            return json.dumps({"success": False, "error": {"message": f"the remote could not be reached: {err}"}})
        try:
            parsed = answer.json() if answer.content else None
        except ValueError:
            parsed = None
        payload = {"status": answer.status_code, "headers": {k.lower(): [v] for k, v in answer.headers.items()},
                   "body": parsed}
        return json.dumps({"success": True, "payload": payload})

    def flags(self) -> list[dict]:
        """The flags the page asked Forge to show (showFlag of @forge/bridge), oldest first."""
        return self.page.evaluate("window.__forgeFlags")

    def problems(self) -> dict[str, list[str]]:
        return {name: items for name, items in [("page errors", self.page_errors),
                                                 ("console errors", self.console_errors),
                                                 ("CSP violations", self.csp_violations)] if items}
