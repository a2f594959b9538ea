"""Fetching install keys from a key server that misbehaves: slow, stalling, too large, cut off. Every failure is a
failed fetch (401 for the install), within the timeout in all; successes are cached in a bounded cache, and a
failure is remembered per kid for a minute, in a bounded cache of its own.

The key servers are real HTTP on 127.0.0.1 (raw sockets, so that they can misbehave mid-answer).
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import requests
from sqlalchemy import select

from addon.connect.install_keys import CACHE_SIZE, FAILURE_TTL_S, MAX_KEY_BYTES, InstallKeyFetcher
from addon.connect.jwt import JwtError
from addon.storage.models import Tenant
from tests.conftest import make_settings
from tests.support.addon_server import AddonServer, wait_for
from tests.support.atlassian import new_rsa_key

PEM = new_rsa_key()[1]
SHORT_TIMEOUT_S = 1.0


def _headers(length: int | None, chunked: bool = False) -> bytes:
    lines = ["HTTP/1.1 200 OK", "Content-Type: application/x-pem-file", "Connection: close"]
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    elif length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _pause(stop: threading.Event, seconds: float) -> bool:
    return not stop.wait(seconds)


def _ok(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(_headers(len(PEM)) + PEM)


def _stall_after_headers(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(_headers(len(PEM)) + PEM[:20])
    stop.wait(60)


def _drip(conn: socket.socket, stop: threading.Event) -> None:
    """The whole key, 8 bytes every 0.2 s (about 9 s for a 2048-bit key): each read gets data well within any
    socket timeout, only the total is too long."""
    conn.sendall(_headers(len(PEM)))
    for i in range(0, len(PEM), 8):
        if not _pause(stop, 0.2):
            return
        conn.sendall(PEM[i:i + 8])


def _drip_headers(conn: socket.socket, stop: threading.Event) -> None:
    """The status line and headers themselves, a byte every 0.2 s."""
    for byte in _headers(len(PEM)):
        if not _pause(stop, 0.2):
            return
        conn.sendall(bytes([byte]))
    conn.sendall(PEM)


def _too_large(conn: socket.socket, stop: threading.Event) -> None:
    body = PEM + b"\n" * (MAX_KEY_BYTES + 1 - len(PEM))  # still a valid PEM, one byte over the cap
    conn.sendall(_headers(len(body)) + body)


def _endless_chunked(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(_headers(None, chunked=True))
    chunk = b"%x\r\n%s\r\n" % (1024, b"A" * 1024)
    while not stop.is_set():
        conn.sendall(chunk)


def _cut_off(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(_headers(len(PEM)) + PEM[:100])  # then the connection closes: fewer bytes than announced


def _garbage_status(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(b"HTTP/1.1 abc\r\n\r\n")


BEHAVIOURS: dict[str, Callable[[socket.socket, threading.Event], None]] = {
    "ok": _ok,
    "stall-after-headers": _stall_after_headers,
    "drip": _drip,
    "drip-headers": _drip_headers,
    "too-large": _too_large,
    "endless-chunked": _endless_chunked,
    "cut-off": _cut_off,
    "garbage-status": _garbage_status,
}


class MisbehavingKeyServer:
    """`GET /keys/<behaviour>[-anything]` answers as BEHAVIOURS says; `requests` counts the requests per path."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.stop_event = threading.Event()
        server = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data = b""
                while b"\r\n\r\n" not in data:
                    more = self.request.recv(4096)
                    if not more:
                        return
                    data += more
                path = data.split(b" ", 2)[1].decode()
                server.requests.append(path)
                name = path.rsplit("/", 1)[-1]
                behaviour = next((b for n, b in BEHAVIOURS.items() if name == n or name.startswith(n + "~")), None)
                try:
                    if behaviour is None:
                        self.request.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                    else:
                        behaviour(self.request, server.stop_event)
                except OSError:
                    pass  # the client gave up: what is tested

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/keys"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.stop_event.set()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def key_server() -> Iterator[MisbehavingKeyServer]:
    server = MisbehavingKeyServer()
    yield server
    server.close()


def timed_fetch(fetcher: InstallKeyFetcher, kid: str) -> tuple[bytes | JwtError, float]:
    started = time.monotonic()
    try:
        result: bytes | JwtError = fetcher(kid)
    except JwtError as err:
        result = err
    return result, time.monotonic() - started


def test_a_well_behaved_key_server_gives_the_key(key_server):
    key, _ = timed_fetch(InstallKeyFetcher(key_server.url, timeout_s=SHORT_TIMEOUT_S), "ok")
    assert key == PEM


@pytest.mark.parametrize("behaviour", ["stall-after-headers", "drip", "drip-headers"])
def test_a_slow_key_server_is_cut_off_at_the_timeout_in_all(key_server, behaviour):
    fetcher = InstallKeyFetcher(key_server.url, timeout_s=SHORT_TIMEOUT_S)
    result, elapsed = timed_fetch(fetcher, behaviour)
    assert isinstance(result, JwtError), result
    assert elapsed < SHORT_TIMEOUT_S + 0.5, f"the fetch took {elapsed:.1f} s with a {SHORT_TIMEOUT_S} s timeout"
    # the failure is remembered (for a minute): the next install fails without asking again
    again, _ = timed_fetch(fetcher, behaviour)
    assert isinstance(again, JwtError) and str(again) == str(result)
    assert key_server.requests.count(f"/keys/{behaviour}") == 1


@pytest.mark.parametrize("behaviour", ["too-large", "endless-chunked", "cut-off", "garbage-status", "missing"])
def test_a_broken_or_oversized_answer_is_a_failed_fetch(key_server, behaviour):
    result, elapsed = timed_fetch(InstallKeyFetcher(key_server.url, timeout_s=SHORT_TIMEOUT_S), behaviour)
    assert isinstance(result, JwtError), result
    assert elapsed < SHORT_TIMEOUT_S + 0.5


def test_a_key_of_exactly_10_kb_is_accepted(key_server, monkeypatch):
    padded = PEM + b"\n" * (MAX_KEY_BYTES - len(PEM))
    monkeypatch.setitem(BEHAVIOURS, "exact", lambda conn, stop: conn.sendall(_headers(len(padded)) + padded))
    key, _ = timed_fetch(InstallKeyFetcher(key_server.url, timeout_s=SHORT_TIMEOUT_S), "exact")
    assert key == padded


def test_the_cache_keeps_the_64_most_recently_used_keys(key_server):
    assert CACHE_SIZE == 64
    fetcher = InstallKeyFetcher(key_server.url, timeout_s=SHORT_TIMEOUT_S)
    kids = [f"ok~{i}" for i in range(CACHE_SIZE + 1)]
    for kid in kids:
        assert fetcher(kid) == PEM
    assert len(key_server.requests) == CACHE_SIZE + 1
    for kid in kids[1:]:  # the 64 most recent: no fetch
        fetcher(kid)
    assert len(key_server.requests) == CACHE_SIZE + 1
    fetcher(kids[0])  # the oldest was dropped
    assert key_server.requests[-1] == f"/keys/{kids[0]}"
    assert len(key_server.requests) == CACHE_SIZE + 2


def test_installs_waiting_for_the_same_kid_share_one_fetch(key_server):
    fetcher = InstallKeyFetcher(key_server.url, timeout_s=SHORT_TIMEOUT_S)
    results: list[bytes] = []
    threads = [threading.Thread(target=lambda: results.append(fetcher("ok"))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [PEM] * 8
    assert key_server.requests == ["/keys/ok"]


@pytest.mark.parametrize("behaviour", ["stall-after-headers", "cut-off", "garbage-status"])
def test_an_install_whose_key_server_misbehaves_answers_401(atlassian, sqlite_url, key_server, behaviour):
    """Through the add-on as configured (the 5 s default timeout): 401, never 500, and no tenant."""
    addon = AddonServer(make_settings(atlassian, sqlite_url, install_keys_url=key_server.url), background=False)
    try:
        site = atlassian.new_site()
        token = atlassian.install_token(addon.url, "/lifecycle/installed", issuer=site.client_key, kid=behaviour)
        started = time.monotonic()
        response = requests.post(f"{addon.url}/lifecycle/installed", json=site.lifecycle_body(),
                                 headers={"Authorization": f"JWT {token}"}, timeout=30)
        elapsed = time.monotonic() - started
        assert response.status_code == 401, response.text
        assert response.json()["error"]["code"] == "unauthorized"
        assert elapsed < 6.0
        with addon.sessions() as session:
            assert session.scalar(select(Tenant).where(Tenant.client_key == site.client_key)) is None
    finally:
        addon.stop()


def test_a_failed_fetch_is_asked_again_once_its_minute_is_over(key_server):
    assert FAILURE_TTL_S == 60
    fetcher = InstallKeyFetcher(key_server.url, timeout_s=SHORT_TIMEOUT_S, failure_ttl_s=0.5)
    for _ in range(3):
        assert isinstance(timed_fetch(fetcher, "missing")[0], JwtError)
    assert key_server.requests == ["/keys/missing"]
    wait_for(lambda: isinstance(timed_fetch(fetcher, "missing")[0], JwtError) and len(key_server.requests) == 2,
             timeout=5, message="a second fetch once the failure is forgotten")


def test_failures_never_push_a_cached_key_out(key_server):
    fetcher = InstallKeyFetcher(key_server.url, timeout_s=SHORT_TIMEOUT_S, cache_size=2)
    assert fetcher("ok") == PEM
    for n in range(20):
        assert isinstance(timed_fetch(fetcher, f"missing~{n}")[0], JwtError)
    assert fetcher("ok") == PEM
    assert key_server.requests.count("/keys/ok") == 1


def _install(atlassian, addon_url: str, kid: str) -> int:
    site = atlassian.new_site()
    token = atlassian.install_token(addon_url, "/lifecycle/installed", issuer=site.client_key, kid=kid)
    return requests.post(f"{addon_url}/lifecycle/installed", json=site.lifecycle_body(),
                         headers={"Authorization": f"JWT {token}"}, timeout=30).status_code


def test_25_junk_installs_with_5_kids_make_5_fetches(atlassian, sqlite_url):
    addon = AddonServer(make_settings(atlassian, sqlite_url), background=False)
    try:
        kids = [f"made-up-{n}" for n in range(5)]
        assert [_install(atlassian, addon.url, kids[n % 5]) for n in range(25)] == [401] * 25
        assert sorted(k for k in atlassian.key_fetches if k.startswith("made-up-")) == kids
        assert _install(atlassian, addon.url, atlassian.current_kid) == 204  # a real key is fetched as ever
    finally:
        addon.stop()


def test_junk_whose_key_server_hangs_never_holds_a_known_kids_install(atlassian, sqlite_url):
    """Installs with made-up kids whose key server does not answer are waiting on their fetches; an install whose
    key is cached goes through meanwhile, without waiting for any of them."""
    addon = AddonServer(make_settings(atlassian, sqlite_url), background=False)
    gate = threading.Event()
    junk = [f"hanging-{n}" for n in range(6)]
    for kid in junk:
        atlassian.key_gates[kid] = gate
    try:
        assert _install(atlassian, addon.url, atlassian.current_kid) == 204  # its key is now cached
        answers: list[int] = []
        threads = [threading.Thread(target=lambda kid=kid: answers.append(_install(atlassian, addon.url, kid)))
                   for kid in junk]
        for thread in threads:
            thread.start()
        wait_for(lambda: set(junk) <= set(atlassian.key_fetches), timeout=10, message="every junk fetch started")
        for _ in range(3):
            assert _install(atlassian, addon.url, atlassian.current_kid) == 204
        assert answers == [] and all(thread.is_alive() for thread in threads)  # the junk still waits
        gate.set()
        for thread in threads:
            thread.join(30)
        assert answers == [401] * len(junk)
        assert atlassian.key_fetches.count(atlassian.current_kid) == 1
    finally:
        gate.set()
        addon.stop()
