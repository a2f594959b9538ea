"""Atlassian Connect JWTs, in one place.

Builds on `atlassian-jwt` (the query string hash, tokens for calls to Jira) and PyJWT (verification), and closes
their gaps: context tokens (`qsh == "context-qsh"`), a token without `qsh` (a KeyError inside atlassian-jwt),
RS256 signed installs (not supported by atlassian-jwt), a 60 s leeway everywhere, and `iat` in the future.
No function here logs or echoes a token.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import atlassian_jwt
import jwt
from atlassian_jwt.url_utils import hash_url
from jwt.algorithms import HMACAlgorithm
from jwt.exceptions import DecodeError
from jwt.utils import base64url_decode, base64url_encode
from werkzeug.datastructures import Headers

LEEWAY_S = 60
CONTEXT_QSH = "context-qsh"
APP_TOKEN_LIFETIME_S = 180
_KID_RE = re.compile(r"[A-Za-z0-9._/-]{1,128}")  # matched whole (fullmatch): no trailing newline


class JwtError(Exception):
    """The request is not authenticated; the message says why without echoing the token."""


def extract_token(headers: Mapping[str, str] | Headers, query: Mapping[str, str]) -> str | None:
    """The token from `Authorization: JWT …`, else from the `jwt` query parameter."""
    auth = headers.get("Authorization", "")
    if auth[:4].lower() == "jwt ":
        return auth[4:].strip() or None
    return query.get("jwt") or None


def relative_path(path: str, base_url: str) -> str:
    """The request path relative to the add-on's base URL (whose path may be a prefix behind a proxy)."""
    prefix = urlsplit(base_url).path.rstrip("/")
    if prefix and (path == prefix or path.startswith(prefix + "/")):
        path = path[len(prefix) :]
    return path or "/"


def query_string_hash(method: str, path: str, query_string: str = "") -> str:
    """Atlassian's qsh: SHA-256 hex of `METHOD&path&canonical-query` (the `jwt` parameter left out)."""
    if not query_string:
        return _hash_without_query(method.upper(), path)
    return hash_url(method.upper(), path + "?" + query_string)


@functools.lru_cache(maxsize=1024)
def _hash_without_query(method: str, path: str) -> str:
    """The qsh of a request without a query string, remembered: every intake request asks, and atlassian-jwt's
    canonical form costs as much as checking the signature. (With a query, nothing is remembered: it may carry
    the token itself.)"""
    return hash_url(method, path)


def token_fingerprint(token: str) -> str:
    """A stable, non-reversible name for a token (replay protection without storing the token)."""
    return hashlib.sha256(token.encode()).hexdigest()


def _segment_json(segment: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def unverified_issuer(token: str) -> str:
    """The `iss` claim, read before the signature is checked, only to find whose secret verifies it.

    Read by hand (split, base64url, JSON), not by PyJWT: this runs on every request, and PyJWT's unverified reads
    would parse the token twice more before `verify_symmetric` parses and checks all of it.
    """
    try:
        header_segment, payload_segment, _signature = token.split(".")
        header, claims = _segment_json(header_segment), _segment_json(payload_segment)
    except (ValueError, binascii.Error):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise JwtError("malformed token") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise JwtError("malformed token")
    if header.get("alg") != "HS256":
        raise JwtError("unexpected token algorithm")
    issuer = claims.get("iss")
    if not isinstance(issuer, str) or not issuer:
        raise JwtError("token has no issuer")
    return issuer


def _check_qsh(claims: Mapping[str, Any], expected_qsh: str, allow_context: bool) -> None:
    qsh = claims.get("qsh")
    if not isinstance(qsh, str) or not qsh:
        raise JwtError("token has no qsh claim")
    if qsh == CONTEXT_QSH:
        if not allow_context:
            raise JwtError("a context token is not accepted here")
        return
    if not hmac.compare_digest(qsh, expected_qsh):
        raise JwtError("token qsh does not match the request")


_BASE64URL_SEGMENT = re.compile(rb"[A-Za-z0-9_-]*")


class _SegmentsCheckedAtOnce(jwt.PyJWS):
    """PyJWS whose segment check is PyJWT's own (`PyJWS._decode_base64url_segment`, PyJWT 2.15), with the alphabet
    tested by one regular expression instead of a generator over every character, which was a third of each
    verification. tests/connect/test_jwt_verify.py holds it to PyJWT's on arbitrary segments."""

    @staticmethod
    def _decode_base64url_segment(segment: bytes, name: str) -> bytes:
        stripped = segment.rstrip(b"=")
        padding = len(segment) - len(stripped)
        if (padding > 2 or (padding and len(segment) % 4 != 0) or len(stripped) % 4 == 1
                or not _BASE64URL_SEGMENT.fullmatch(stripped)):
            raise DecodeError(f"Invalid {name} padding")
        try:
            decoded = base64url_decode(stripped)
        except (TypeError, binascii.Error) as err:
            raise DecodeError(f"Invalid {name} padding") from err
        if base64url_encode(decoded) != stripped:
            raise DecodeError(f"Invalid {name} padding")
        return decoded


class _SecretCheckedOnce(HMACAlgorithm):
    """HS256 whose key checks (not empty, not shaped like a public key or a JWK) run once per shared secret rather
    than on every verification, where they cost a quarter of it; a secret they refuse is refused every time."""

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - one instance for the process's lifetime
    def prepare_key(self, key: str | bytes) -> bytes:
        return super().prepare_key(key)


class _HS256Verifier(jwt.PyJWT):
    """PyJWT's decode (claims, leeway, `require`) over the JWS above, which knows HS256 alone. Every intake
    request verifies a token: with PyJWT 2.15 as it comes, verifying cost half as much as storing the event."""

    def __init__(self) -> None:
        super().__init__()
        jws = _SegmentsCheckedAtOnce(algorithms=[], options=self._get_sig_options())
        jws.register_algorithm("HS256", _SecretCheckedOnce(HMACAlgorithm.SHA256))
        self._jws = jws


_SYMMETRIC = _HS256Verifier()


@contextlib.contextmanager
def _verification_errors() -> Iterator[None]:
    """PyJWT's verification errors as `JwtError`s whose message says what failed, never the token."""
    try:
        yield
    except jwt.ExpiredSignatureError:
        raise JwtError("token has expired") from None
    except jwt.ImmatureSignatureError:
        raise JwtError("token is not yet valid") from None
    except jwt.MissingRequiredClaimError as err:
        raise JwtError(f"token lacks the {err.claim} claim") from None
    except jwt.PyJWTError:
        raise JwtError("token signature or format is invalid") from None


def verify_symmetric(token: str, shared_secret: str, *, expected_qsh: str, allow_context: bool = False) -> dict:
    """Verify an HS256 token from Jira (or Projectrak) signed with the tenant's shared secret."""
    with _verification_errors():
        claims = _SYMMETRIC.decode(
            token,
            shared_secret,
            algorithms=["HS256"],
            leeway=LEEWAY_S,
            options={"require": ["exp", "iat", "iss"], "verify_aud": False},
        )
    _check_qsh(claims, expected_qsh, allow_context)
    return claims


def verify_install(token: str, fetch_public_key: Callable[[str], bytes], *, audience: str, expected_qsh: str) -> dict:
    """Verify a signed install/uninstall: RS256 with the key named by `kid`, `aud`, `exp`, `iat`/`nbf`, `qsh`.

    The caller still checks `iss` against the body's clientKey.
    """
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise JwtError("malformed token") from None
    if header.get("alg") != "RS256":
        raise JwtError("install tokens must be RS256")
    kid = header.get("kid")
    if not isinstance(kid, str) or not _KID_RE.fullmatch(kid) or ".." in kid:
        raise JwtError("install token has no valid kid")
    public_key = fetch_public_key(kid)
    with _verification_errors():
        claims = jwt.decode(
            token,
            public_key,
            algorithms=["RS256"],
            leeway=LEEWAY_S,
            options={"require": ["exp", "iat", "iss", "aud"], "verify_aud": False},
        )
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    wanted = audience.rstrip("/")
    if not any(isinstance(a, str) and a.rstrip("/") == wanted for a in audiences):
        raise JwtError("token audience is not this add-on")
    _check_qsh(claims, expected_qsh, allow_context=False)
    return claims


def encode_app_token(*, app_key: str, client_key: str, shared_secret: str, method: str, relative_url: str) -> str:
    """A token for a call from the add-on to Jira: `iss` = app key, qsh over the call, 3 minutes of validity."""
    return atlassian_jwt.encode_token(
        method.upper(),
        relative_url,
        clientKey=client_key,
        sharedSecret=shared_secret,
        timeout_secs=APP_TOKEN_LIFETIME_S,
        payload_kwargs={"iss": app_key},
    )
