"""The JWT attack matrix: each forged or broken token answers 401 and changes nothing."""

from __future__ import annotations

import base64
import json

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select

from addon.storage.models import Tenant, TenantState
from tests.support.atlassian import new_rsa_key, qsh


def state_of(addon, client_key: str) -> str | None:
    with addon.sessions() as session:
        t = session.scalar(select(Tenant).where(Tenant.client_key == client_key))
        return None if t is None else t.state


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def alg_none_token(site) -> str:
    claims = jwt.decode(site.token("POST", "/lifecycle/disabled"), options={"verify_signature": False})
    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."


def hs256_with_rsa_public_key(site) -> str:
    pem = site.atlassian.keys[site.atlassian.current_kid][1]
    claims = jwt.decode(site.token("POST", "/lifecycle/disabled"), options={"verify_signature": False})
    header = b64({"alg": "HS256", "typ": "JWT", "kid": site.atlassian.current_kid})
    payload = b64(claims)
    import hashlib
    import hmac
    signature = hmac.new(pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


SYMMETRIC_ATTACKS = {
    "missing token": lambda site: None,
    "malformed": lambda site: "not.a.jwt",
    "garbage": lambda site: "x" * 50,
    "alg none": alg_none_token,
    "HS256 signed with the RSA public key": hs256_with_rsa_public_key,
    "expired": lambda site: site.token("POST", "/lifecycle/disabled", exp_in=-120, iat_offset=-300),
    "not yet valid": lambda site: site.token("POST", "/lifecycle/disabled", iat_offset=600),
    "wrong qsh": lambda site: site.token("POST", "/lifecycle/enabled"),
    "missing qsh": lambda site: site.token("POST", "/lifecycle/disabled", omit=("qsh",)),
    "missing exp": lambda site: site.token("POST", "/lifecycle/disabled", omit=("exp",)),
    "context token": lambda site: site.context_token(),
    "unknown iss": lambda site: site.token("POST", "/lifecycle/disabled", iss="someone-else"),
    "wrong secret": lambda site: site.token("POST", "/lifecycle/disabled", secret="w" * 48),
    "RS256 signed by an install key": lambda site: site.token(
        "POST", "/lifecycle/disabled", algorithm="RS256", key=site.atlassian.keys[site.atlassian.current_kid][0]),
}


@pytest.mark.parametrize("attack", list(SYMMETRIC_ATTACKS))
def test_symmetric_attacks_answer_401_and_change_nothing(addon, site, attack):
    token = SYMMETRIC_ATTACKS[attack](site)
    headers = {"Authorization": f"JWT {token}"} if token else {}
    response = requests.post(f"{addon.url}/lifecycle/disabled", json={}, headers=headers, timeout=10)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "unauthorized"
    assert state_of(addon, site.client_key) == TenantState.ENABLED


def test_token_in_query_parameter_is_accepted(addon, site):
    response = site.call(addon.url, "POST", "/lifecycle/disabled", json_body={}, in_query=True)
    assert response.status_code == 204
    assert state_of(addon, site.client_key) == TenantState.DISABLED


def test_leeway_allows_a_little_clock_skew(addon, site):
    token = site.token("POST", "/lifecycle/disabled", iat_offset=30)
    response = site.call(addon.url, "POST", "/lifecycle/disabled", json_body={}, token=token)
    assert response.status_code == 204


def install_attacks(atlassian, site, addon_url):
    other_key, _ = new_rsa_key()
    unknown_kid = "never-published"
    return {
        "signed by an unknown key": atlassian.install_token(addon_url, "/lifecycle/installed",
                                                            issuer=site.client_key, key=other_key),
        "unknown kid": atlassian.install_token(addon_url, "/lifecycle/installed", issuer=site.client_key,
                                               kid=unknown_kid, key=other_key),
        "bad kid": atlassian.install_token(addon_url, "/lifecycle/installed", issuer=site.client_key,
                                           kid="../../etc/passwd"),
        "wrong aud": atlassian.install_token(addon_url, "/lifecycle/installed", issuer=site.client_key,
                                             aud="https://other-addon.example.com"),
        "iss differs from clientKey": atlassian.install_token(addon_url, "/lifecycle/installed",
                                                              issuer="another-client"),
        "expired": atlassian.install_token(addon_url, "/lifecycle/installed", issuer=site.client_key,
                                           exp_in=-120, iat_offset=-300),
        "wrong qsh": atlassian.install_token(addon_url, "/lifecycle/installed", issuer=site.client_key,
                                             qsh_value=qsh("POST", "/lifecycle/uninstalled")),
        "missing qsh": atlassian.install_token(addon_url, "/lifecycle/installed", issuer=site.client_key,
                                               omit=("qsh",)),
        "HS256 with the shared secret": site.token("POST", "/lifecycle/installed", sub=None),
        "HS256 with the RSA public key as secret": jwt.encode(
            {"iss": site.client_key, "aud": [addon_url], "qsh": qsh("POST", "/lifecycle/installed"),
             "iat": 0, "exp": 2**33}, "k" * 40, algorithm="HS256", headers={"kid": atlassian.current_kid}),
        "RS512": atlassian.install_token(addon_url, "/lifecycle/installed", issuer=site.client_key,
                                         algorithm="RS512"),
    }


@pytest.mark.parametrize("attack", ["signed by an unknown key", "unknown kid", "bad kid", "wrong aud",
                                    "iss differs from clientKey", "expired", "wrong qsh", "missing qsh",
                                    "HS256 with the shared secret", "HS256 with the RSA public key as secret",
                                    "RS512"])
def test_install_attacks_answer_401_and_create_nothing(addon, atlassian, attack):
    site = atlassian.new_site()
    token = install_attacks(atlassian, site, addon.url)[attack]
    response = requests.post(f"{addon.url}/lifecycle/installed", json=site.lifecycle_body(),
                             headers={"Authorization": f"JWT {token}"}, timeout=10)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "unauthorized"
    assert state_of(addon, site.client_key) is None


def test_install_attack_cannot_replace_an_existing_secret(addon, site, atlassian):
    other_key, _ = new_rsa_key()
    body = site.lifecycle_body() | {"sharedSecret": "attacker-chosen-secret-attacker-chosen-secret"}
    token = atlassian.install_token(addon.url, "/lifecycle/installed", issuer=site.client_key, key=other_key)
    response = requests.post(f"{addon.url}/lifecycle/installed", json=body,
                             headers={"Authorization": f"JWT {token}"}, timeout=10)
    assert response.status_code == 401
    assert site.call(addon.url, "POST", "/lifecycle/disabled", json_body={}).status_code == 204


def test_uninstall_without_signature_changes_nothing(addon, site):
    response = requests.post(f"{addon.url}/lifecycle/uninstalled", json=site.lifecycle_body("uninstalled"),
                             headers={"Authorization": f"JWT {site.token('POST', '/lifecycle/uninstalled')}"},
                             timeout=10)
    assert response.status_code == 401
    assert state_of(addon, site.client_key) == TenantState.ENABLED


def test_key_server_down_is_401(addon, atlassian):
    site = atlassian.new_site()
    atlassian.stop()
    response = site.install(addon.url)
    assert response.status_code == 401


def test_public_key_pem_is_valid(atlassian):
    pem = atlassian.keys[atlassian.current_kid][1]
    assert serialization.load_pem_public_key(pem)


@pytest.mark.parametrize("kid", ["../../etc/passwd", "abc\n", "keys/../abc", "a" * 129, "a b", "abc%2F", "ké",
                                 "abc\r\nX-Injected: 1"])
def test_a_bad_kid_is_refused_without_any_key_fetch(addon, atlassian, kid):
    """The kid must match ^[A-Za-z0-9._/-]{1,128}$ as a whole (no trailing newline) and hold no `..`: anything
    else is refused before the key server is asked."""
    site = atlassian.new_site()
    token = atlassian.install_token(addon.url, "/lifecycle/installed", issuer=site.client_key, kid=kid)
    response = requests.post(f"{addon.url}/lifecycle/installed", json=site.lifecycle_body(),
                             headers={"Authorization": f"JWT {token}"}, timeout=10)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "unauthorized"
    assert atlassian.key_fetches == []
    assert state_of(addon, site.client_key) is None


def test_a_kid_of_128_allowed_characters_is_fetched(addon, atlassian):
    kid = ("Ab0._/-" * 19)[:128]
    atlassian.current_kid = atlassian.add_key(kid)
    site = atlassian.new_site()
    assert site.install(addon.url).status_code == 204
    assert atlassian.key_fetches == [kid]
