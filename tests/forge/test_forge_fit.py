"""The Forge Invocation Token check (CONTRACT §9.3) against FITs of the fake Forge, whose JWKS is served over HTTP."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization

from addon.config import ConfigError, load_settings
from addon.forge.fit import FitError, FitKeysUnavailable, FitVerifier
from tests.support.atlassian import new_rsa_key
from tests.support.forge import DROP, FakeForge, FakeInstallation, new_app_id
from tests.support.processes import ADDON, addon_env
from tests.support.waiting import wait_for

HOSTS = ("127.0.0.1", "api.atlassian.com")


@pytest.fixture
def inst(forge: FakeForge) -> FakeInstallation:
    return forge.install()


@pytest.fixture
def verifier(forge: FakeForge) -> FitVerifier:
    return FitVerifier(forge.app_id, forge.jwks_url, HOSTS)


def refused(verifier: FitVerifier, token: str) -> str:
    with pytest.raises(FitError) as info:
        verifier.verify(token)
    message = str(info.value)
    assert token not in message
    return message


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_with_public_key(forge: FakeForge, inst: FakeInstallation) -> str:
    """The classic RS/HS confusion: HMAC-signed with the published public key as the secret (PyJWT will not mint
    it, so it is built by hand)."""
    public_pem = forge.keys[forge.current_kid].public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": forge.current_kid}).encode())
    payload = _b64(json.dumps(inst.fit_claims()).encode())
    signature = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(signature)}"


def test_a_valid_token_gives_the_verified_claims(verifier: FitVerifier, inst: FakeInstallation) -> None:
    got = verifier.verify(inst.fit(principal="user-1", module_type="jira:adminPage", module_key="admin"))
    assert got.installation_id == inst.installation_id
    assert got.api_base_url == inst.api_base_url
    assert got.app_id == inst.app_id
    assert got.principal == "user-1"
    assert got.cloud_id == inst.cloud_id
    assert got.site_url == inst.site_url
    assert (got.environment_type, got.environment_id) == ("DEVELOPMENT", inst.environment_id)
    assert (got.module_type, got.module_key) == ("jira:adminPage", "admin")
    assert got.token_id and got.expires_at > time.time()


def test_an_event_token_has_no_principal(verifier: FitVerifier, inst: FakeInstallation) -> None:
    assert verifier.verify(inst.fit()).principal is None


def test_the_authorization_header_must_be_a_bearer_token(verifier: FitVerifier, inst: FakeInstallation) -> None:
    assert verifier.verify_authorization(f"Bearer {inst.fit()}").installation_id == inst.installation_id
    for header, why in [(None, "missing"), ("", "missing"), ("   ", "missing"), (f"JWT {inst.fit()}", "Bearer"),
                        ("Bearer ", "Bearer"), ("Bearer", "Bearer")]:
        with pytest.raises(FitError, match=why):
            verifier.verify_authorization(header)


def test_https_api_base_url_on_an_allowed_host_is_accepted(verifier: FitVerifier, inst: FakeInstallation) -> None:
    url = f"https://api.atlassian.com/ex/jira/{inst.cloud_id}"
    assert verifier.verify(inst.fit(changes={"app.apiBaseUrl": url + "/"})).api_base_url == url


def test_tokens_expired_or_early_within_60_seconds_are_accepted(verifier: FitVerifier,
                                                                 inst: FakeInstallation) -> None:
    verifier.verify(inst.fit(iat_offset=-70, exp_in=25))  # expired 45 s ago
    verifier.verify(inst.fit(iat_offset=45))  # issued 45 s in the future


ATTACKS: list[tuple[str, Callable[[FakeForge, FakeInstallation], str], str]] = [
    ("malformed", lambda f, i: "not-a-jwt", "not a well-formed JWT"),
    ("three garbage parts", lambda f, i: "a.b.c", "not a well-formed JWT"),
    ("alg none", lambda f, i: jwt.encode(i.fit_claims(), None, algorithm="none", headers={"kid": f.current_kid}),
     "algorithm is 'none'; only RS256"),
    ("HS256 signed with the public key", hs256_with_public_key, "algorithm is 'HS256'; only RS256"),
    ("RS512", lambda f, i: i.fit(algorithm="RS512"), "algorithm is 'RS512'; only RS256"),
    ("no kid", lambda f, i: jwt.encode(i.fit_claims(), f.keys[f.current_kid], algorithm="RS256"), "key id (kid)"),
    ("expired", lambda f, i: i.fit(iat_offset=-200), "expired"),
    ("not yet valid", lambda f, i: i.fit(iat_offset=120), "not yet valid"),
    ("nbf in the future", lambda f, i: i.fit(changes={"nbf": int(time.time()) + 120}), "not yet valid"),
    ("no exp", lambda f, i: i.fit(changes={"exp": DROP}), "no exp claim"),
    ("wrong iss", lambda f, i: i.fit(changes={"iss": "forge/other-token"}), "iss is not forge/invocation-token"),
    ("no iss", lambda f, i: i.fit(changes={"iss": DROP}), "no iss claim"),
    ("wrong aud", lambda f, i: i.fit(changes={"aud": new_app_id()}), "another app"),
    ("unknown kid", lambda f, i: i.fit(kid="forge/invocation-token/unknown"), "not in the Forge key set"),
    ("a known kid with another key", lambda f, i: i.fit(key=new_rsa_key()[0]), "signature does not verify"),
    ("icLabel", lambda f, i: i.fit(changes={"icLabel": "fedramp-moderate"}), "isolated cloud"),
    ("no installationId", lambda f, i: i.fit(changes={"app.installationId": DROP}), "app.installationId"),
    ("no app", lambda f, i: i.fit(changes={"app": DROP}), "no app claim"),
    ("apiBaseUrl on a foreign host", lambda f, i: i.fit(changes={"app.apiBaseUrl": "https://evil.example/ex/jira/1"}),
     "FORGE_API_HOSTS"),
    ("apiBaseUrl one label too deep",
     lambda f, i: i.fit(changes={"app.apiBaseUrl": "https://x.api.atlassian.com/ex/jira/1"}), "FORGE_API_HOSTS"),
    ("http apiBaseUrl on a non-loopback host",
     lambda f, i: i.fit(changes={"app.apiBaseUrl": "http://api.atlassian.com/ex/jira/1"}), "FORGE_API_HOSTS"),
    ("http apiBaseUrl on a loopback host not named",
     lambda f, i: i.fit(changes={"app.apiBaseUrl": "http://localhost:9/ex/jira/1"}), "FORGE_API_HOSTS"),
    ("apiBaseUrl with credentials",
     lambda f, i: i.fit(changes={"app.apiBaseUrl": "https://u:p@api.atlassian.com/ex/jira/1"}), "FORGE_API_HOSTS"),
    ("apiBaseUrl with a query",
     lambda f, i: i.fit(changes={"app.apiBaseUrl": "https://api.atlassian.com/ex/jira/1?x=1"}), "FORGE_API_HOSTS"),
    ("no apiBaseUrl", lambda f, i: i.fit(changes={"app.apiBaseUrl": DROP}), "FORGE_API_HOSTS"),
    ("a token of another app", lambda f, i: f.install(app_id=new_app_id()).fit(), "another app"),
    ("app.id of another app", lambda f, i: i.fit(changes={"app.id": new_app_id()}), "app.id is not FORGE_APP_ID"),
    ("principal not a string", lambda f, i: i.fit(changes={"principal": {"accountId": "x"}}), "principal"),
]


@pytest.mark.parametrize("make_token, why", [a[1:] for a in ATTACKS], ids=[a[0] for a in ATTACKS])
def test_attacks_are_refused_with_a_reason(verifier: FitVerifier, forge: FakeForge, inst: FakeInstallation,
                                           make_token: Callable[[FakeForge, FakeInstallation], str],
                                           why: str) -> None:
    assert why in refused(verifier, make_token(forge, inst))
    assert verifier.verify(inst.fit()).installation_id == inst.installation_id  # the verifier still works


def test_the_door_is_closed_without_an_app_id(forge: FakeForge, inst: FakeInstallation) -> None:
    assert "FORGE_APP_ID is not set" in refused(FitVerifier(None, forge.jwks_url, HOSTS), inst.fit())
    assert forge.jwks_fetches == 0


def test_an_isolated_cloud_token_fetches_no_keys(verifier: FitVerifier, forge: FakeForge,
                                                 inst: FakeInstallation) -> None:
    refused(verifier, inst.fit(kid="ic/other-key-set", changes={"icLabel": "fedramp"}))
    assert forge.jwks_fetches == 0


def test_a_rotated_key_is_fetched_once_and_the_removed_one_stops_working(forge: FakeForge,
                                                                          inst: FakeInstallation) -> None:
    verifier = FitVerifier(forge.app_id, forge.jwks_url, HOSTS, refetch_interval_s=0.5)
    verifier.verify(inst.fit())
    assert forge.jwks_fetches == 1
    old_token = inst.fit()
    fetched_at = time.monotonic()
    forge.rotate_keys()
    wait_for(lambda: time.monotonic() - fetched_at > 0.6, message="the refetch interval to pass")

    verifier.verify(inst.fit())  # signed with the new kid
    assert forge.jwks_fetches == 2
    for _ in range(5):  # the new key is cached
        verifier.verify(inst.fit())
    assert forge.jwks_fetches == 2
    assert "not in the Forge key set" in refused(verifier, old_token)


def test_unknown_kids_refetch_the_keys_at_most_once_a_minute(forge: FakeForge, inst: FakeInstallation) -> None:
    verifier = FitVerifier(forge.app_id, forge.jwks_url, HOSTS)
    verifier.verify(inst.fit())
    assert forge.jwks_fetches == 1
    for _ in range(50):
        refused(verifier, inst.fit(kid=f"forge/invocation-token/{uuid.uuid4().hex}"))
    forge.rotate_keys()
    # Even a real new key waits for the minute to pass: the fetch a minute ago started it.
    assert "not in the Forge key set" in refused(verifier, inst.fit())
    assert forge.jwks_fetches == 1


def test_a_flood_of_unknown_kids_after_the_interval_fetches_once_per_interval(forge: FakeForge,
                                                                               inst: FakeInstallation) -> None:
    interval = 2.0
    verifier = FitVerifier(forge.app_id, forge.jwks_url, HOSTS, refetch_interval_s=interval)
    verifier.verify(inst.fit())
    fetched_at = time.monotonic()
    wait_for(lambda: time.monotonic() - fetched_at > interval + 0.1, message="the interval to pass")
    started = time.monotonic()
    for _ in range(40):
        refused(verifier, inst.fit(kid=f"forge/invocation-token/{uuid.uuid4().hex}"))
    elapsed = time.monotonic() - started
    refetches = forge.jwks_fetches - 1
    assert 1 <= refetches <= 1 + int(elapsed / interval)


def test_an_unreachable_key_set_refuses_tokens_and_is_not_hammered(forge: FakeForge, inst: FakeInstallation) -> None:
    backoff = 1.0  # a failed fetch is not retried sooner than the fetch timeout
    verifier = FitVerifier(forge.app_id, forge.jwks_url, HOSTS, fetch_timeout_s=backoff)
    forge.jwks_down = True
    with pytest.raises(FitKeysUnavailable, match="FORGE_JWKS_URL"):
        verifier.verify(inst.fit())
    failed_at = time.monotonic()
    for _ in range(20):
        with pytest.raises(FitKeysUnavailable):
            verifier.verify(inst.fit())
    assert forge.jwks_fetches <= 1 + int((time.monotonic() - failed_at) / backoff)
    forge.jwks_down = False

    def accepted() -> bool:
        try:
            return verifier.verify(inst.fit()).installation_id == inst.installation_id
        except FitKeysUnavailable:
            return False

    wait_for(accepted, message="the token to be accepted")


@pytest.mark.parametrize("body", [b"<html>maintenance</html>", b"[]", b'{"keys": "none"}', b'{"keys": []}',
                                  b'{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}'])
def test_a_key_set_that_is_not_one_refuses_tokens_as_unavailable(forge: FakeForge, inst: FakeInstallation,
                                                                 body: bytes) -> None:
    forge.jwks_body = body
    with pytest.raises(FitKeysUnavailable, match="FORGE_JWKS_URL"):
        FitVerifier(forge.app_id, forge.jwks_url, HOSTS).verify(inst.fit())


# Configuration.

def test_forge_settings_default_and_load(forge: FakeForge, inst: FakeInstallation) -> None:
    defaults = load_settings({}, env_file=None)
    assert defaults.forge_app_id is None
    assert defaults.forge_jwks_url == "https://forge.cdn.prod.atlassian-dev.net/.well-known/jwks.json"
    assert defaults.forge_api_hosts == ("api.atlassian.com",)
    assert defaults.forge_api_base_url_allowed("https://api.atlassian.com/ex/jira/1")
    assert not defaults.forge_api_base_url_allowed("https://evil.atlassian.net/ex/jira/1")

    settings = load_settings({"FORGE_APP_ID": forge.app_id, "FORGE_JWKS_URL": forge.jwks_url,
                              "FORGE_API_HOSTS": "127.0.0.1, api.atlassian.com"}, env_file=None)
    assert settings.forge_api_hosts == HOSTS
    assert FitVerifier.from_settings(settings).verify(inst.fit()).installation_id == inst.installation_id


@pytest.mark.parametrize("name, value", [
    ("FORGE_APP_ID", "my-app"),
    ("FORGE_APP_ID", "ari:cloud:ecosystem::app/not-a-uuid"),
    ("FORGE_APP_ID", f"ari:cloud:ecosystem::installation/{uuid.uuid4()}"),
    ("FORGE_JWKS_URL", "ftp://keys.example/jwks.json"),
    ("FORGE_API_HOSTS", "api.atlassian.com,https://x"),
])
def test_invalid_forge_settings_stop_start_up_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"^{name} ") as info:
        load_settings({name: value}, env_file=None)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name, value", [("FORGE_APP_ID", "my-app"), ("FORGE_API_HOSTS", "*.example.com/x")])
def test_addon_serve_stops_with_one_line_on_bad_forge_settings(tmp_path: Path, name: str, value: str) -> None:
    result = subprocess.run([ADDON, "serve"], env=addon_env(**{name: value}), cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith(f"configuration error: {name} must "), line
    assert not (tmp_path / "instance").exists()


# The fake Forge's Jira: what the door's calls will meet.

def test_forge_jira_accepts_only_system_tokens_it_issued(inst: FakeInstallation) -> None:
    inst.site.add_project(10000, "ALPHA", "Alpha")
    url = f"{inst.api_base_url}/rest/api/3/project/10000"
    token = inst.issue_system_token()
    answer = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert answer.status_code == 200 and answer.json() == inst.site.projects["10000"]
    assert inst.site.calls[-1].claims == {"system_token": token}
    for auth in (None, "Bearer forged", f"JWT {token}"):
        headers = {"Authorization": auth} if auth else {}
        assert requests.get(url, headers=headers, timeout=10).status_code == 401
    inst.expire_system_tokens()
    assert requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code == 401
