"""One webhook delivery attempt over HTTPS (CONTRACT §6.1, §6.3), safe against SSRF and bounded in time.

An attempt resolves the host once, checks every resolved address with the address policy, and connects, in
resolver order, only to those checked addresses: the TCP socket is pinned to an IP while SNI, the certificate
check and the `Host` header use the host name. There is no second lookup between the check and the
connection, so DNS rebinding cannot slip a private address in. Redirects are not followed.

Every attempt of a `Sender` runs on one asyncio event loop in a thread of its own, speaking HTTP/1.1 (answers
parsed by `httptools`): a worker keeps dozens of attempts in flight without a thread each (threads cost the
worker a dozen context switches per delivery, queueing for the GIL at every socket call; see
docs/benchmarks.md). Callers in other threads use `send` (blocking) or `submit` (a callback on the loop's
thread).

The whole attempt (DNS, connect, TLS, sending, reading the answer) is bounded by `timeout_s` of wall-clock
time: DNS runs on a few daemon threads and is waited for at most the remaining budget (answers are reused
for `dns_cache_s`), and every step awaits at most what is left, so that a receiver dripping one byte at a
time cannot stretch an attempt. Only the first bytes of an answer are kept and at most `BODY_READ_LIMIT` are
read; a connection whose answer was not read to its end is closed, the others are kept for the next attempt
to the same (host, port, address), and a kept connection found closed by the server is replaced once,
transparently.

Trust: the system CAs (OpenSSL's default paths, or certifi's bundle where the system has none) plus the
extra CAs of `ca_bundle`. Nothing is read from `REQUESTS_CA_BUNDLE` or proxy variables.
"""

from __future__ import annotations

import asyncio
import codecs
import concurrent.futures
import errno
import functools
import logging
import queue
import re
import socket
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httptools

from addon.sending.addresses import (
    IPAddress,
    LocalTargets,
    Resolver,
    Target,
    UrlRejected,
    first_blocked,
    parse_target,
    resolve_addresses,
)
from addon.web.errors import exception_chain

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Bytes of the answer kept in `SendResult.response_body_start`.
BODY_KEEP_BYTES = 2048
#: Most bytes of an answer's body read; a longer body closes the connection instead of being drained.
BODY_READ_LIMIT = 64 * 1024
#: Most bytes of an answer's head (status line and fields) read before it counts as invalid.
HEAD_READ_LIMIT = 64 * 1024
#: The answer's fields the sender uses.
_KEPT_FIELDS = frozenset({b"location", b"retry-after"})
#: What may go into a request's head (RFC 9110 tokens and visible field values); anything else is refused
#: rather than written, so nothing from a stored URL or a header can split the request.
_FIELD_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FIELD_VALUE = re.compile(r"[\x21-\x7e]+(?:[ \t]+[\x21-\x7e]+)*|")
_REQUEST_TARGET = re.compile(r"/[\x21-\x7e]*")
#: Headers the sender owns; a caller's values for them are dropped.
_OWN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "user-agent", "content-type"})


#: Each attempt parses its webhook's URL (it may have changed since the last one); the same few URLs over and over.
_parsed_target = functools.lru_cache(maxsize=4096)(parse_target)


@dataclass(frozen=True)
class SendResult:
    """The outcome of one attempt.

    `ok` is a 2xx answer. `http_code` is None when no answer came (then `error` says why: timeout,
    refused, TLS, blocked address...). `error` is None exactly when `ok`; for a non-2xx answer it is a
    short description such as `HTTP 503` or `HTTP 301, redirect to … not followed`.
    """

    ok: bool
    http_code: int | None
    error: str | None
    duration_ms: int
    response_body_start: str | None = None
    retry_after_s: float | None = None
    gone: bool = False


_RETRY_AFTER_SECONDS = re.compile(r"^[0-9]{1,10}$")


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` value (delay-seconds or an HTTP date); None if absent or invalid."""
    if value is None:
        return None
    value = value.strip()
    if _RETRY_AFTER_SECONDS.match(value):
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # HTTP dates are GMT
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def build_ssl_context(ca_bundle: str | None) -> ssl.SSLContext:
    """A client context trusting the system CAs plus those in `ca_bundle`, verifying host names, TLS ≥ 1.2."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_default_certs()
    if not context.cert_store_stats().get("x509_ca"):
        try:
            import certifi
        except ImportError:  # pragma: no cover - certifi comes with requests
            pass
        else:
            context.load_verify_locations(cafile=certifi.where())
    if ca_bundle:
        context.load_verify_locations(cafile=ca_bundle)
    context.set_alpn_protocols(["http/1.1"])
    return context


class _DeadlineExceeded(Exception):
    """The attempt's wall-clock budget ran out."""


class ClosedWithoutAnswer(ConnectionError):
    """The server closed the connection before the first byte of an answer."""


class _Lookups:
    """DNS lookups on a few daemon threads, so that an attempt can stop waiting at its deadline, with a short
    cache of successful answers.

    getaddrinfo cannot be interrupted; a lookup that outlives its attempt finishes unobserved. The threads
    are daemons so that a stuck resolver never holds up the process's exit. Caching is safe against DNS
    rebinding because the address policy is applied on every send to exactly the addresses connected to;
    it only means an address change is seen up to `cache_s` late (failures are never cached).
    """

    def __init__(self, resolve: Resolver, threads: int, cache_s: float, cache_size: int = 1024) -> None:
        self._resolve = resolve
        self._cache: OrderedDict[tuple[str, int], tuple[float, list[IPAddress]]] = OrderedDict()
        self._cache_s = cache_s
        self._cache_size = cache_size
        self._jobs: queue.SimpleQueue[tuple[concurrent.futures.Future[list[IPAddress]], str, int] | None]
        self._jobs = queue.SimpleQueue()
        self._size = threads
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False

    async def lookup(self, host: str, port: int) -> list[IPAddress]:
        """The addresses of `host`; raises OSError if it has none. The caller bounds the wait."""
        key = (host, port)
        with self._lock:
            if self._closed:
                raise RuntimeError("the sender is closed")
            cached = self._cache.get(key)
            if cached is not None:
                if cached[0] > time.monotonic():
                    return list(cached[1])
                del self._cache[key]
            if len(self._threads) < self._size:
                thread = threading.Thread(target=self._run, name="webhook-dns", daemon=True)
                thread.start()
                self._threads.append(thread)
        future: concurrent.futures.Future[list[IPAddress]] = concurrent.futures.Future()
        self._jobs.put((future, host, port))
        addresses = await asyncio.wrap_future(future)
        if self._cache_s > 0:
            with self._lock:
                self._cache[key] = (time.monotonic() + self._cache_s, list(addresses))
                self._cache.move_to_end(key)
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return addresses

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, host, port = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(resolve_addresses(host, port, self._resolve))
            except BaseException as exc:  # handed to the waiting attempt
                future.set_exception(exc)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            count = len(self._threads)
        for _ in range(count):
            self._jobs.put(None)


class InvalidAnswer(Exception):
    """The server's bytes are not an HTTP/1.1 answer (or its head is beyond `HEAD_READ_LIMIT`)."""


class _Http11Connection(asyncio.Protocol):
    """One TLS connection to one checked address, speaking HTTP/1.1: requests written by `Sender._request_head`,
    answers parsed by `httptools` (llhttp, Node's parser) through its callbacks below.

    Lives on the sender's loop only. Bytes that arrive are parsed at once and wake the attempt waiting for
    them; a connection that receives anything while idle, or that the server closed, is no longer alive.
    """

    def __init__(self, key: tuple[str, int, IPAddress]) -> None:
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._busy = False
        self._spoiled = False  # data arrived unasked: the next answer could not be told apart
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[None] | None = None
        self._new_answer()

    def _new_answer(self) -> None:
        self._received = 0  # bytes of the current answer so far
        self._fields: dict[bytes, bytes] = {}  # Location and Retry-After of the message being parsed
        self._head_bytes = 0  # the size of its fields
        self.status: int | None = None  # the final (not 1xx) answer's, once its head is complete
        self.location: bytes | None = None
        self.retry_after: bytes | None = None
        self._body: list[bytes] = []  # body bytes not yet taken by `read_body`
        self._body_bytes = 0
        self.complete = False  # the final answer was read to its end
        self._keep_alive = False  # ... and the server keeps the connection open after it
        self._error: Exception | None = None

    # -- asyncio.Protocol ----------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self._busy or self.complete:
            self._spoiled = True
            return
        self._received += len(data)
        if self._error is None:
            try:
                self._parser.feed_data(data)
            except httptools.HttpParserError as exc:  # HttpParserUpgrade (a 101) is one too
                self._error = InvalidAnswer(f"invalid HTTP response ({type(exc).__name__})")
            if self.status is None and self._received > HEAD_READ_LIMIT and self._error is None:
                self._error = InvalidAnswer("invalid HTTP response (head over 64 KiB)")
        self._wake()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake()
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- httptools' callbacks (inside `feed_data`) ------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.complete:
            self._spoiled = True  # a second answer to one request
        self._fields = {}
        self._head_bytes = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        name = name.lower()
        if name in _KEPT_FIELDS:
            self._fields[name] = value

    def on_headers_complete(self) -> None:
        if self._head_bytes > HEAD_READ_LIMIT:
            self._error = InvalidAnswer("invalid HTTP response (head over 64 KiB)")
            return
        status = self._parser.get_status_code()
        if status < 200 or self.status is not None:
            return  # 1xx: the real answer follows (or bytes after it, see on_message_begin)
        self.status = status
        self.location = self._fields.get(b"location")
        self.retry_after = self._fields.get(b"retry-after")

    def on_body(self, body: bytes) -> None:
        if self.status is not None and not self.complete and self._body_bytes < BODY_READ_LIMIT:
            self._body.append(body)
            self._body_bytes += len(body)

    def on_message_complete(self) -> None:
        if self.status is not None and not self.complete:
            self.complete = True
            self._keep_alive = self._parser.should_keep_alive()  # only known until the parser moves on

    # -- the attempt's side ----------------------------------------------------------------------------------

    def is_alive(self) -> bool:
        """False when the server has closed an idle connection (or sent something nobody asked for)."""
        return not self.closed and not self._spoiled and self.transport is not None \
            and not self.transport.is_closing()

    def close(self) -> None:
        """Drop the connection at once (no TLS close_notify to wait for, as a closed socket would)."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def write_request(self, head: bytes, body: bytes) -> None:
        """The head and the body in one write: one TLS record where they fit."""
        assert self.transport is not None
        self._new_answer()
        self._busy = True
        self.transport.write(head + body)

    async def _more(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        await self._waiter

    async def read_head(self) -> tuple[int, bytes | None, bytes | None]:
        """The final answer's status, `Location` and `Retry-After` (1xx answers are passed over)."""
        while self.status is None:
            if self._error is not None:
                raise self._error
            if self.closed:
                if self._received == 0:
                    raise ClosedWithoutAnswer("connection closed without a response")
                raise InvalidAnswer("invalid HTTP response (closed in the middle of its head)")
            await self._more()
        return self.status, self.location, self.retry_after

    async def read_body(self, kept: bytearray) -> bool:
        """Read the body, keeping its first `BODY_KEEP_BYTES` in `kept`; True when it was read to its end (then
        the connection may be reused), False after `BODY_READ_LIMIT` bytes, a parse error or a close."""
        while True:
            for chunk in self._body:
                if len(kept) < BODY_KEEP_BYTES:
                    kept += chunk[: BODY_KEEP_BYTES - len(kept)]
            self._body.clear()
            if self.complete:
                return True
            if self._body_bytes >= BODY_READ_LIMIT or self._error is not None or self.closed:
                return False  # a body that ends with the connection is not a reusable one either
            await self._more()

    def finish_cycle(self) -> bool:
        """After an answer read to its end: ready for the next request on this connection?"""
        self._busy = False
        return not self.closed and not self._spoiled and self.complete and self._keep_alive


class _IdleConnections:
    """Idle keep-alive connections keyed by (host, port, address), bounded in total, least recently used
    evicted first. Used on the sender's loop only; a connection is in here or in the hands of one attempt."""

    def __init__(self, max_total: int, max_idle_s: float) -> None:
        self._idle: OrderedDict[tuple[str, int, IPAddress], list[_Http11Connection]] = OrderedDict()
        self._count = 0
        self._max_total = max_total
        self._max_idle_s = max_idle_s

    def take(self, key: tuple[str, int, IPAddress]) -> _Http11Connection | None:
        while True:
            entries = self._idle.get(key)
            if not entries:
                return None
            conn = entries.pop()
            self._count -= 1
            if time.monotonic() - conn.idle_since > self._max_idle_s:
                for old in [conn, *entries]:  # the newest is too old: so are the rest
                    old.close()
                self._count -= len(entries)
                entries.clear()
            if not entries:
                del self._idle[key]
            if conn.is_alive():
                return conn
            conn.close()

    def put(self, conn: _Http11Connection) -> None:
        now = time.monotonic()
        conn.idle_since = now
        self._idle.setdefault(conn.key, []).append(conn)
        self._idle.move_to_end(conn.key)
        self._count += 1
        while self._idle:
            oldest_key = next(iter(self._idle))
            entries = self._idle[oldest_key]
            if self._count <= self._max_total and now - entries[0].idle_since <= self._max_idle_s:
                break
            entries.pop(0).close()
            self._count -= 1
            if not entries:
                del self._idle[oldest_key]

    def close(self) -> None:
        conns = [c for entries in self._idle.values() for c in entries]
        self._idle.clear()
        self._count = 0
        for conn in conns:
            conn.close()


_STALE_ERRORS = (
    ClosedWithoutAnswer,
    ConnectionResetError,
    ConnectionAbortedError,
    BrokenPipeError,
    ssl.SSLEOFError,
    ssl.SSLZeroReturnError,
)

#: Called on the sender's loop with the outcome of a submitted attempt.
Done = Callable[[SendResult], None]


class Sender:
    """Sends webhook requests from one event-loop thread; one instance is shared by a whole process.

    `timeout_s` bounds each attempt as a whole; `ca_bundle` is a PEM file of extra trusted CAs;
    `allow_private` skips the address policy (local development and tests); `resolve` is a
    getaddrinfo-compatible resolver (injectable for tests), whose answers are reused for `dns_cache_s`.
    Idle keep-alive connections: at most `max_idle_connections`, each kept at most `idle_timeout_s`.
    """

    def __init__(
        self,
        timeout_s: float,
        ca_bundle: str | None,
        allow_private: bool,
        user_agent: str,
        *,
        resolve: Resolver = socket.getaddrinfo,
        max_idle_connections: int = 256,
        idle_timeout_s: float = 30.0,
        dns_threads: int = 8,
        dns_cache_s: float = 30.0,
        local_targets: LocalTargets = frozenset(),
    ) -> None:
        if not timeout_s > 0:
            raise ValueError("timeout_s must be positive")
        self.timeout_s = float(timeout_s)
        self.allow_private = allow_private
        self.local_targets = local_targets  # exact (host, port) pairs the policy lets through (`addon demo`'s)
        self.user_agent = user_agent
        self._ssl_context = build_ssl_context(ca_bundle)
        self._idle = _IdleConnections(max_idle_connections, idle_timeout_s)
        self._lookups = _Lookups(resolve, dns_threads, dns_cache_s)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closing = False
        self._tasks: set[asyncio.Task[None]] = set()  # submitted attempts (the loop keeps only weak references)

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- entry points for other threads ------------------------------------------------------------------------

    def send(self, url: str, body: bytes, headers: Mapping[str, str]) -> SendResult:
        """POST `body` to `url` with `headers` (plus `User-Agent` and `Content-Type: application/json`) and wait
        for the outcome. Never raises for anything the network or the receiver does: every outcome is a
        `SendResult`. Not to be called on the sender's own loop (use `attempt` there)."""
        _check_body(body)
        return self.run(self.attempt(url, body, headers))

    def submit(self, attempts: Sequence[tuple[str, bytes, Mapping[str, str], Done]]) -> None:
        """Start attempts without waiting: each `(url, body, headers, done)` calls `done(result)` on the sender's
        loop thread when it ends (`done` must be quick and must not block). One wake-up of the loop per call."""
        for _, body, _, _ in attempts:
            _check_body(body)
        self._ensure_loop().call_soon_threadsafe(self._start_all, list(attempts))

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the sender's loop (e.g. one awaiting `attempt`) and wait for its result."""
        try:
            loop = self._ensure_loop()
            if threading.current_thread() is self._thread:
                raise RuntimeError("Sender.run would wait for its own loop")
        except BaseException:
            coroutine.close()
            raise
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result()

    def close(self) -> None:
        """Close idle connections and stop the loop once the attempts still running have ended (at most
        `timeout_s` later); does not wait for them."""
        with self._lock:
            self._closing = True
            loop = self._loop
        self._lookups.close()
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._close_on_loop)
            except RuntimeError:  # the loop already ended
                pass

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._closing:
                raise RuntimeError("the sender is closed")
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._loop.set_exception_handler(_quiet_exception_handler)
                self._thread = threading.Thread(target=self._run_loop, args=(self._loop,), name="webhook-sender",
                                                daemon=True)
                self._thread.start()
            return self._loop

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            loop.close()

    # -- on the loop -----------------------------------------------------------------------------------------

    def _start_all(self, attempts: list[tuple[str, bytes, Mapping[str, str], Done]]) -> None:
        loop = asyncio.get_running_loop()
        for url, body, headers, done in attempts:
            task = loop.create_task(self._attempt_then(url, body, headers, done))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _attempt_then(self, url: str, body: bytes, headers: Mapping[str, str], done: Done) -> None:
        result = await self.attempt(url, body, headers)
        try:
            done(result)
        except Exception:  # noqa: BLE001 - a caller's bug must not stop the loop
            log.exception("a delivery callback failed")

    def _close_on_loop(self) -> None:
        self._idle.close()
        self._stop_if_idle()

    def _stop_if_idle(self) -> None:
        """Stop the loop of a closed sender once no task is left on it: attempts, started or only scheduled, and
        coroutines of `run` callers, which would otherwise wait forever."""
        loop = asyncio.get_running_loop()
        if not asyncio.all_tasks(loop):
            loop.stop()

    async def attempt(self, url: str, body: bytes, headers: Mapping[str, str]) -> SendResult:
        """One attempt, on the sender's loop (see `send`)."""
        try:
            return await self._attempt(url, body, headers)
        finally:
            if self._closing:
                # Not at once: this attempt's task, and the callbacks that hand its result to its caller, end after
                # it returns.
                asyncio.get_running_loop().call_later(0.05, self._stop_if_idle)

    async def _attempt(self, url: str, body: bytes, headers: Mapping[str, str]) -> SendResult:
        started = time.monotonic()
        deadline = started + self.timeout_s
        try:
            target = _parsed_target(url)
        except UrlRejected as exc:
            return self._failed(started, f"invalid URL: {exc.message}")
        conn: _Http11Connection | None = None
        answer: tuple[int, bytes | None, bytes | None] | None = None  # status, Location, Retry-After
        kept = bytearray()
        complete = False
        try:
            request = self._request_head(target, body, headers)
            async with asyncio.timeout_at(deadline):  # one deadline for every step, the body's reading included
                try:
                    addresses = await self._addresses(target)
                except (OSError, UnicodeError, ValueError):
                    return self._failed(started, f"could not resolve host {target.host}")
                if not self.allow_private and (target.host, target.port) not in self.local_targets:
                    blocked = first_blocked(addresses)
                    if blocked is not None:
                        return self._failed(started, f"blocked private address {blocked}")
                conn, answer = await self._exchange(target, addresses, request, body, deadline)
                complete = await conn.read_body(kept)
        except Exception as exc:
            if answer is None:
                if conn is not None:
                    conn.close()
                timed_out = isinstance(exc, TimeoutError | _DeadlineExceeded) or time.monotonic() >= deadline
                return self._failed(started, self._timeout_message() if timed_out else describe_error(exc))
            # The answer's head came in time: that is the outcome; a broken or slow body only ends the reading.
        except BaseException:
            if conn is not None:
                conn.close()
            raise
        assert conn is not None and answer is not None
        if complete and conn.finish_cycle() and time.monotonic() < deadline and not self._closing:
            self._idle.put(conn)
        else:
            conn.close()
        status, location, retry_after = answer
        ok = 200 <= status <= 299
        return SendResult(
            ok=ok,
            http_code=status,
            error=None if ok else _status_message(status, location),
            duration_ms=_ms_since(started),
            response_body_start=_body_start(kept),
            retry_after_s=None if retry_after is None else parse_retry_after(retry_after.decode("latin-1")),
            gone=status == 410,
        )

    # -- the steps of one attempt ---------------------------------------------------------------------------

    def _request_head(self, target: Target, body: bytes, headers: Mapping[str, str]) -> bytes:
        """The request line and fields; ValueError for anything that does not belong in a request's head."""
        host = f"[{target.host}]" if ":" in target.host else target.host
        if target.port != 443:
            host = f"{host}:{target.port}"
        fields = [("Host", host)]
        fields += [(k, v) for k, v in headers.items() if k.lower() not in _OWN_HEADERS]
        fields += [("User-Agent", self.user_agent), ("Content-Type", "application/json"),
                   ("Content-Length", str(len(body)))]
        if not _REQUEST_TARGET.fullmatch(target.request_target):
            raise ValueError("the URL's path cannot go into a request")
        lines = [f"POST {target.request_target} HTTP/1.1"]
        for name, value in fields:
            if not _FIELD_NAME.fullmatch(name) or not _FIELD_VALUE.fullmatch(value):
                raise ValueError(f"the request field {name[:40]!r} has a value that cannot be sent")
            lines.append(f"{name}: {value}")
        lines.append("\r\n")
        return "\r\n".join(lines).encode("ascii")

    async def _addresses(self, target: Target) -> list[IPAddress]:
        if target.ip is not None:
            return [target.ip]
        return await self._lookups.lookup(target.host, target.port)

    async def _exchange(
        self, target: Target, addresses: list[IPAddress], request: bytes, body: bytes, deadline: float
    ) -> tuple[_Http11Connection, tuple[int, bytes | None, bytes | None]]:
        """Send the request and read the answer's head; returns the connection (its body still to read) and the
        status with the `Location` and `Retry-After` headers."""
        conn, reused = self._checkout(target, addresses)
        if conn is None:
            conn = await self._connect_in_order(target, addresses, deadline)
        try:
            try:
                return conn, await self._head(conn, request, body)
            except _STALE_ERRORS:
                # A kept-alive connection the server closed meanwhile: try once on a new connection.
                if not reused or time.monotonic() >= deadline:
                    raise
                conn.close()
                conn = await self._connect_in_order(target, addresses, deadline)
                return conn, await self._head(conn, request, body)
        except BaseException:
            conn.close()
            raise

    def _checkout(self, target: Target, addresses: list[IPAddress]) -> tuple[_Http11Connection | None, bool]:
        for address in addresses:
            conn = self._idle.take((target.host, target.port, address))
            if conn is not None:
                return conn, True
        return None, False

    async def _connect_in_order(
        self, target: Target, addresses: list[IPAddress], deadline: float
    ) -> _Http11Connection:
        """Connect to the first checked address that accepts; TLS failures are final, TCP ones are not.

        Each address gets an equal share of the remaining budget for its TCP connect, so one address that
        does not answer cannot use up the whole attempt.
        """
        loop = asyncio.get_running_loop()
        failure: OSError | None = None
        for index, address in enumerate(addresses):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _DeadlineExceeded()
            sock = socket.socket(socket.AF_INET6 if address.version == 6 else socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                try:
                    if index == len(addresses) - 1:  # the attempt's own deadline bounds the last one
                        await loop.sock_connect(sock, (str(address), target.port))
                    else:
                        async with asyncio.timeout(remaining / (len(addresses) - index)):
                            await loop.sock_connect(sock, (str(address), target.port))
                except OSError as exc:  # TimeoutError (this address's share ran out) is one too
                    sock.close()
                    failure = exc
                    continue
                key = (target.host, target.port, address)
                _, conn = await loop.create_connection(
                    functools.partial(_Http11Connection, key), sock=sock, ssl=self._ssl_context,
                    server_hostname=target.host, ssl_handshake_timeout=max(remaining, 0.001))
            except BaseException:
                sock.close()
                raise
            return conn
        assert failure is not None
        raise failure

    @staticmethod
    async def _head(conn: _Http11Connection, request: bytes, body: bytes) -> tuple[int, bytes | None, bytes | None]:
        conn.write_request(request, body)
        return await conn.read_head()

    def _timeout_message(self) -> str:
        return f"timeout after {self.timeout_s:.1f} s"

    @staticmethod
    def _failed(started: float, error: str) -> SendResult:
        return SendResult(ok=False, http_code=None, error=error, duration_ms=_ms_since(started))


def _body_start(kept: bytearray) -> str:
    """The kept start of an answer's body, decoded leniently; a character cut by the limit is left out, not
    shown as U+FFFD (recording cleans the control characters: `recording.cleaned`)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    return decoder.decode(bytes(kept), final=len(kept) < BODY_KEEP_BYTES)


def _check_body(body: object) -> None:
    if not isinstance(body, bytes):
        raise TypeError("body must be the exact bytes to send (and sign)")


def _quiet_exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Errors the loop meets outside any attempt (a TLS connection the peer reset while idle): the attempts
    report what concerns them; these are only worth a debug line."""
    log.debug("sender loop: %s", context.get("message"), exc_info=context.get("exception"))


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _status_message(status: int, location: bytes | None) -> str:
    if 300 <= status <= 399 and location:
        return f"HTTP {status}, redirect to {location[:200].decode('latin-1')} not followed"
    return f"HTTP {status}"


_ERRNO_MESSAGES = {
    errno.ENETUNREACH: "network unreachable",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ECONNREFUSED: "connection refused",
    errno.ETIMEDOUT: "connection timed out",
}


def describe_error(exc: BaseException) -> str:
    """A short human message for an attempt that got no HTTP answer."""
    for error in exception_chain(exc):
        if isinstance(error, ssl.SSLCertVerificationError):
            return f"TLS certificate verify failed: {error.verify_message or error.reason}"
        if isinstance(error, ssl.SSLError):
            return f"TLS error: {error.reason or error}"
        if isinstance(error, ConnectionRefusedError):
            return "connection refused"
        if isinstance(error, ClosedWithoutAnswer):
            return "connection closed without a response"
        if isinstance(error, ConnectionResetError):
            return "connection reset by peer"
        if isinstance(error, BrokenPipeError | ConnectionAbortedError):
            return "connection closed while sending the request"
        if isinstance(error, TimeoutError):
            return "connection timed out"
        if isinstance(error, InvalidAnswer):
            return str(error)
        if isinstance(error, OSError) and error.errno in _ERRNO_MESSAGES:
            return _ERRNO_MESSAGES[error.errno]
    return f"{type(exc).__name__}: {exc}"[:200]
