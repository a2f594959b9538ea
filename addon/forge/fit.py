"""The Forge Invocation Token (FIT) check of CONTRACT §9.3.

Every call Forge makes to this remote carries `Authorization: Bearer <FIT>`: an RS256 JWT signed with a key of the
JWKS at `FORGE_JWKS_URL`. `FitVerifier.verify` checks it and returns the verified claims the door needs; anything else
raises `FitError` with a message naming what failed (the door answers `401`, which Forge reads as "the invocation
token failed"). `FitKeysUnavailable` is the one failure that is ours, not the caller's: the key set could not be read.

The keys come from PyJWT's `PyJWKClient`: the whole key set cached for `KEY_SET_LIFESPAN_S`, fetched again on an
unknown `kid` at most once per `refetch_interval_s` (its `cooldown_duration`, started by every successful fetch),
with a 5 s fetch timeout. A key removed from the set stops verifying as soon as the set is fetched again.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jwt
from jwt import PyJWKClient

from addon.config import Settings, base_url_allowed

ISSUER = "forge/invocation-token"
ALGORITHM = "RS256"
LEEWAY_S = 60
FETCH_TIMEOUT_S = 5.0
REFETCH_INTERVAL_S = 60.0
KEY_SET_LIFESPAN_S = 300.0
_MAX_KID_LENGTH = 200


class FitError(Exception):
    """The token is refused; the message says why (safe to show: it never contains the token)."""


class FitKeysUnavailable(FitError):
    """The Forge key set could not be fetched, so no token can be checked right now."""


@dataclass(frozen=True)
class ForgeInvocation:
    """The verified claims of one FIT that the Forge door uses."""

    app_id: str
    installation_id: str
    api_base_url: str  # no trailing `/`; Jira's REST API is under `{api_base_url}/rest/api/3/`
    principal: str | None  # the acting user's accountId (UI calls), None for events
    cloud_id: str | None
    site_url: str | None
    environment_type: str | None
    environment_id: str | None
    module_type: str | None
    module_key: str | None
    app_version: str | None
    token_id: str | None  # `jti`
    expires_at: int


class _Jwks(PyJWKClient):
    """PyJWKClient whose failed fetches are rate-limited too.

    The library starts its cooldown only after a successful fetch, and fetches under a lock; while the key
    server is unreachable every request would otherwise wait out its own 5 s timeout, one after another.
    """

    def __init__(self, uri: str, *, timeout: float, cooldown: float, lifespan: float) -> None:
        super().__init__(uri, cache_keys=False, cache_jwk_set=True, lifespan=lifespan, timeout=timeout,
                         cooldown_duration=cooldown)
        self._failed_at: float | None = None
        self._failure_backoff_s = min(timeout, cooldown)
        self._failure_lock = threading.Lock()

    def fetch_data(self) -> Any:
        with self._failure_lock:
            if self._failed_at is not None and time.monotonic() - self._failed_at < self._failure_backoff_s:
                raise jwt.PyJWKClientConnectionError("the key set failed to load moments ago")
        try:
            data = super().fetch_data()
        except Exception as err:
            with self._failure_lock:
                self._failed_at = time.monotonic()
            if isinstance(err, jwt.PyJWTError):
                raise
            # e.g. a body that is not JSON: the library lets that through as a ValueError.
            raise jwt.PyJWKClientConnectionError(f"the key set could not be read: {type(err).__name__}") from err
        with self._failure_lock:
            self._failed_at = None
        return data


class FitVerifier:
    """Checks FITs for one Forge app. Thread-safe; keep one per process so the key cache is shared."""

    def __init__(self, app_id: str | None, jwks_url: str, api_hosts: tuple[str, ...], *,
                 fetch_timeout_s: float = FETCH_TIMEOUT_S, refetch_interval_s: float = REFETCH_INTERVAL_S,
                 key_set_lifespan_s: float = KEY_SET_LIFESPAN_S) -> None:
        self.app_id = app_id
        self.api_hosts = api_hosts
        self._jwks = _Jwks(jwks_url, timeout=fetch_timeout_s, cooldown=refetch_interval_s,
                           lifespan=key_set_lifespan_s)

    @classmethod
    def from_settings(cls, settings: Settings) -> FitVerifier:
        return cls(settings.forge_app_id, settings.forge_jwks_url, settings.forge_api_hosts)

    def verify_authorization(self, header: str | None) -> ForgeInvocation:
        """Check an `Authorization` header value, which must be `Bearer <FIT>`."""
        scheme, _, token = (header or "").strip().partition(" ")
        if not header or not header.strip():
            raise FitError("no Forge Invocation Token: the Authorization header is missing")
        if scheme.lower() != "bearer" or not token.strip():
            raise FitError("the Authorization header must be 'Bearer <Forge Invocation Token>'")
        return self.verify(token.strip())

    def verify(self, token: str) -> ForgeInvocation:
        if self.app_id is None:
            raise FitError("the Forge door is closed: FORGE_APP_ID is not set")
        if not token:
            raise FitError("no Forge Invocation Token")
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise FitError("the Forge Invocation Token is not a well-formed JWT") from None
        alg = header.get("alg")
        if alg != ALGORITHM:
            raise FitError(f"the token's algorithm is {_show(alg)}; only RS256 is accepted")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > _MAX_KID_LENGTH:
            raise FitError("the token's header names no valid key id (kid)")
        # Isolated-cloud tokens are signed with another key set: say so rather than "unknown key", and do not
        # let them trigger fetches of ours.
        if "icLabel" in unverified:
            raise FitError("isolated cloud tokens (icLabel) are not accepted by this app")

        return self._invocation(self._decode(token, kid))

    def _key(self, kid: str) -> Any:
        try:
            return self._jwks.get_signing_key(kid).key
        except jwt.PyJWKClientConnectionError:
            raise FitKeysUnavailable("the Forge key set could not be fetched from FORGE_JWKS_URL") from None
        except jwt.PyJWKSetError:
            raise FitKeysUnavailable("FORGE_JWKS_URL served no usable key set") from None
        except jwt.PyJWKClientError as err:
            if "Unable to find a signing key" in str(err):
                raise FitError(f"the token's key {_show(kid)} is not in the Forge key set") from None
            raise FitKeysUnavailable("FORGE_JWKS_URL served no usable key set") from None

    def _decode(self, token: str, kid: str) -> dict[str, Any]:
        key = self._key(kid)
        try:
            return jwt.decode(token, key, algorithms=[ALGORITHM], audience=self.app_id, issuer=ISSUER,
                              leeway=LEEWAY_S, options={"require": ["exp", "iat", "iss", "aud"]})
        except jwt.InvalidSignatureError:
            raise FitError(f"the token's signature does not verify with key {_show(kid)}") from None
        except jwt.ExpiredSignatureError:
            raise FitError("the token has expired (exp)") from None
        except jwt.ImmatureSignatureError:
            raise FitError("the token is not yet valid (nbf/iat in the future)") from None
        except jwt.InvalidAudienceError:
            raise FitError("the token is for another app: its aud is not FORGE_APP_ID") from None
        except jwt.InvalidIssuerError:
            raise FitError(f"the token's iss is not {ISSUER}") from None
        except jwt.MissingRequiredClaimError as err:
            raise FitError(f"the token has no {err.claim} claim") from None
        except jwt.PyJWTError as err:
            raise FitError(f"the token is invalid: {err}") from None

    def _invocation(self, claims: dict[str, Any]) -> ForgeInvocation:
        app = claims.get("app")
        if not isinstance(app, dict):
            raise FitError("the token has no app claim")
        if app.get("id") is not None and app.get("id") != self.app_id:
            raise FitError("the token is for another app: its app.id is not FORGE_APP_ID")
        installation_id = app.get("installationId")
        if not isinstance(installation_id, str) or not installation_id:
            raise FitError("the token has no app.installationId")
        api_base_url = app.get("apiBaseUrl")
        if not isinstance(api_base_url, str) or not self._api_base_url_allowed(api_base_url):
            raise FitError("the token's app.apiBaseUrl is not an https URL on a host that FORGE_API_HOSTS allows")
        principal = claims.get("principal")
        if principal is not None and (not isinstance(principal, str) or not principal):
            raise FitError("the token's principal is not an account id")
        context, environment, module = _object(claims, "context"), _object(app, "environment"), _object(app, "module")
        return ForgeInvocation(
            app_id=self.app_id or "",
            installation_id=installation_id,
            api_base_url=api_base_url.rstrip("/"),
            principal=principal,
            cloud_id=_text(context.get("cloudId")),
            site_url=_text(context.get("siteUrl")),
            environment_type=_text(environment.get("type")),
            environment_id=_text(environment.get("id")),
            module_type=_text(module.get("type")),
            module_key=_text(module.get("key")),
            app_version=_text(app.get("appVersion")),
            token_id=_text(claims.get("jti")),
            expires_at=int(claims["exp"]),
        )

    def _api_base_url_allowed(self, url: str) -> bool:
        try:
            parts = urlsplit(url)
        except ValueError:
            return False
        # The door appends `/rest/api/3/…` to it: a query or fragment would change what that names.
        return not parts.query and not parts.fragment and base_url_allowed(url, self.api_hosts)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _object(parent: dict[str, Any], name: str) -> dict[str, Any]:
    """A claim that is a JSON object, else an empty one."""
    value = parent.get(name)
    return value if isinstance(value, dict) else {}
