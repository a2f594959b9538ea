"""A fake Forge platform over real HTTP on 127.0.0.1, beside the fake Atlassian of `tests.support.atlassian`.

- the JWKS server of Forge Invocation Tokens (FITs): keys can be added, rotated (old kid removed, new kid added) and
  its fetches are counted;
- FIT minting with the claims Atlassian documents (`app{id, installationId, apiBaseUrl, environment, module,
  installation}`, `context{cloudId, siteUrl, …}`, `principal`, `iss`, `aud`, `iat`, `nbf`, `exp`, `jti`);
- an invoker that calls the remote as Forge does: `POST`, `Authorization: Bearer <FIT>`, the app system token in
  `x-forge-oauth-system`, a 5 s timeout and up to 4 retries, each with a fresh FIT and `retryContext` in the body;
  and `invoke_remote`, the admin page's `invokeRemote` (25 s, no retries, a FIT with `principal`);
- Jira's REST API for Forge installations at a loopback `apiBaseUrl` (`{url}/ex/jira/<cloudId>`), which accepts only
  `Authorization: Bearer <a system token it issued for that installation>` and answers from the same `FakeSite`
  data (projects, admins, time tracking, outages) as the Connect side.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.support.atlassian import FakeAtlassian, FakeSite, JiraCall, new_rsa_key
from tests.support.http import BackgroundServer, QuietHandler

ISSUER = "forge/invocation-token"
EVENT_TIMEOUT_S = 5.0
EVENT_RETRIES = 4
UI_TIMEOUT_S = 25.0
FIT_LIFETIME_S = 25
PRIVACY_REPORT_PATH = "/app/report-accounts/"
DROP = object()  # a value for `FakeInstallation.fit(changes=…)` that removes the claim


def new_app_id() -> str:
    return f"ari:cloud:ecosystem::app/{uuid.uuid4()}"


@dataclass
class Attempt:
    status: int | None  # None: no answer within the timeout (or the connection failed)
    elapsed_s: float
    body: Any
    response: requests.Response | None


@dataclass
class Invocation:
    """What one Forge invocation did: the first attempt and every retry."""

    attempts: list[Attempt]

    @property
    def status(self) -> int | None:
        return self.attempts[-1].status

    @property
    def succeeded(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass
class FakeInstallation:
    """One installation of the Forge app on one Jira site; its Jira data is a `FakeSite`'s."""

    forge: FakeForge
    site: FakeSite
    app_id: str
    installation_id: str
    cloud_id: str
    environment_id: str
    environment_type: str = "DEVELOPMENT"
    app_version: str = "1.0.0"
    # System tokens Jira accepts for this installation (the newest last); `expire_system_tokens` empties it.
    system_tokens: list[str] = field(default_factory=list)
    # When set, every REST call is refused with this status (401/403 as Jira answers an uninstalled app).
    refusal: int | None = None

    @property
    def api_base_url(self) -> str:
        return f"{self.forge.url}/ex/jira/{self.cloud_id}"

    @property
    def site_url(self) -> str:
        return self.site.base_url

    # Tokens Forge issues.

    def issue_system_token(self) -> str:
        token = "forge-system-" + secrets.token_urlsafe(32)
        self.system_tokens.append(token)
        return token

    def expire_system_tokens(self) -> None:
        """Every token issued so far stops working, as they do 2-4 hours after they were issued."""
        self.system_tokens.clear()

    def fit_claims(self, *, principal: str | None = None, module_type: str = "core:endpoint",
                   module_key: str = "addon-lifecycle", exp_in: int = FIT_LIFETIME_S, iat_offset: int = 0,
                   changes: dict[str, Any] | None = None) -> dict[str, Any]:
        """A FIT's claims as Forge mints them; `changes` sets (or with `DROP` removes) dotted paths like
        `"app.apiBaseUrl"`."""
        now = int(time.time()) + iat_offset
        claims: dict[str, Any] = {
            "app": {
                "id": self.app_id,
                "version": "1",
                "appVersion": self.app_version,
                "installationId": self.installation_id,
                "apiBaseUrl": self.api_base_url,
                "environment": {"type": self.environment_type, "id": self.environment_id},
                "module": {"type": module_type, "key": module_key},
                "installation": {"id": self.installation_id, "contexts": [
                    {"name": f"ari:cloud:jira::site/{self.cloud_id}", "apiBaseUrl": self.api_base_url,
                     "cloudId": self.cloud_id}]},
            },
            "context": {"cloudId": self.cloud_id, "siteUrl": self.site_url, "moduleKey": module_key,
                        "localId": f"{module_key}-{uuid.uuid4().hex[:8]}", "extension": {}},
            "aud": self.app_id,
            "iss": ISSUER,
            "iat": now,
            "nbf": now,
            "exp": now + exp_in,
            "jti": str(uuid.uuid4()),
        }
        if principal is not None:
            claims["principal"] = principal
        for path, value in (changes or {}).items():
            *parents, last = path.split(".")
            node = claims
            for name in parents:
                node = node.setdefault(name, {})
            if value is DROP:
                node.pop(last, None)
            else:
                node[last] = value
        return claims

    def fit(self, *, kid: str | None = None, key: Any = None, algorithm: str = "RS256",
            headers: dict[str, Any] | None = None, **claim_options: Any) -> str:
        return self.forge.mint(self.fit_claims(**claim_options), kid=kid, key=key, algorithm=algorithm,
                               headers=headers)

    # Bodies Forge sends.

    def lifecycle_body(self, event: str = "avi:forge:installed:app", installer: str = "installer-account") -> dict:
        return {
            "eventType": event,
            "id": self.installation_id,
            "installerAccountId": installer,
            "app": {"id": self.app_id, "version": self.app_version},
            "environment": {"id": self.environment_id},
            "context": {"cloudId": self.cloud_id, "siteUrl": self.site_url},
        }

    def project_event_body(self, event: str, project_id: int | str, *, atlassian_id: str | None = None,
                           with_attributes: bool = True) -> dict:
        """A project event as Forge sends it: `project` carries `id` and `key` always, the rest when asked."""
        project = self.site.projects[str(project_id)]
        sent = dict(project) if with_attributes else {"id": project["id"], "key": project["key"]}
        body: dict[str, Any] = {"eventType": event, "selfGenerated": False, "project": sent,
                                "context": {"cloudId": self.cloud_id, "moduleKey": "project-events"}}
        if atlassian_id is not None:
            body["atlassianId"] = atlassian_id
        return body

    # Calls Forge makes to the remote.

    def invoke(self, url: str, body: dict, *, wrapped: bool = False, retries: int = EVENT_RETRIES,
               timeout_s: float = EVENT_TIMEOUT_S, retry_delay_s: float = 0.0, system_token: str | None = None,
               module_key: str = "addon-lifecycle", fit: str | None = None) -> Invocation:
        """An event or lifecycle invocation: POST, up to `retries` retries while the answer is not 2xx or takes
        longer than `timeout_s`; each retry has a fresh FIT and `retryContext` (under `payload` when `wrapped`)."""
        token = system_token or self.issue_system_token()
        attempts: list[Attempt] = []
        for count in range(retries + 1):
            sent = dict(body)
            if count:
                reason = "TIMEOUT" if attempts[-1].status is None else f"HTTP_{attempts[-1].status}"
                sent["retryContext"] = {"retryCount": count, "retryReason": reason, "retryData": {}}
            payload = {"payload": sent} if wrapped else sent
            headers = {
                "Authorization": f"Bearer {fit or self.fit(module_key=module_key)}",
                "x-forge-oauth-system": token,
                "x-b3-traceid": secrets.token_hex(16),
                "x-b3-spanid": secrets.token_hex(8),
            }
            started = time.monotonic()
            try:
                response = requests.post(url, json=payload, headers=headers, timeout=timeout_s,
                                         allow_redirects=False)
            except requests.RequestException:
                attempts.append(Attempt(None, time.monotonic() - started, None, None))
            else:
                attempts.append(Attempt(response.status_code, time.monotonic() - started, _json_or_text(response),
                                        response))
                if 200 <= response.status_code < 300:
                    break
            if count < retries and retry_delay_s:
                time.sleep(retry_delay_s)
        return Invocation(attempts)

    def invoke_remote(self, addon_url: str, path: str, *, method: str = "GET", body: Any = None,
                      principal: str | None = "admin-account", headers: dict[str, str] | None = None,
                      fit: str | None = None, system_token: str | None = None) -> requests.Response:
        """`invokeRemote` from the Custom UI: the call's path on the remote, the FIT with `principal`, 25 s, no
        retries, no redirects followed."""
        fit = fit or self.fit(principal=principal, module_type="jira:adminPage",
                              module_key="projectrak-administration")
        all_headers = {
            "Authorization": f"Bearer {fit}",
            "x-forge-oauth-system": system_token or self.issue_system_token(),
            **(headers or {}),
        }
        return requests.request(method, addon_url + path, json=body, headers=all_headers, timeout=UI_TIMEOUT_S,
                                allow_redirects=False)


class FakeForge:
    """Forge's JWKS and the Jira REST API of Forge installations, on one HTTP server."""

    def __init__(self, atlassian: FakeAtlassian, app_id: str | None = None) -> None:
        self.atlassian = atlassian
        self.app_id = app_id or new_app_id()
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.jwks_fetches = 0
        self.jwks_down = False  # answer the JWKS with 503
        self.jwks_body: bytes | None = None  # answer the JWKS with these bytes instead of the keys
        self.jwks_delays: list[float] = []  # seconds the next fetches of the JWKS wait before answering, in turn
        self.installations: dict[str, FakeInstallation] = {}  # by cloudId
        self._lock = threading.Lock()
        self.current_kid = self.add_key()
        self._server = BackgroundServer(_handler_for(self)).start()
        self.url = f"http://127.0.0.1:{self._server.port}"

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/.well-known/jwks.json"

    def stop(self) -> None:
        self._server.stop()

    # Keys.

    def add_key(self, kid: str | None = None) -> str:
        kid = kid or f"forge/invocation-token/{uuid.uuid4().hex[:12]}"
        self.keys[kid] = new_rsa_key()[0]
        return kid

    def rotate_keys(self) -> str:
        """A new key replaces every published one; FITs are signed with it from now on."""
        new_kid = self.add_key()
        for kid in [k for k in self.keys if k != new_kid]:
            del self.keys[kid]
        self.current_kid = new_kid
        return new_kid

    def jwks(self) -> dict:
        keys = []
        for kid, key in self.keys.items():
            jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
            keys.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        return {"keys": keys}

    def mint(self, claims: dict[str, Any], *, kid: str | None = None, key: Any = None, algorithm: str = "RS256",
             headers: dict[str, Any] | None = None) -> str:
        """Sign `claims` as Forge does (RS256 with the current key); `kid`/`key`/`algorithm` let a test forge."""
        kid = kid or self.current_kid
        if key is None:  # an unknown kid is signed with the current key: its header alone makes it unknown
            key = self.keys.get(kid) or self.keys[self.current_kid]
        return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": kid, **(headers or {})})

    # Installations.

    def install(self, site: FakeSite | None = None, *, app_id: str | None = None) -> FakeInstallation:
        """The app installed on a site (a new one of the fake Atlassian unless given): a new installation id."""
        site = site or self.atlassian.new_site()
        cloud_id = str(uuid.uuid4())
        app_id = app_id or self.app_id
        installation = FakeInstallation(
            forge=self, site=site, app_id=app_id,
            installation_id=f"ari:cloud:ecosystem::installation/{uuid.uuid4()}", cloud_id=cloud_id,
            environment_id=f"ari:cloud:ecosystem::environment/{app_id.rsplit('/', 1)[1]}/{uuid.uuid4()}")
        self.installations[cloud_id] = installation
        return installation

    # Jira's side of a REST call made with a system token.

    def check_system_token(self, installation: FakeInstallation, auth: str | None) -> str:
        scheme, _, token = (auth or "").partition(" ")
        if scheme != "Bearer" or not token:
            raise PermissionError("no Bearer token")
        if token not in installation.system_tokens:
            raise PermissionError("not a live system token of this installation")
        return token


def _json_or_text(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def _handler_for(forge: FakeForge) -> type[QuietHandler]:
    class Handler(QuietHandler):
        def do_GET(self) -> None:  # noqa: N802
            self._dispatch("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._dispatch("POST")

        def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            self.send_bytes(status, json.dumps(payload).encode(), headers=headers)

        def _dispatch(self, method: str) -> None:
            parts = urlsplit(self.path)
            body_raw = self.read_body()
            if parts.path == "/.well-known/jwks.json" and method == "GET":
                with forge._lock:
                    forge.jwks_fetches += 1
                    delay = forge.jwks_delays.pop(0) if forge.jwks_delays else 0.0
                time.sleep(delay)
                if forge.jwks_down:
                    self._json(503, {"message": "unavailable"})
                elif forge.jwks_body is not None:
                    self.send_bytes(200, forge.jwks_body)
                else:
                    self._json(200, forge.jwks())
                return
            if parts.path == PRIVACY_REPORT_PATH and method == "POST":
                self._report_accounts(body_raw)
                return
            # /ex/jira/<cloudId>/rest/api/3/...
            segments = parts.path.split("/", 4)
            installation = None
            if len(segments) == 5 and segments[1] == "ex" and segments[2] == "jira":
                installation = forge.installations.get(segments[3])
            if installation is None:
                self._json(404, {"errorMessages": ["no such site"]})
                return
            path = "/" + segments[4]
            site = installation.site
            try:
                token = forge.check_system_token(installation, self.headers.get("Authorization"))
            except PermissionError as err:
                site.rejected_calls.append(f"{method} {path}: {err}")
                self._json(401, {"code": 401, "message": "Unauthorized"})
                return
            body = json.loads(body_raw) if body_raw else None
            query = parse_qs(parts.query, keep_blank_values=True)
            site.calls.append(JiraCall(method, path, query, body, {"system_token": token}))
            if installation.refusal is not None:
                self._json(installation.refusal, {"code": installation.refusal, "message": "refused"})
                return
            status, payload, headers = site.answer(method, path, query, body)
            self._json(status, payload, headers)

        def _report_accounts(self, body_raw: bytes) -> None:
            """Atlassian's personal data reporting API for Forge apps (`{PRIVACY_API_URL}/app/report-accounts/`):
            the installation is the one whose live system token the call carries; answered from its site."""
            auth = self.headers.get("Authorization")
            installation = next((i for i in list(forge.installations.values())
                                 if auth and auth.startswith("Bearer ") and auth[7:] in i.system_tokens), None)
            if installation is None:
                self._json(401, {"code": 401, "message": "Unauthorized"})
                return
            body = json.loads(body_raw) if body_raw else None
            site = installation.site
            site.calls.append(JiraCall("POST", PRIVACY_REPORT_PATH, {}, body, {"system_token": auth[7:]}))
            status, payload, headers = site.answer_report(body)
            self.send_bytes(status, b"" if payload is None else json.dumps(payload).encode(), headers=headers)

    return Handler
