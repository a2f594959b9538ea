"""The demo door's credentials: HS256 JWTs signed with the demo tenant's shared secret, `iss` = its key, bound to
the request by Atlassian's `qsh` (a context token, `qsh: "context-qsh"`, on the admin REST API only), as the
Connect door takes Jira's. The demo site signs its own requests here too: its project webhooks and Projectrak's
field changes (`sign_request`), and the tokens its page asks for (`context_token`, as `AP.context.getToken()`).

The code is the demo's own (the doors import nothing of each other), written with PyJWT and atlassian-jwt's
canonical request hash.
"""

from __future__ import annotations

import hmac
import time
from typing import Any
from urllib.parse import urlsplit

import atlassian_jwt
import jwt
from atlassian_jwt.url_utils import hash_url
from flask import Request

CONTEXT_QSH = "context-qsh"
LEEWAY_S = 60
TOKEN_LIFETIME_S = 180


class TokenRefused(Exception):
    """The token does not authenticate the request; the message says why, without the token."""


def extract(request: Request) -> str | None:
    """The token of `Authorization: JWT …`, else None (not this door's scheme)."""
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    return token.strip() or None if scheme.lower() == "jwt" else None


def issuer(token: str) -> str:
    """The `iss` claim, read before the signature is checked, only to find whose secret verifies it."""
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise TokenRefused("malformed token") from None
    if header.get("alg") != "HS256":
        raise TokenRefused("unexpected token algorithm")
    iss = claims.get("iss")
    if not isinstance(iss, str) or not iss:
        raise TokenRefused("token has no issuer")
    return iss


def request_qsh(request: Request, base_url: str) -> str:
    prefix = urlsplit(base_url).path.rstrip("/")
    path = request.path[len(prefix):] if prefix and request.path.startswith(prefix + "/") else request.path
    query = request.query_string.decode("latin-1")
    return hash_url(request.method.upper(), (path or "/") + ("?" + query if query else ""))


def verify(token: str, secret: str, expected_qsh: str, allow_context: bool) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(token, secret, algorithms=["HS256"], leeway=LEEWAY_S,
                                            options={"require": ["exp", "iat", "iss", "qsh"], "verify_aud": False})
    except jwt.ExpiredSignatureError:
        raise TokenRefused("token has expired") from None
    except jwt.PyJWTError:
        raise TokenRefused("token signature or format is invalid") from None
    qsh = claims["qsh"]
    if qsh == CONTEXT_QSH:
        if not allow_context:
            raise TokenRefused("a context token is not accepted here")
    elif not isinstance(qsh, str) or not hmac.compare_digest(qsh, expected_qsh):
        raise TokenRefused("token qsh does not match the request")
    return claims


def sign_request(client_key: str, secret: str, method: str, relative_url: str, sub: str | None) -> str:
    """A qsh-bound token for one request of the demo site (as Jira signs its webhooks, as Projectrak signs its
    field changes)."""
    return atlassian_jwt.encode_token(method, relative_url, clientKey=client_key, sharedSecret=secret,
                                      timeout_secs=TOKEN_LIFETIME_S, payload_kwargs={"sub": sub} if sub else None)


def context_token(client_key: str, secret: str, sub: str) -> str:
    now = int(time.time())
    return jwt.encode({"iss": client_key, "sub": sub, "qsh": CONTEXT_QSH, "iat": now, "exp": now + TOKEN_LIFETIME_S},
                      secret, algorithm="HS256")
