"""The address policy for webhook targets (CONTRACT §6.3): which URLs may be saved, which IPs may be reached.

A webhook URL is chosen by a tenant's administrator, so the add-on must not become a way to reach its own
network (server-side request forgery). Only `https://` URLs without user info are accepted, and a target
address must be globally routable: loopback, private, link-local (cloud metadata), CGNAT, documentation,
benchmarking, multicast and reserved ranges are refused, and IPv6 forms that embed an IPv4 address
(IPv4-mapped, IPv4-compatible, 6to4, NAT64, Teredo) are judged by the embedded address.

The ranges are listed here rather than taken from `ipaddress`'s `is_global`/`is_private`, whose answers
have changed between Python versions (e.g. IPv4 multicast counted as global before 3.13).
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Longest URL accepted, in characters.
MAX_URL_LENGTH = 2048

#: A getaddrinfo-compatible resolver; called as `resolve(host, port, type=socket.SOCK_STREAM)`.
Resolver = Callable[..., Sequence[tuple[Any, ...]]]

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

_BLOCKED_V4: tuple[ipaddress.IPv4Network, ...] = tuple(
    _V4(n)
    for n in (
        "0.0.0.0/8",  # "this network", includes the unspecified address
        "10.0.0.0/8",  # RFC 1918
        "100.64.0.0/10",  # CGNAT shared address space (RFC 6598)
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local, includes 169.254.169.254 cloud metadata
        "172.16.0.0/12",  # RFC 1918
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation TEST-NET-1
        "192.88.99.0/24",  # 6to4 relay anycast (deprecated)
        "192.168.0.0/16",  # RFC 1918
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation TEST-NET-2
        "203.0.113.0/24",  # documentation TEST-NET-3
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, includes the broadcast address 255.255.255.255
    )
)

# Every public IPv6 unicast address is in 2000::/3; everything outside it is refused outright.
_GLOBAL_UNICAST_V6 = _V6("2000::/3")
_BLOCKED_V6: tuple[ipaddress.IPv6Network, ...] = tuple(
    _V6(n)
    for n in (
        "2001::/23",  # IETF protocol assignments (benchmarking 2001:2::/48, ORCHID...); Teredo is unwrapped first
        "2001:db8::/32",  # documentation
        "2002::/16",  # 6to4: unwrapped first, so only reached for malformed cases
        "3fff::/20",  # documentation (RFC 9637)
    )
)


# The same ranges as (first, last) integers: membership tests on ints are about ten times cheaper than
# `address in network`, and every send checks every resolved address.
def _int_ranges(networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> tuple[tuple[int, int], ...]:
    return tuple((int(n.network_address), int(n.broadcast_address)) for n in networks)


def _in_ranges(value: int, ranges: tuple[tuple[int, int], ...]) -> bool:
    return any(first <= value <= last for first, last in ranges)


_BLOCKED_V4_RANGES = _int_ranges(_BLOCKED_V4)
_BLOCKED_V6_RANGES = _int_ranges(_BLOCKED_V6)
_GLOBAL_UNICAST_V6_RANGE = _int_ranges([_GLOBAL_UNICAST_V6])

_MAPPED = _V6("::ffff:0:0/96")
_COMPATIBLE = _V6("::/96")  # deprecated IPv4-compatible ::a.b.c.d (also holds :: and ::1)
_NAT64 = _V6("64:ff9b::/96")  # well-known NAT64 prefix: the IPv4 address is the last 32 bits
_NAT64_LOCAL = _V6("64:ff9b:1::/48")  # local-use NAT64 (RFC 8215): a private translator, never public
_SIXTOFOUR = _V6("2002::/16")
_TEREDO = _V6("2001::/32")


def _prefix(network: ipaddress.IPv6Network) -> tuple[int, int]:
    shift = 128 - network.prefixlen
    return int(network.network_address) >> shift, shift


def _has_prefix(value: int, prefix: tuple[int, int]) -> bool:
    return value >> prefix[1] == prefix[0]


_MAPPED_P, _COMPATIBLE_P, _NAT64_P, _NAT64_LOCAL_P, _SIXTOFOUR_P, _TEREDO_P = map(
    _prefix, (_MAPPED, _COMPATIBLE, _NAT64, _NAT64_LOCAL, _SIXTOFOUR, _TEREDO)
)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address] | None:
    """The IPv4 addresses an IPv6 transition form carries, or None when it is a plain IPv6 address."""
    value = int(ip)
    if _has_prefix(value, _MAPPED_P) or _has_prefix(value, _COMPATIBLE_P) or _has_prefix(value, _NAT64_P):
        return [ipaddress.IPv4Address(value & 0xFFFFFFFF)]
    if _has_prefix(value, _SIXTOFOUR_P):
        return [ipaddress.IPv4Address((value >> 80) & 0xFFFFFFFF)]
    if _has_prefix(value, _TEREDO_P):
        return [ipaddress.IPv4Address((value >> 64) & 0xFFFFFFFF), ipaddress.IPv4Address(~value & 0xFFFFFFFF)]
    return None


def is_public_address(ip: IPAddress) -> bool:
    """Whether `ip` is a globally routable unicast address that a webhook may be sent to."""
    if isinstance(ip, ipaddress.IPv4Address):
        return not _in_ranges(int(ip), _BLOCKED_V4_RANGES)
    if not _in_ranges(int(ip), _GLOBAL_UNICAST_V6_RANGE):
        # Outside 2000::/3: unspecified, loopback, ULA fc00::/7, link-local, site-local, multicast and
        # reserved are refused, but the transition forms there (::ffff:0:0/96, ::/96, 64:ff9b::/96) are
        # judged by the IPv4 address they carry.
        if _has_prefix(int(ip), _NAT64_LOCAL_P):
            return False
        embedded = _embedded_ipv4(ip)
        return embedded is not None and all(is_public_address(v4) for v4 in embedded)
    embedded = _embedded_ipv4(ip)  # 6to4 2002::/16 and Teredo 2001::/32 are inside 2000::/3
    if embedded is not None:
        return all(is_public_address(v4) for v4 in embedded)
    return not _in_ranges(int(ip), _BLOCKED_V6_RANGES)


class UrlRejected(ValueError):
    """A webhook URL that may not be saved or sent to; `code` is `invalid_url` or `private_address`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Target:
    """A parsed webhook URL: where to connect and what to ask for."""

    host: str  # lower-case ASCII host name (IDNA A-labels) or IP literal without brackets; no trailing dot
    port: int
    request_target: str  # path and query, percent-encoded ASCII, as sent on the request line
    ip: IPAddress | None  # set when the host is an IP literal

    @property
    def url(self) -> str:
        """The URL in the form that is sent, which is the form saved (no fragment, no default port)."""
        host = f"[{self.host}]" if isinstance(self.ip, ipaddress.IPv6Address) else self.host
        port = "" if self.port == 443 else f":{self.port}"
        return f"https://{host}{port}{self.request_target}"


# Forms that getaddrinfo/inet_aton read as IPv4 (2130706433, 127.1, 0x7f.1, 0177.0.0.1) but which are not
# the canonical dotted quad: a DNS name never ends in an all-numeric label, so these are refused.
_NUMERIC_LAST_LABEL = re.compile(r"(^|\.)(0x[0-9a-f]*|[0-9]+)$")
_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_FORBIDDEN_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")
#: Characters RFC 3986 allows as they are in a path (besides letters, digits and `-._~`), and `%` of an escape.
_PATH_SAFE = "/:@!$&'()*+,;=%"
_QUERY_SAFE = _PATH_SAFE + "?"
_STRAY_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _percent_encode(text: str, safe: str) -> str:
    """`text` with what may not stand in a request line percent-encoded (UTF-8), `%XX` escapes kept as they are.
    Encoding it again changes nothing, so a saved URL parses to the same request."""
    try:
        return quote(_STRAY_PERCENT.sub("%25", text), safe=safe)
    except UnicodeEncodeError:  # a lone surrogate has no UTF-8 form
        raise UrlRejected("invalid_url", "URL contains characters that cannot be encoded") from None


def parse_target(url: str) -> Target:
    """Parse and validate a webhook URL; raises `UrlRejected("invalid_url", ...)`."""
    if not isinstance(url, str) or not url:
        raise UrlRejected("invalid_url", "URL is required")
    if len(url) > MAX_URL_LENGTH:
        raise UrlRejected("invalid_url", f"URL is longer than {MAX_URL_LENGTH} characters")
    if _FORBIDDEN_CHARS.search(url):
        # urlsplit silently drops tabs and newlines; refuse them (and backslashes, which some clients read as `/`).
        raise UrlRejected("invalid_url", "URL contains control characters or backslashes")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlRejected("invalid_url", f"URL is not valid: {exc}") from None
    if parts.scheme.lower() != "https":
        raise UrlRejected("invalid_url", "only https:// URLs are allowed")
    if "@" in parts.netloc:
        raise UrlRejected("invalid_url", "URL must not contain user info")
    raw_host = parts.hostname
    if not raw_host:
        raise UrlRejected("invalid_url", "URL has no host")
    if port is None:
        port = 443
    elif not 1 <= port <= 65535:
        raise UrlRejected("invalid_url", "port must be between 1 and 65535")
    host, ip = _normalise_host(raw_host, bracketed=parts.netloc.startswith("["))
    # Sent as the request line needs them: non-ASCII and other characters percent-encoded; the fragment dropped,
    # as no HTTP client sends it.
    path = _percent_encode(parts.path or "/", _PATH_SAFE)
    query = _percent_encode(parts.query, _QUERY_SAFE)
    target = Target(host=host, port=port, request_target=path + (f"?{query}" if query else ""), ip=ip)
    if len(target.url) > MAX_URL_LENGTH:
        raise UrlRejected("invalid_url", f"URL is longer than {MAX_URL_LENGTH} characters once percent-encoded")
    return target


def _normalise_host(raw: str, *, bracketed: bool) -> tuple[str, IPAddress | None]:
    if bracketed:
        if "%" in raw:
            raise UrlRejected("invalid_url", "IPv6 zone identifiers are not allowed")
        try:
            return raw, ipaddress.IPv6Address(raw)
        except ValueError:
            raise UrlRejected("invalid_url", "invalid IPv6 address") from None
    try:
        ip4 = ipaddress.IPv4Address(raw)
        return str(ip4), ip4
    except ValueError:
        pass
    host = raw[:-1] if raw.endswith(".") else raw
    try:
        host = host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise UrlRejected("invalid_url", "host is not a valid domain name") from None
    if _NUMERIC_LAST_LABEL.search(host):
        raise UrlRejected("invalid_url", "host is neither a domain name nor a dotted-quad IPv4 address")
    if len(host) > 253 or not all(_HOST_LABEL.match(label) for label in host.split(".")):
        raise UrlRejected("invalid_url", "host is not a valid domain name")
    return host, None


def resolve_addresses(host: str, port: int, resolve: Resolver = socket.getaddrinfo) -> list[IPAddress]:
    """All distinct IPv4/IPv6 addresses `host` resolves to, in resolver order. Raises OSError if none."""
    seen: dict[IPAddress, None] = {}
    for family, _type, _proto, _canon, sockaddr in resolve(host, port, type=socket.SOCK_STREAM):
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = str(sockaddr[0]).split("%", 1)[0]
        seen.setdefault(ipaddress.ip_address(address), None)
    if not seen:
        raise socket.gaierror(socket.EAI_NONAME, f"{host} has no IPv4 or IPv6 address")
    return list(seen)


def first_blocked(addresses: Sequence[IPAddress]) -> IPAddress | None:
    """The first address the policy refuses, or None when all are public."""
    for ip in addresses:
        if not is_public_address(ip):
            return ip
    return None


SAVE_TIME_DNS_TIMEOUT_S = 3.0
_save_time_dns = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="save-dns")


LocalTargets = frozenset[tuple[str, int]]
"""`(host, port)` pairs let through the policy by the process that owns them, as given (no lookup): only `addon
demo`, for its own receiver on the loopback. Nothing in the settings sets them, so `addon serve` has none."""


def check_url_for_saving(url: str, allow_private: bool, resolve: Resolver = socket.getaddrinfo,
                         dns_timeout_s: float = SAVE_TIME_DNS_TIMEOUT_S, local_targets: LocalTargets = frozenset()
                         ) -> str:
    """The webhook URL in the form to save (the form that is sent: `Target.url`), or `UrlRejected`.

    `invalid_url`: not `https://`, no host, user info, bad port, too long, malformed host.
    `private_address`: an IP literal or a name resolving to any non-public address (unless `allow_private`).
    A name that does not resolve now (or not within `dns_timeout_s`, so a dead resolver cannot hold an admin
    request) is accepted: it is checked again, every time, at send time.
    """
    target = parse_target(url)
    if allow_private or (target.host, target.port) in local_targets:
        return target.url
    if target.ip is not None:
        addresses: list[IPAddress] = [target.ip]
    else:
        lookup = _save_time_dns.submit(resolve_addresses, target.host, target.port, resolve)
        try:
            addresses = lookup.result(timeout=dns_timeout_s)
        except (OSError, UnicodeError, ValueError, concurrent.futures.TimeoutError):
            return target.url
    blocked = first_blocked(addresses)
    if blocked is not None:
        what = "is" if target.ip is not None else "resolves to"
        raise UrlRejected("private_address", f"{target.host} {what} {blocked}, which is not a public internet address")
    return target.url
