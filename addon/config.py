"""Every setting of the add-on, read once from the environment (and `.env`), validated in one place."""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.fernet import Fernet
from dotenv import dotenv_values

DEFAULT_PORT = 8000
DEFAULT_KEY = "projectrak-outgoing-webhooks"
DEFAULT_DATABASE_URL = "sqlite:///instance/addon.db"
DEFAULT_INSTALL_KEYS_URL = "https://connect-install-keys.atlassian.com"
DEFAULT_JIRA_HOSTS = "*.atlassian.net,*.jira.com"
DEFAULT_FORGE_JWKS_URL = "https://forge.cdn.prod.atlassian-dev.net/.well-known/jwks.json"
DEFAULT_FORGE_API_HOSTS = "api.atlassian.com"
DEFAULT_PRIVACY_API_URL = "https://api.atlassian.com"
_FORGE_APP_ID_RE = re.compile(r"^ari:cloud:ecosystem::app/[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$")
_APP_KEY_RE = re.compile(r"^[a-zA-Z0-9._-]{1,80}$")
_HOST_PATTERN_RE = re.compile(r"^(\*|(\*\.)?[a-z0-9-]+(\.[a-z0-9-]+)*)$")


class ConfigError(ValueError):
    """A setting is invalid; the message is one line naming the variable."""


@dataclass(frozen=True)
class Settings:
    base_url: str = f"http://localhost:{DEFAULT_PORT}"
    app_key: str = DEFAULT_KEY
    secret_key: str | None = None
    database_url: str = DEFAULT_DATABASE_URL
    install_keys_url: str = DEFAULT_INSTALL_KEYS_URL
    jira_hosts: tuple[str, ...] = tuple(DEFAULT_JIRA_HOSTS.split(","))
    allow_private_networks: bool = False
    ca_bundle: str | None = None
    outgoing_timeout_s: float = 10.0
    port: int = DEFAULT_PORT
    # The Forge door (CONTRACT §9.1): closed while forge_app_id is None.
    forge_app_id: str | None = None
    forge_jwks_url: str = DEFAULT_FORGE_JWKS_URL
    forge_api_hosts: tuple[str, ...] = (DEFAULT_FORGE_API_HOSTS,)
    # Where Forge tenants' personal data reports go (CONTRACT §11): `POST {privacy_api_url}/app/report-accounts/`.
    privacy_api_url: str = DEFAULT_PRIVACY_API_URL
    log_format: str = "text"  # LOG_FORMAT: "text" or "json" (one JSON object per line)
    # The bearer token of `GET /metrics` (CONTRACT §10.6); None: no metrics route (404).
    metrics_token: str | None = None
    extra: dict[str, str] = field(default_factory=dict, compare=False)

    def with_changes(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    def jira_host_allowed(self, host: str) -> bool:
        """Whether a tenant's `baseUrl` host matches one of `ADDON_JIRA_HOSTS`."""
        return host_allowed(host, self.jira_hosts)

    def jira_base_url_allowed(self, base_url: str) -> bool:
        """A tenant `baseUrl` must be https on an allowed host, or http on a loopback host the list names."""
        return base_url_allowed(base_url, self.jira_hosts)

    def forge_api_base_url_allowed(self, api_base_url: str) -> bool:
        """A FIT's `app.apiBaseUrl` must be https on a host of `FORGE_API_HOSTS` (http only on a named loopback)."""
        return base_url_allowed(api_base_url, self.forge_api_hosts)


def host_allowed(host: str, patterns: tuple[str, ...]) -> bool:
    """Whether `host` matches a pattern: `*` matches exactly one DNS label; a lone `*` matches any host."""
    host = host.lower().rstrip(".")
    for pattern in patterns:
        if pattern == "*":
            return True
        if pattern.startswith("*."):
            suffix = pattern[1:]
            label = host[: -len(suffix)] if host.endswith(suffix) else ""
            if label and "." not in label:
                return True
        elif host == pattern:
            return True
    return False


def base_url_allowed(base_url: str, patterns: tuple[str, ...]) -> bool:
    """An https URL on a host the patterns allow, or an http URL on a loopback host they name exactly."""
    try:
        parts = urlsplit(base_url)
        host = parts.hostname or ""
    except ValueError:
        return False
    if not host or parts.username or parts.password:
        return False
    if parts.scheme == "https":
        return host_allowed(host, patterns)
    if parts.scheme == "http" and _is_loopback(host):
        return any(p != "*" and p.lower() == host.lower() for p in patterns)
    return False


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name} must be 0 or 1, not {raw!r}")


def _http_url(name: str, raw: str) -> str:
    """An http(s) URL with a host (and a valid port, if any), without a trailing `/`."""
    try:
        parts = urlsplit(raw)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in 0-65535
    except ValueError:
        valid = False
    if not valid or raw != raw.strip():
        raise ConfigError(f"{name} must be an http(s) URL, not {raw!r}")
    return raw.rstrip("/")


def _host_patterns(name: str, raw: str) -> tuple[str, ...]:
    hosts = tuple(h.strip().lower() for h in raw.split(",") if h.strip())
    if not hosts or not all(_HOST_PATTERN_RE.match(h) for h in hosts):
        raise ConfigError(f"{name} must be a comma-separated list of host patterns, not {raw!r}")
    return hosts


def _database_url(raw: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(raw)
        driver, port = url.drivername, url.port
    except (ArgumentError, ValueError):
        driver, port = "", None
    if driver != "sqlite" and driver.split("+")[0] != "postgresql":
        raise ConfigError("DATABASE_URL must be a sqlite:/// or postgresql+psycopg:// URL")
    if port is not None and not 0 < port < 65536:
        raise ConfigError(f"DATABASE_URL must be a URL whose port is in 1-65535, not {port}")
    return raw


def _port(name: str, raw: str) -> int:
    try:
        port = int(raw)
        if not 0 < port < 65536:
            raise ValueError
    except ValueError:
        raise ConfigError(f"{name} must be a TCP port number, not {raw!r}") from None
    return port


def load_settings(environ: dict[str, str] | None = None, env_file: str | os.PathLike[str] | None = ".env", *,
                  port: int | None = None) -> Settings:
    """Read and validate the settings; raise ConfigError with one line naming the bad variable.

    `port` is a `--port` option: it wins over `PORT`, and the default `ADDON_BASE_URL` follows it.
    """
    env: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        try:
            env.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"{env_file} cannot be read: {err}") from None
    env.update(os.environ if environ is None else environ)

    if port is not None:
        port = _port("--port", str(port))
    else:
        port = _port("PORT", env.get("PORT", str(DEFAULT_PORT)))

    base_url = _http_url("ADDON_BASE_URL", env.get("ADDON_BASE_URL") or f"http://localhost:{port}")

    app_key = env.get("ADDON_KEY") or DEFAULT_KEY
    if not _APP_KEY_RE.match(app_key):
        raise ConfigError("ADDON_KEY must match ^[a-zA-Z0-9._-]{1,80}$")

    secret_key = env.get("ADDON_SECRET_KEY") or None
    if secret_key is not None:
        try:
            Fernet(secret_key.encode())
        except (ValueError, TypeError):
            raise ConfigError("ADDON_SECRET_KEY must be a Fernet key (32 url-safe base64-encoded bytes)") from None

    database_url = _database_url(env.get("DATABASE_URL") or DEFAULT_DATABASE_URL)

    install_keys_url = _http_url(
        "ADDON_INSTALL_KEYS_URL", env.get("ADDON_INSTALL_KEYS_URL") or DEFAULT_INSTALL_KEYS_URL
    )

    jira_hosts = _host_patterns("ADDON_JIRA_HOSTS", env.get("ADDON_JIRA_HOSTS") or DEFAULT_JIRA_HOSTS)

    forge_app_id = env.get("FORGE_APP_ID") or None
    if forge_app_id is not None and not _FORGE_APP_ID_RE.match(forge_app_id):
        raise ConfigError(f"FORGE_APP_ID must look like ari:cloud:ecosystem::app/<uuid>, not {forge_app_id!r}")
    forge_jwks_url = _http_url("FORGE_JWKS_URL", env.get("FORGE_JWKS_URL") or DEFAULT_FORGE_JWKS_URL)
    forge_api_hosts = _host_patterns("FORGE_API_HOSTS", env.get("FORGE_API_HOSTS") or DEFAULT_FORGE_API_HOSTS)

    privacy_api_url = _http_url("PRIVACY_API_URL", env.get("PRIVACY_API_URL") or DEFAULT_PRIVACY_API_URL)

    allow_private = _bool("OUTGOING_ALLOW_PRIVATE_NETWORKS", env.get("OUTGOING_ALLOW_PRIVATE_NETWORKS", "0"))

    ca_bundle = env.get("OUTGOING_CA_BUNDLE") or None
    if ca_bundle is not None and not Path(ca_bundle).is_file():
        raise ConfigError(f"OUTGOING_CA_BUNDLE names no readable file: {ca_bundle!r}")

    timeout_raw = env.get("OUTGOING_TIMEOUT_S", "10")
    try:
        timeout = float(timeout_raw)
        if not 0 < timeout <= 300:
            raise ValueError
    except ValueError:
        raise ConfigError(f"OUTGOING_TIMEOUT_S must be a number of seconds in (0, 300], not {timeout_raw!r}") from None

    log_format = _log_format(env.get("LOG_FORMAT") or "text")
    metrics_token = env.get("METRICS_TOKEN") or None
    # Any length is accepted (CONTRACT §10.6 sets none; docs/operations.md advises a long random one); only what
    # cannot travel in an `Authorization: Bearer` header is refused.
    if metrics_token is not None and (not metrics_token.isascii() or not metrics_token.isprintable()
                                      or " " in metrics_token):
        raise ConfigError("METRICS_TOKEN must be printable ASCII characters without spaces")

    return Settings(
        base_url=base_url,
        app_key=app_key,
        secret_key=secret_key,
        database_url=database_url,
        install_keys_url=install_keys_url,
        jira_hosts=jira_hosts,
        allow_private_networks=allow_private,
        ca_bundle=ca_bundle,
        outgoing_timeout_s=timeout,
        port=port,
        forge_app_id=forge_app_id,
        forge_jwks_url=forge_jwks_url,
        forge_api_hosts=forge_api_hosts,
        privacy_api_url=privacy_api_url,
        metrics_token=metrics_token,
        log_format=log_format,
    )


LOG_FORMATS = ("text", "json")


def _log_format(raw: str) -> str:
    if raw.strip().lower() not in LOG_FORMATS:
        raise ConfigError(f"LOG_FORMAT must be text or json, not {raw!r}")
    return raw.strip().lower()


def read_log_format(environ: dict[str, str] | None = None, env_file: str | os.PathLike[str] | None = ".env") -> str:
    """`LOG_FORMAT` alone, read before the other settings (logging is set up first, to report them)."""
    env: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        try:
            env.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
        except (OSError, UnicodeDecodeError):
            pass  # load_settings reports it
    env.update(os.environ if environ is None else environ)
    return _log_format(env.get("LOG_FORMAT") or "text")
