"""The HTTPS sender against a real TLS receiver on 127.0.0.1 (CONTRACT §6.1, §6.3)."""

from __future__ import annotations

import concurrent.futures
import email.utils
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from addon.delivery.retry import is_retryable
from addon.sending import client as sender_module
from addon.sending.client import BODY_KEEP_BYTES, Sender, parse_retry_after
from addon.sending.signing import generate_secret, new_message_id, signature_headers
from tests.receivers import Receiver, ScriptedServer

BODY = b'{"data":{"event":"test","user":null,"timestamp":1,"project":{"id":1,"key":"K","name":"N"},"fields":[]}}'
UA = "projectrak-outgoing-webhooks/test"
MARGIN_S = 0.5  # scheduling slack allowed over a timeout


def static_resolver(table: dict[str, list[str]], calls: list[str] | None = None):
    """A getaddrinfo stand-in: `table` maps names to addresses; every lookup is appended to `calls`."""

    def resolve(host: str, port: int, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0):
        if calls is not None:
            calls.append(host)
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (a, port, 0, 0))
            if ":" in a
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in table[host]
        ]

    return resolve


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture
def sender(receiver: Receiver) -> Iterator[Sender]:
    with Sender(5.0, receiver.ca_path, True, UA) as s:
        yield s


def signed(secrets: list[str]) -> dict[str, str]:
    return signature_headers(new_message_id(), int(time.time()), BODY, secrets)


# -- success ------------------------------------------------------------------------------------------------


def test_delivers_a_signed_request(receiver: Receiver, sender: Sender) -> None:
    old, new = generate_secret(), generate_secret()
    headers = signed([new, old])
    result = sender.send(receiver.url("/ok"), BODY, headers)

    assert (result.ok, result.http_code, result.error, result.gone) == (True, 200, None, False)
    assert result.response_body_start == '{"received":true}'
    assert 0 <= result.duration_ms < 5000
    [request] = receiver.requests_for("/ok")
    assert request.method == "POST"
    assert request.body == BODY
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == UA
    assert request.headers["host"] == f"localhost:{receiver.port}"
    assert request.headers["webhook-id"] == headers["webhook-id"]
    assert request.sni == "localhost"
    # Both secrets of a rotation verify with the reference library, on what the receiver got.
    assert Receiver.verify(request, [old])["data"]["event"] == "test"
    assert Receiver.verify(request, [new])["data"]["event"] == "test"
    with pytest.raises(Exception, match="No matching signature"):
        Receiver.verify(request, [generate_secret()])


def test_sender_owns_framing_and_content_headers(receiver: Receiver, sender: Sender) -> None:
    headers = {"Content-Type": "text/plain", "Host": "evil.test", "User-Agent": "x", "X-Extra": "kept"}
    assert sender.send(receiver.url("/own-headers"), BODY, headers).ok
    [request] = receiver.requests_for("/own-headers")
    assert request.headers["content-type"] == "application/json"
    assert request.headers["host"] == f"localhost:{receiver.port}"
    assert request.headers["user-agent"] == UA
    assert request.headers["x-extra"] == "kept"
    assert request.headers["content-length"] == str(len(BODY))


def test_ip_literal_url(receiver: Receiver, sender: Sender) -> None:
    result = sender.send(f"https://127.0.0.1:{receiver.port}/literal", BODY, {})
    assert result.ok, result.error
    [request] = receiver.requests_for("/literal")
    assert request.sni is None  # no SNI for an IP; the certificate matched its IP SAN


def test_reuses_connections(receiver: Receiver, sender: Sender) -> None:
    for _ in range(5):
        assert sender.send(receiver.url("/reuse"), BODY, {}).ok
    ids = {r.connection_id for r in receiver.requests_for("/reuse")}
    assert len(ids) == 1


def test_connection_close_is_respected(receiver: Receiver, sender: Sender) -> None:
    receiver.behave("/close", close=True)
    for _ in range(3):
        assert sender.send(receiver.url("/close"), BODY, {}).ok
    assert len({r.connection_id for r in receiver.requests_for("/close")}) == 3


def test_a_connection_the_server_dropped_is_replaced(receiver: Receiver, sender: Sender) -> None:
    receiver.behave("/hang-up", hang_up=True)
    for _ in range(4):
        result = sender.send(receiver.url("/hang-up"), BODY, {})
        assert result.ok, result.error
    assert len({r.connection_id for r in receiver.requests_for("/hang-up")}) == 4


def test_a_connection_closed_after_the_liveness_check_is_retried_once(
    receiver: Receiver, sender: Sender, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server may close a kept-alive connection just after the pool checked it: make every check pass
    # so that the request is written to a closed connection and the one retry on a new connection runs.
    monkeypatch.setattr(sender_module._Http11Connection, "is_alive", lambda self: True)
    receiver.behave("/race", hang_up=True)
    for _ in range(3):
        result = sender.send(receiver.url("/race"), BODY, {})
        assert result.ok, result.error
    assert len({r.connection_id for r in receiver.requests_for("/race")}) == 3


def test_concurrent_sends_share_a_bounded_set_of_connections(receiver: Receiver, sender: Sender) -> None:
    opened_before = receiver.connections_opened
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: sender.send(receiver.url("/many"), BODY, {}), range(200)))
    assert all(r.ok for r in results), {r.error for r in results}
    assert len(receiver.requests_for("/many")) == 200
    assert receiver.connections_opened - opened_before <= 8


def test_close_lets_running_attempts_finish(receiver: Receiver) -> None:
    receiver.behave("/closing", delay_s=0.5)
    sender = Sender(5.0, receiver.ca_path, True, UA)
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        running = [pool.submit(sender.send, receiver.url("/closing"), BODY, {}) for _ in range(3)]
        time.sleep(0.2)
        sender.close()
        results = [f.result(timeout=5) for f in running]
    assert all(r.ok for r in results), [r.error for r in results]
    with pytest.raises(RuntimeError, match="closed"):
        sender.send(receiver.url("/closing"), BODY, {})


# -- name, address and certificate --------------------------------------------------------------------------


def test_connects_to_the_resolved_address_with_sni_and_cert_for_the_name(receiver: Receiver) -> None:
    calls: list[str] = []
    resolve = static_resolver({"receiver.test": ["127.0.0.1"]}, calls)
    with Sender(5.0, receiver.ca_path, True, UA, resolve=resolve) as sender:
        result = sender.send(f"https://receiver.test:{receiver.port}/by-name", BODY, {})
    assert result.ok, result.error
    assert calls == ["receiver.test"]  # one lookup: the address checked is the address used
    [request] = receiver.requests_for("/by-name")
    assert request.sni == "receiver.test"
    assert request.headers["host"] == f"receiver.test:{receiver.port}"


def test_certificate_is_checked_against_the_name_not_the_ip(receiver: Receiver) -> None:
    # The certificate is valid for 127.0.0.1, the address connected to, but not for the name in the URL.
    resolve = static_resolver({"other.test": ["127.0.0.1"]})
    with Sender(5.0, receiver.ca_path, True, UA, resolve=resolve) as sender:
        result = sender.send(f"https://other.test:{receiver.port}/mismatch", BODY, {})
    assert (result.ok, result.http_code) == (False, None)
    assert result.error is not None and result.error.startswith("TLS certificate verify failed")
    assert "other.test" in result.error
    assert receiver.requests_for("/mismatch") == []


def test_untrusted_certificate_is_refused(receiver: Receiver) -> None:
    with Sender(5.0, None, True, UA) as sender:
        result = sender.send(receiver.url("/untrusted"), BODY, {})
    assert (result.ok, result.http_code) == (False, None)
    assert result.error == "TLS certificate verify failed: unable to get local issuer certificate"
    assert is_retryable(result)
    assert receiver.requests_for("/untrusted") == []


def test_requests_ca_bundle_is_not_read(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    # This machine sets REQUESTS_CA_BUNDLE; pointing it (and proxies) at anything must change nothing.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", receiver.ca_path)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    with Sender(5.0, None, True, UA) as sender:
        assert sender.send(receiver.url("/env"), BODY, {}).error == (
            "TLS certificate verify failed: unable to get local issuer certificate"
        )
    with Sender(5.0, receiver.ca_path, True, UA) as sender:
        assert sender.send(receiver.url("/env"), BODY, {}).ok


def test_body_must_be_bytes(sender: Sender, receiver: Receiver) -> None:
    with pytest.raises(TypeError):
        sender.send(receiver.url("/str"), BODY.decode(), {})  # type: ignore[arg-type]


def test_certificate_from_another_ca_is_refused(receiver: Receiver) -> None:
    with Receiver() as stranger, Sender(5.0, stranger.ca_path, True, UA) as sender:
        result = sender.send(receiver.url("/other-ca"), BODY, {})
    assert result.error is not None and result.error.startswith("TLS certificate verify failed")


def test_tries_the_next_checked_address_when_one_refuses(receiver: Receiver) -> None:
    # Nothing listens on 127.0.0.2 at the receiver's port: the first address refuses, the second answers.
    resolve = static_resolver({"receiver.test": ["127.0.0.2", "127.0.0.1"]})
    with Sender(5.0, receiver.ca_path, True, UA, resolve=resolve) as sender:
        result = sender.send(f"https://receiver.test:{receiver.port}/failover", BODY, {})
    assert result.ok, result.error
    assert len(receiver.requests_for("/failover")) == 1


def test_dns_answers_are_cached_briefly(receiver: Receiver) -> None:
    calls: list[str] = []
    resolve = static_resolver({"receiver.test": ["127.0.0.1"]}, calls)
    url = f"https://receiver.test:{receiver.port}/dns-cache"
    with Sender(5.0, receiver.ca_path, True, UA, resolve=resolve) as sender:
        assert sender.send(url, BODY, {}).ok and sender.send(url, BODY, {}).ok
    assert calls == ["receiver.test"]
    with Sender(5.0, receiver.ca_path, True, UA, resolve=resolve, dns_cache_s=0) as sender:
        assert sender.send(url, BODY, {}).ok and sender.send(url, BODY, {}).ok
    assert calls == ["receiver.test"] * 3


def test_unresolvable_host(receiver: Receiver) -> None:
    with Sender(5.0, receiver.ca_path, False, UA, resolve=static_resolver({})) as sender:
        result = sender.send("https://nowhere.test/hook", BODY, {})
    assert (result.ok, result.http_code, result.error) == (False, None, "could not resolve host nowhere.test")
    assert is_retryable(result)


def test_connection_refused(receiver: Receiver) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    with Sender(5.0, receiver.ca_path, True, UA) as sender:
        result = sender.send(f"https://localhost:{free_port}/", BODY, {})
    assert (result.ok, result.http_code, result.error) == (False, None, "connection refused")


# -- answers ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status, retryable", [(500, True), (503, True), (404, False), (400, False)])
def test_error_statuses(receiver: Receiver, sender: Sender, status: int, retryable: bool) -> None:
    path = f"/status-{status}"
    receiver.behave(path, status=status, body=b"nope")
    result = sender.send(receiver.url(path), BODY, {})
    assert (result.ok, result.http_code, result.error) == (False, status, f"HTTP {status}")
    assert result.response_body_start == "nope"
    assert not result.gone
    assert is_retryable(result) is retryable


def test_gone(receiver: Receiver, sender: Sender) -> None:
    receiver.behave("/gone", status=410)
    result = sender.send(receiver.url("/gone"), BODY, {})
    assert (result.ok, result.http_code, result.gone) == (False, 410, True)
    assert not is_retryable(result)


def test_redirects_are_not_followed(receiver: Receiver, sender: Sender) -> None:
    receiver.behave("/moved", redirect_to=receiver.url("/moved-target"))
    result = sender.send(receiver.url("/moved"), BODY, {})
    assert (result.ok, result.http_code) == (False, 301)
    assert result.error == f"HTTP 301, redirect to {receiver.url('/moved-target')} not followed"
    assert receiver.requests_for("/moved-target") == []
    assert not is_retryable(result)


def test_retry_after_seconds(receiver: Receiver, sender: Sender) -> None:
    receiver.behave("/busy", status=429, headers={"Retry-After": "120"})
    result = sender.send(receiver.url("/busy"), BODY, {})
    assert (result.http_code, result.retry_after_s) == (429, 120.0)


def test_retry_after_http_date(receiver: Receiver, sender: Sender) -> None:
    when = email.utils.formatdate(time.time() + 600, usegmt=True)
    receiver.behave("/unavailable", status=503, headers={"Retry-After": when})
    result = sender.send(receiver.url("/unavailable"), BODY, {})
    assert result.http_code == 503
    assert result.retry_after_s == pytest.approx(600, abs=5)


def test_parse_retry_after() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after(" 0 ", now) == 0.0
    assert parse_retry_after(email.utils.formatdate(now + 90, usegmt=True), now) == pytest.approx(90)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now) == 0.0  # in the past
    for bad in (None, "", "soon", "-5", "1.5", "99999999999", "Wed, 99 Foo 2015"):
        assert parse_retry_after(bad, now) is None


def test_only_the_start_of_a_large_answer_is_kept(receiver: Receiver, sender: Sender) -> None:
    receiver.behave("/big", body_size=1_000_000)
    result = sender.send(receiver.url("/big"), BODY, {})
    assert result.ok
    assert result.response_body_start == "x" * BODY_KEEP_BYTES
    # The rest was not drained: that connection was closed rather than reused.
    assert sender.send(receiver.url("/after-big"), BODY, {}).ok
    [big] = receiver.requests_for("/big")
    [after] = receiver.requests_for("/after-big")
    assert big.connection_id != after.connection_id


def test_non_utf8_answer_is_replaced(receiver: Receiver, sender: Sender) -> None:
    receiver.behave("/latin1", status=400, body="señal".encode("latin-1"))
    assert sender.send(receiver.url("/latin1"), BODY, {}).response_body_start == "se\ufffdal"


# -- answers a tidy receiver never gives --------------------------------------------------------------------


@pytest.fixture
def scripted(receiver: Receiver) -> Iterator[Callable[..., ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(*answers: bytes, close_after: bool = False) -> ScriptedServer:
        servers.append(ScriptedServer(receiver.ca, answers, close_after=close_after))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_an_interim_1xx_answer_is_passed_over(scripted, sender: Sender) -> None:
    server = scripted(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nRetry-After: 7\r\n"
                      b"Content-Length: 2\r\n\r\nok",
                      b"HTTP/1.1 204 No Content\r\n\r\n")
    first = sender.send(server.url(), BODY, {})
    assert (first.ok, first.http_code, first.response_body_start, first.retry_after_s) == (True, 201, "ok", 7.0)
    assert sender.send(server.url(), BODY, {}).http_code == 204
    assert server.connections == 1  # the answer was read to its end: the connection was kept


def test_a_chunked_answer_is_read_to_its_end(scripted, sender: Sender) -> None:
    server = scripted(b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
                      b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    result = sender.send(server.url(), BODY, {})
    assert (result.ok, result.http_code, result.response_body_start) == (False, 500, "hello world")
    assert sender.send(server.url(), BODY, {}).ok
    assert server.connections == 1


def test_an_answer_that_ends_with_the_connection(scripted, sender: Sender) -> None:
    server = scripted(b"HTTP/1.1 200 OK\r\n\r\nuntil the end", b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n",
                      close_after=True)
    result = sender.send(server.url(), BODY, {})
    assert (result.ok, result.response_body_start) == (True, "until the end")
    assert sender.send(server.url(), BODY, {}).http_code == 202
    assert server.connections == 2


@pytest.mark.parametrize("answer", [b"NOT HTTP AT ALL\r\n\r\n", b"HTTP/1.1 abc Nope\r\n\r\n",
                                    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
                                    b"HTTP/1.1 200 OK\r\n" + b"X-Filler: " + b"y" * 70_000 + b"\r\n\r\n"])
def test_what_is_not_an_http_answer_is_an_error_without_a_status(scripted, sender: Sender, answer: bytes) -> None:
    result = sender.send(scripted(answer).url(), BODY, {})
    assert not result.ok and result.http_code is None
    assert result.error is not None and result.error.startswith("invalid HTTP response")


def test_an_answer_cut_in_its_head_is_an_error(scripted, sender: Sender) -> None:
    result = sender.send(scripted(b"HTTP/1.1 200 OK\r\nContent-", close_after=True).url(), BODY, {})
    assert (result.http_code, result.error) == (None, "invalid HTTP response (closed in the middle of its head)")


@pytest.mark.parametrize("url_path, headers", [("/a\r\nX-Injected: 1", {}),
                                                ("/ok", {"webhook-id": "msg_1\r\nX-Injected: 1"}),
                                                ("/ok", {"bad name": "1"})])
def test_nothing_from_a_url_or_a_header_can_split_the_request(receiver: Receiver, sender: Sender, url_path: str,
                                                               headers: dict[str, str]) -> None:
    result = sender.send(receiver.url("/split") + url_path, BODY, headers)
    assert not result.ok and result.http_code is None and result.error
    assert receiver.requests_for("/split" + url_path) == [] and receiver.requests_for("/split/ok") == []


# -- the time budget ----------------------------------------------------------------------------------------


def timed_send(sender: Sender, url: str) -> tuple[float, object]:
    start = time.monotonic()
    result = sender.send(url, BODY, {})
    return time.monotonic() - start, result


def test_slow_receiver_times_out(receiver: Receiver) -> None:
    receiver.behave("/slow", delay_s=10)
    with Sender(1.0, receiver.ca_path, True, UA) as sender:
        elapsed, result = timed_send(sender, receiver.url("/slow"))
    assert (result.ok, result.http_code, result.error) == (False, None, "timeout after 1.0 s")
    assert 1.0 <= elapsed < 1.0 + MARGIN_S
    assert 1000 <= result.duration_ms < 1000 + MARGIN_S * 1000
    assert is_retryable(result)


def test_headers_dripped_byte_by_byte_cannot_stretch_the_attempt(receiver: Receiver) -> None:
    # Each byte comes well within any per-read timeout; only a whole-attempt deadline stops this.
    receiver.behave("/drip", drip_s=0.05)
    with Sender(1.0, receiver.ca_path, True, UA) as sender:
        elapsed, result = timed_send(sender, receiver.url("/drip"))
    assert (result.ok, result.http_code, result.error) == (False, None, "timeout after 1.0 s")
    assert elapsed < 1.0 + MARGIN_S


@pytest.mark.parametrize("close", [False, True], ids=["keep-alive", "connection-close"])
def test_slow_body_is_cut_at_the_deadline(receiver: Receiver, close: bool) -> None:
    # The answer's head comes in time, its body drips: the deadline ends the reading (also after the server said
    # `Connection: close`), and the connection is not reused.
    path = "/slow-body-close" if close else "/slow-body"
    receiver.behave(path, close=close, body_size=1000, body_chunk=10, body_drip_s=0.2)
    with Sender(1.0, receiver.ca_path, True, UA) as sender:
        elapsed, result = timed_send(sender, receiver.url(path))
        assert elapsed < 1.0 + MARGIN_S
        # The receiver did answer 200 in time: that is the outcome, with what of the body came.
        assert (result.ok, result.http_code) == (True, 200)
        assert 0 < len(result.response_body_start) < 1000
        assert sender.send(receiver.url(f"{path}-after"), BODY, {}).ok
    [slow] = receiver.requests_for(path)
    [after] = receiver.requests_for(f"{path}-after")
    assert slow.connection_id != after.connection_id


def test_slow_dns_counts_against_the_budget(receiver: Receiver) -> None:
    release = threading.Event()

    def stuck_resolver(host: str, port: int, **_: object):
        release.wait(10)  # a resolver that does not answer (a fake network peer)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    try:
        with Sender(1.0, receiver.ca_path, False, UA, resolve=stuck_resolver) as sender:
            elapsed, result = timed_send(sender, "https://slow-dns.test/hook")
        assert result.error == "timeout after 1.0 s"
        assert elapsed < 1.0 + MARGIN_S
    finally:
        release.set()


# -- SSRF at send time ---------------------------------------------------------------------------------------


def ssrf_urls(port: int) -> list[tuple[str, str]]:
    """(url, expected error) pairs that must never reach a socket when private networks are not allowed."""
    blocked = [
        ("127.0.0.1", "127.0.0.1"),
        ("10.0.0.1", "10.0.0.1"),
        ("172.16.0.1", "172.16.0.1"),
        ("192.168.1.1", "192.168.1.1"),
        ("169.254.169.254", "169.254.169.254"),
        ("100.64.0.1", "100.64.0.1"),
        ("0.0.0.0", "0.0.0.0"),
        ("[::1]", "::1"),
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
        ("[::ffff:7f00:1]", "::ffff:7f00:1"),
        ("[2002:7f00:1::]", "2002:7f00:1::"),
        ("[64:ff9b::7f00:1]", "64:ff9b::7f00:1"),
        ("[fe80::1]", "fe80::1"),
        ("[fc00::1]", "fc00::1"),
        ("192.0.2.1", "192.0.2.1"),
        ("224.0.0.1", "224.0.0.1"),
        ("localhost", "127.0.0.1"),  # through the real resolver: the DNS answer is what is checked
    ]
    out = [(f"https://{host}:{port}/ssrf", f"blocked private address {ip}") for host, ip in blocked]
    out += [
        (f"https://2130706433:{port}/ssrf", "invalid URL"),
        (f"https://127.1:{port}/ssrf", "invalid URL"),
        (f"https://0x7f000001:{port}/ssrf", "invalid URL"),
        (f"http://localhost:{port}/ssrf", "invalid URL"),
        (f"https://user@localhost:{port}/ssrf", "invalid URL"),
    ]
    return out


def test_ssrf_matrix_is_refused_at_send_time(receiver: Receiver) -> None:
    with Sender(2.0, receiver.ca_path, False, UA) as sender:
        for url, expected in ssrf_urls(receiver.port):
            result = sender.send(url, BODY, {})
            assert (result.ok, result.http_code) == (False, None), url
            assert result.error is not None and result.error.startswith(expected), (url, result.error)
    assert receiver.requests_for("/ssrf") == []


@pytest.mark.parametrize(
    "answer, blocked",
    [
        (["127.0.0.1"], "127.0.0.1"),
        (["10.0.0.7"], "10.0.0.7"),
        (["169.254.169.254"], "169.254.169.254"),
        (["93.184.216.34", "127.0.0.1"], "127.0.0.1"),  # one bad address in the answer refuses them all
        (["::ffff:127.0.0.1"], "::ffff:7f00:1"),
    ],
)
def test_a_name_resolving_to_a_private_address_is_refused(receiver: Receiver, answer: list[str], blocked: str) -> None:
    resolve = static_resolver({"receiver.test": answer})
    with Sender(2.0, receiver.ca_path, False, UA, resolve=resolve) as sender:
        result = sender.send(f"https://receiver.test:{receiver.port}/ssrf-dns", BODY, {})
    assert result.error == f"blocked private address {blocked}"
    assert receiver.requests_for("/ssrf-dns") == []
