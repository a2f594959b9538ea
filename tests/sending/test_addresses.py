"""The address policy: which webhook URLs may be saved and which addresses are public (CONTRACT §6.3)."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from addon.sending.addresses import (
    MAX_URL_LENGTH,
    UrlRejected,
    check_url_for_saving,
    is_public_address,
    parse_target,
    resolve_addresses,
)


def fake_resolver(table: dict[str, list[str]]):
    """A getaddrinfo stand-in answering from `table`; unknown names fail like a real NXDOMAIN."""

    def resolve(host: str, port: int, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0):
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        out = []
        for address in table[host]:
            if ":" in address:
                out.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0)))
            else:
                out.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)))
        return out

    return resolve


PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "100.63.255.255",  # just below CGNAT
    "100.128.0.0",  # just above CGNAT
    "172.15.255.255",
    "172.32.0.0",
    "192.0.1.1",
    "2606:4700:4700::1111",
    "2001:4860:4860::8888",
    "2a00:1450:4001:800::200e",
    "::ffff:8.8.8.8",  # IPv4-mapped, public inside
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8
    "2002:808:808::1",  # 6to4 of 8.8.8.8
    "2001:0:4136:e378:8000:63bf:f7f7:f7f7",  # Teredo: server 65.54.227.120, client 8.8.8.8
]

NOT_PUBLIC = [
    "127.0.0.1",
    "127.255.255.254",
    "10.0.0.1",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "169.254.0.1",
    "100.64.0.1",  # CGNAT
    "100.127.255.255",
    "0.0.0.0",
    "0.1.2.3",
    "192.0.0.8",  # IETF protocol assignments
    "192.0.2.1",  # documentation
    "198.51.100.7",
    "203.0.113.9",
    "198.18.0.1",  # benchmarking
    "198.19.255.255",
    "192.88.99.1",  # 6to4 relay anycast
    "224.0.0.1",  # multicast
    "239.255.255.250",
    "240.0.0.1",  # reserved
    "255.255.255.255",  # broadcast
    "::",
    "::1",
    "::ffff:127.0.0.1",  # IPv4-mapped loopback
    "::ffff:7f00:1",  # the same, hex form
    "::ffff:10.1.2.3",
    "::ffff:169.254.169.254",
    "::127.0.0.1",  # IPv4-compatible
    "::10.0.0.1",
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "64:ff9b:1::808:808",  # local-use NAT64 prefix
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo, client 192.0.2.45 (documentation)
    "2001:0:a00:1::",  # Teredo with a private server 10.0.0.1
    "fe80::1",  # link-local
    "fc00::1",  # ULA
    "fd12:3456:789a::1",
    "fec0::1",  # site-local
    "ff02::1",  # multicast
    "ff0e::1",
    "2001:db8::1",  # documentation
    "3fff::1",  # documentation (RFC 9637)
    "2001:2::1",  # benchmarking
    "2001:10::1",  # ORCHID
    "100::1",  # discard-only
    "5f00::1",  # outside 2000::/3
    "4000::1",
]


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses(address: str) -> None:
    assert is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", NOT_PUBLIC)
def test_non_public_addresses(address: str) -> None:
    assert not is_public_address(ipaddress.ip_address(address))


def test_scoped_ipv6_is_judged_by_address() -> None:
    assert not is_public_address(ipaddress.ip_address("fe80::1%eth0"))


# -- saving -------------------------------------------------------------------------------------------------

PUBLIC_DNS = fake_resolver({"hooks.example.com": ["93.184.216.34", "2606:2800:220:1::1"]})


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/webhook",
        "https://hooks.example.com:8443/a/b?c=d&e=f",
        "https://HOOKS.example.com./x",
        "https://unresolvable.example/hook",  # accepted now, checked at send time
        "https://8.8.8.8/hook",
        "https://[2606:4700:4700::1111]:443/",
    ],
)
def test_accepts_public_https_urls(url: str) -> None:
    check_url_for_saving(url, allow_private=False, resolve=PUBLIC_DNS)


@pytest.mark.parametrize(
    "url",
    [
        "",
        "http://hooks.example.com/",
        "ftp://hooks.example.com/",
        "hooks.example.com/webhook",
        "//hooks.example.com/",
        "https:///path-only",
        "https://user@hooks.example.com/",
        "https://user:pass@hooks.example.com/",
        "https://@hooks.example.com/",
        "https://hooks.example.com:0/",
        "https://hooks.example.com:65536/",
        "https://hooks.example.com:99999/",
        "https://hooks.example.com:abc/",
        "https://hooks example.com/",
        "https://hooks.example.com\n.evil.test/",
        "https://hooks.example.com\t/",
        "https://hooks.example.com\\@evil.test/",
        "https://exa%6dple.com/",
        "https://-bad-.example.com/",
        "https://a..b.example/",
        "https://" + "a" * 64 + ".example/",
        "https://hooks.example.com/" + "x" * MAX_URL_LENGTH,
        # Numeric hosts that resolvers read as IPv4 but are not dotted quads: refused as malformed.
        "https://2130706433/",
        "https://0x7f000001/",
        "https://127.1/",
        "https://0177.0.0.1/",
        "https://127.000.000.001/",
        "https://0x7f.0.0.1/",
        "https://[fe80::1%25eth0]/",
        "https://[not-an-ip]/",
    ],
)
def test_refuses_invalid_urls(url: str) -> None:
    with pytest.raises(UrlRejected) as caught:
        check_url_for_saving(url, allow_private=True, resolve=PUBLIC_DNS)
    assert caught.value.code == "invalid_url"
    assert caught.value.message
    assert isinstance(caught.value, ValueError)


SSRF_LITERALS = [
    "https://127.0.0.1/",
    "https://127.0.0.1:8443/hook",
    "https://10.1.2.3/",
    "https://172.16.0.1/",
    "https://192.168.0.10/",
    "https://169.254.169.254/latest/meta-data/",
    "https://100.64.0.1/",
    "https://0.0.0.0/",
    "https://[::1]/",
    "https://[::]/",
    "https://[::ffff:127.0.0.1]/",
    "https://[::ffff:7f00:1]/",
    "https://[2002:7f00:1::]/",
    "https://[64:ff9b::7f00:1]/",
    "https://[fe80::1]/",
    "https://[fc00::1]/",
    "https://192.0.2.1/",
    "https://224.0.0.1/",
    "https://255.255.255.255/",
]


@pytest.mark.parametrize("url", SSRF_LITERALS)
def test_refuses_private_literals(url: str) -> None:
    with pytest.raises(UrlRejected) as caught:
        check_url_for_saving(url, allow_private=False, resolve=PUBLIC_DNS)
    assert caught.value.code == "private_address"


@pytest.mark.parametrize("url", SSRF_LITERALS)
def test_private_literals_allowed_when_configured(url: str) -> None:
    check_url_for_saving(url, allow_private=True, resolve=PUBLIC_DNS)


@pytest.mark.parametrize(
    "answer",
    [
        ["10.0.0.5"],
        ["127.0.0.1"],
        ["169.254.169.254"],
        ["::1"],
        ["fd00::1"],
        ["93.184.216.34", "192.168.1.1"],  # any private address in the answer is enough
        ["2606:2800:220:1::1", "::ffff:10.0.0.1"],
    ],
)
def test_refuses_names_resolving_to_private_addresses(answer: list[str]) -> None:
    resolve = fake_resolver({"internal.example.com": answer})
    with pytest.raises(UrlRejected) as caught:
        check_url_for_saving("https://internal.example.com/hook", allow_private=False, resolve=resolve)
    assert caught.value.code == "private_address"
    assert "internal.example.com" in caught.value.message
    check_url_for_saving("https://internal.example.com/hook", allow_private=True, resolve=resolve)


def test_localhost_is_refused_through_the_real_resolver() -> None:
    with pytest.raises(UrlRejected) as caught:
        check_url_for_saving("https://localhost/hook", allow_private=False)
    assert caught.value.code == "private_address"


def test_parse_target() -> None:
    target = parse_target("https://Hooks.Example.COM.:8443/a/b?x=1#frag")
    assert (target.host, target.port, target.request_target, target.ip) == (
        "hooks.example.com",
        8443,
        "/a/b?x=1",
        None,
    )
    assert parse_target("https://hooks.example.com").request_target == "/"
    assert parse_target("https://[::1]/").ip == ipaddress.ip_address("::1")
    assert parse_target("https://bücher.example/").host == "xn--bcher-kva.example"


def test_resolve_addresses_dedupes_and_keeps_order() -> None:
    resolve = fake_resolver({"h.example": ["93.184.216.34", "2606:2800:220:1::1", "93.184.216.34"]})
    assert resolve_addresses("h.example", 443, resolve) == [
        ipaddress.ip_address("93.184.216.34"),
        ipaddress.ip_address("2606:2800:220:1::1"),
    ]


def test_save_time_dns_that_hangs_is_accepted_and_left_to_send_time():
    import threading

    from addon.sending.addresses import check_url_for_saving

    release = threading.Event()

    def hanging_resolver(*_args, **_kwargs):
        release.wait(5)
        raise OSError("no answer")

    import time

    started = time.monotonic()
    try:
        check_url_for_saving("https://slow-dns.example/hook", allow_private=False, resolve=hanging_resolver,
                             dns_timeout_s=0.2)
    finally:
        release.set()
    assert time.monotonic() - started < 2.0, "the save-time lookup must give up after dns_timeout_s"
