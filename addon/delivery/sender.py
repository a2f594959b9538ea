"""One webhook delivery attempt over HTTPS (CONTRACT §6.1, §6.3), safe against SSRF and bounded in time.

`Sender.send` resolves the host once, checks every resolved address with the address policy, and
connects, in resolver order, only to those checked addresses: the TCP socket is pinned to an IP while
SNI, the certificate check and the `Host` header use the host name. There is no second lookup between the
check and the connection, so DNS rebinding cannot slip a private address in. Redirects are not followed.

The whole attempt (DNS, connect, TLS, sending, reading the answer) is bounded by `timeout_s` of wall-clock
time: DNS runs on a few daemon threads and is waited for at most the remaining budget (answers are reused
for `dns_cache_s`), every socket operation gets the remaining budget as its timeout, and a watchdog thread
shuts the socket down at the deadline, so that a receiver dripping one byte at a time cannot stretch an
attempt. Only the first bytes of an answer are kept and at most `BODY_READ_LIMIT` are read; a connection
whose answer was not read to its end is closed, the others are kept for the next attempt to the same
(host, port, address), and a kept connection found closed by the server is replaced once, transparently.

Trust: the system CAs (OpenSSL's default paths, or certifi's bundle where the system has none) plus the
extra CAs of `ca_bundle`. Nothing is read from `REQUESTS_CA_BUNDLE` or proxy variables.
"""

from __future__ import annotations

import concurrent.futures
import errno
import heapq
import http.client
import itertools
import os
import queue
import re
import select
import socket
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any

from addon.delivery.addresses import (
    IPAddress,
    Resolver,
    Target,
    UrlRejected,
    first_blocked,
    parse_target,
    resolve_addresses,
)

#: Bytes of the answer kept in `SendResult.response_body_start`.
BODY_KEEP_BYTES = 2048
#: Most bytes of an answer's body read; a longer body closes the connection instead of being drained.
BODY_READ_LIMIT = 64 * 1024
_READ_CHUNK = 16 * 1024
#: Headers the sender owns; a caller's values for them are dropped.
_OWN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "user-agent", "content-type"})


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


class _ConnectFailed(Exception):
    """The TCP connection to one address failed; the next checked address may be tried."""

    def __init__(self, address: IPAddress, cause: OSError) -> None:
        super().__init__(f"{address}: {cause}")
        self.address = address
        self.cause = cause


class _Guard:
    """One attempt's registration with the watchdog: the sockets to shut down if the deadline passes."""

    __slots__ = ("deadline", "fired", "released", "_handles", "_watchdog")

    def __init__(self, watchdog: _Watchdog, deadline: float) -> None:
        self.deadline = deadline
        self.fired = False
        self.released = False
        self._handles: list[_WatchHandle] = []
        self._watchdog = watchdog

    def attach(self, handle: _WatchHandle) -> None:
        """Watch a connection's socket through its `_WatchHandle` (shut down at once if the deadline passed)."""
        with self._watchdog.lock:
            if not self.released:
                self._handles.append(handle)
                handle.watched = True
                if self.fired:
                    handle.shutdown_locked()

    def fire_locked(self) -> None:
        if self.released or self.fired:
            return
        self.fired = True
        for handle in self._handles:
            handle.shutdown_locked()

    def release(self) -> None:
        """End the watch; after this `fired` no longer changes. Handles closed meanwhile are closed now."""
        with self._watchdog.lock:
            self.released = True
            handles, self._handles = self._handles, []
            for handle in handles:
                handle.unwatch_locked()


class _WatchHandle:
    """A duplicate descriptor of one connection's socket, for the watchdog to shut it down at a deadline.

    The watchdog never acts on the connection's own descriptor: the attempt may close it at any moment and the
    process may reuse its number for another socket. The duplicate is made once per connection, not once per
    attempt (that cost three system calls per delivery, each a turn at the GIL in a busy worker). It is closed
    under the watchdog's lock when the connection is closed, but not while an attempt still watches it: http.client
    closes the connection of a `Connection: close` answer before its body is read, and the deadline must still
    be able to cut that reading short. Then the attempt's `_Guard.release` closes it.
    """

    __slots__ = ("_dup", "_lock", "watched", "_close_when_unwatched")

    def __init__(self, sock: socket.socket, lock: threading.Condition) -> None:
        self._dup: socket.socket | None = socket.socket(sock.family, sock.type, sock.proto, os.dup(sock.fileno()))
        self._lock = lock
        self.watched = False
        self._close_when_unwatched = False

    def shutdown_locked(self) -> None:
        if self._dup is not None:
            _shutdown(self._dup)

    def unwatch_locked(self) -> None:
        self.watched = False
        if self._close_when_unwatched:
            self._close_locked()

    def close(self) -> None:
        with self._lock:
            if self.watched:
                self._close_when_unwatched = True
            else:
                self._close_locked()

    def _close_locked(self) -> None:
        dup, self._dup = self._dup, None
        if dup is not None:
            dup.close()


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class _Watchdog:
    """A thread that shuts down the sockets of attempts still running at their deadline.

    Guards are released long before their deadline in the common case; they stay in the heap until then
    and are dropped in batches (the thread wakes at most once per `slack_s`).
    """

    def __init__(self, slack_s: float = 0.02) -> None:
        self.lock = threading.Condition()
        self._heap: list[tuple[float, int, _Guard]] = []
        self._seq = itertools.count()
        self._slack_s = slack_s
        self._thread: threading.Thread | None = None
        self._closed = False

    def watch(self, deadline: float) -> _Guard:
        guard = _Guard(self, deadline)
        with self.lock:
            if self._closed:
                raise RuntimeError("the sender is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="webhook-deadlines", daemon=True)
                self._thread.start()
            heapq.heappush(self._heap, (deadline, next(self._seq), guard))
            if self._heap[0][2] is guard:
                self.lock.notify()
        return guard

    def _run(self) -> None:
        with self.lock:
            while not self._closed:
                if not self._heap:
                    self.lock.wait()
                    continue
                now = time.monotonic()
                if self._heap[0][0] > now:
                    self.lock.wait(self._heap[0][0] - now + self._slack_s)
                    continue
                while self._heap and self._heap[0][0] <= now:
                    heapq.heappop(self._heap)[2].fire_locked()

    def close(self) -> None:
        with self.lock:
            self._closed = True
            self.lock.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=1)


class _Lookups:
    """DNS lookups on a few daemon threads, so that a caller can stop waiting at its deadline, with a short
    cache of successful answers.

    getaddrinfo cannot be interrupted; a lookup that outlives its caller finishes unobserved. The threads
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

    def lookup(self, host: str, port: int, deadline: float) -> list[IPAddress]:
        """The addresses of `host`; raises OSError if it has none, `_DeadlineExceeded` past the deadline."""
        future: concurrent.futures.Future[list[IPAddress]] = concurrent.futures.Future()
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
        self._jobs.put((future, host, port))
        try:
            addresses = future.result(timeout=max(0.0, deadline - time.monotonic()))
        except concurrent.futures.TimeoutError:
            if future.cancel() or not future.done():
                raise _DeadlineExceeded() from None
            addresses = future.result()
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
            except BaseException as exc:  # handed to the waiting caller
                future.set_exception(exc)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            count = len(self._threads)
        for _ in range(count):
            self._jobs.put(None)


class _PinnedHTTPSConnection(http.client.HTTPConnection):
    """An HTTPS connection to a host name whose TCP socket goes to one pre-checked IP address.

    The host name is used for SNI, for the certificate check (the context has check_hostname on) and in
    the `Host` header; the address is only where the socket connects.
    """

    default_port = 443  # so that the Host header leaves out :443 as it should

    def __init__(self, target: Target, address: IPAddress, ssl_context: ssl.SSLContext,
                 watchdog_lock: threading.Condition) -> None:
        super().__init__(target.host, target.port)
        self.address = address
        self.key = (target.host, target.port, address)
        self.guard: _Guard | None = None
        self.watch_handle: _WatchHandle | None = None
        self._watchdog_lock = watchdog_lock
        self.deadline = 0.0
        self.connect_timeout = 0.0
        self._ssl_context = ssl_context
        self._pending: list[bytes] | None = None

    def remaining(self) -> float:
        """Seconds left in the current attempt; raises `_DeadlineExceeded` when none are."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise _DeadlineExceeded()
        return remaining

    def connect(self) -> None:
        """TCP to the pinned address within `connect_timeout`, then TLS for the host name."""
        family = socket.AF_INET6 if self.address.version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(self.connect_timeout)
            try:
                sock.connect((str(self.address), self.port))
            except OSError as exc:
                raise _ConnectFailed(self.address, exc) from exc
            sock.settimeout(self.remaining())
            self.watch_handle = _WatchHandle(sock, self._watchdog_lock)
            if self.guard is not None:
                self.guard.attach(self.watch_handle)
            self.sock = self._ssl_context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            self._close_watch_handle()
            raise

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._close_watch_handle()

    def _close_watch_handle(self) -> None:
        handle, self.watch_handle = self.watch_handle, None
        if handle is not None:
            handle.close()

    def is_alive(self) -> bool:
        """False when the server has closed an idle connection (or sent something nobody asked for)."""
        if self.sock is None:
            return False
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        return not poller.poll(0)

    def send(self, data: Any) -> None:
        if self._pending is not None:
            self._pending.append(bytes(data))
        else:
            super().send(data)

    def post(self, request_target: str, body: bytes, headers: Mapping[str, str]) -> None:
        """Send a POST with the head and the body in one write: one TLS record instead of http.client's two."""
        self._pending = []
        try:
            self.request("POST", request_target, body=body, headers=dict(headers))
            data = b"".join(self._pending)
        finally:
            self._pending = None
        self.send(data)


class _IdleConnections:
    """Idle keep-alive connections keyed by (host, port, address), bounded in total, least recently used
    evicted first. A connection is in here or in the hands of exactly one thread."""

    def __init__(self, max_total: int, max_idle_s: float) -> None:
        self._lock = threading.Lock()
        self._idle: OrderedDict[tuple[str, int, IPAddress], list[tuple[float, _PinnedHTTPSConnection]]]
        self._idle = OrderedDict()
        self._count = 0
        self._max_total = max_total
        self._max_idle_s = max_idle_s
        self._closed = False

    def take(self, key: tuple[str, int, IPAddress]) -> _PinnedHTTPSConnection | None:
        while True:
            stale: list[_PinnedHTTPSConnection] = []
            conn = None
            with self._lock:
                entries = self._idle.get(key)
                if entries:
                    since, conn = entries.pop()
                    self._count -= 1
                    if time.monotonic() - since > self._max_idle_s:
                        stale = [conn] + [c for _, c in entries]  # the newest is too old: so are the rest
                        self._count -= len(entries)
                        entries.clear()
                        conn = None
                    if not entries:
                        del self._idle[key]
            for old in stale:
                old.close()
            if conn is None:
                return None
            if conn.is_alive():
                return conn
            conn.close()

    def put(self, conn: _PinnedHTTPSConnection) -> None:
        evicted: list[_PinnedHTTPSConnection] = []
        now = time.monotonic()
        with self._lock:
            if self._closed:
                evicted.append(conn)
            else:
                self._idle.setdefault(conn.key, []).append((now, conn))
                self._idle.move_to_end(conn.key)
                self._count += 1
                while self._idle:
                    oldest_key = next(iter(self._idle))
                    entries = self._idle[oldest_key]
                    if self._count <= self._max_total and now - entries[0][0] <= self._max_idle_s:
                        break
                    evicted.append(entries.pop(0)[1])
                    self._count -= 1
                    if not entries:
                        del self._idle[oldest_key]
        for old in evicted:
            old.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conns = [c for entries in self._idle.values() for _, c in entries]
            self._idle.clear()
            self._count = 0
        for conn in conns:
            conn.close()


_STALE_ERRORS = (
    ConnectionResetError,
    ConnectionAbortedError,
    BrokenPipeError,
    ssl.SSLEOFError,
    ssl.SSLZeroReturnError,
    http.client.RemoteDisconnected,
)


class Sender:
    """Sends webhook requests; one instance is shared by all worker threads.

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
    ) -> None:
        if not timeout_s > 0:
            raise ValueError("timeout_s must be positive")
        self.timeout_s = float(timeout_s)
        self.allow_private = allow_private
        self.user_agent = user_agent
        self._ssl_context = build_ssl_context(ca_bundle)
        self._idle = _IdleConnections(max_idle_connections, idle_timeout_s)
        self._watchdog = _Watchdog()
        self._lookups = _Lookups(resolve, dns_threads, dns_cache_s)

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close idle connections and stop the helper threads. Attempts still running finish on their own."""
        self._idle.close()
        self._watchdog.close()
        self._lookups.close()

    def send(self, url: str, body: bytes, headers: Mapping[str, str]) -> SendResult:
        """POST `body` to `url` with `headers` (plus `User-Agent` and `Content-Type: application/json`).

        Never raises for anything the network or the receiver does: every outcome is a `SendResult`.
        """
        if not isinstance(body, bytes):
            raise TypeError("body must be the exact bytes to send (and sign)")
        started = time.monotonic()
        deadline = started + self.timeout_s
        try:
            target = parse_target(url)
        except UrlRejected as exc:
            return self._failed(started, f"invalid URL: {exc.message}")
        try:
            addresses = self._addresses(target, deadline)
        except _DeadlineExceeded:
            return self._failed(started, self._timeout_message())
        except (OSError, UnicodeError, ValueError):
            return self._failed(started, f"could not resolve host {target.host}")
        if not self.allow_private:
            blocked = first_blocked(addresses)
            if blocked is not None:
                return self._failed(started, f"blocked private address {blocked}")
        request_headers = {k: v for k, v in headers.items() if k.lower() not in _OWN_HEADERS}
        request_headers["User-Agent"] = self.user_agent
        request_headers["Content-Type"] = "application/json"

        guard = self._watchdog.watch(deadline)
        conn: _PinnedHTTPSConnection | None = None
        try:
            result, conn = self._exchange(target, addresses, body, request_headers, started, deadline, guard)
        except Exception as exc:
            timed_out = guard.fired or isinstance(exc, _DeadlineExceeded) or time.monotonic() >= deadline
            result = self._failed(started, self._timeout_message() if timed_out else describe_error(exc))
        finally:
            guard.release()
        if conn is not None:
            conn.guard = None
            if guard.fired:
                conn.close()
            else:
                self._idle.put(conn)
        return result

    # -- the steps of one attempt ---------------------------------------------------------------------------

    def _addresses(self, target: Target, deadline: float) -> list[IPAddress]:
        if target.ip is not None:
            return [target.ip]
        return self._lookups.lookup(target.host, target.port, deadline)

    def _exchange(
        self,
        target: Target,
        addresses: list[IPAddress],
        body: bytes,
        headers: dict[str, str],
        started: float,
        deadline: float,
        guard: _Guard,
    ) -> tuple[SendResult, _PinnedHTTPSConnection | None]:
        """Send and read the answer; returns the result and the connection if it may be reused."""
        conn, reused = self._checkout(target, addresses, deadline, guard)
        try:
            try:
                response = self._request(conn, target, body, headers)
            except _STALE_ERRORS:
                # A kept-alive connection the server closed meanwhile: try once on a new connection.
                if not reused or guard.fired or time.monotonic() >= deadline:
                    raise
                conn.close()
                conn = self._connect_in_order(target, addresses, deadline, guard)
                response = self._request(conn, target, body, headers)
            body_start, complete = self._read_body(response)
        except BaseException:
            conn.close()
            raise
        status = response.status
        result = SendResult(
            ok=200 <= status <= 299,
            http_code=status,
            error=None if 200 <= status <= 299 else _status_message(status, response.getheader("Location")),
            duration_ms=_ms_since(started),
            response_body_start=body_start.decode("utf-8", errors="replace"),
            retry_after_s=parse_retry_after(response.getheader("Retry-After")),
            gone=status == 410,
        )
        if complete and conn.sock is not None and time.monotonic() < deadline:
            return result, conn
        conn.close()
        return result, None

    def _checkout(
        self, target: Target, addresses: list[IPAddress], deadline: float, guard: _Guard
    ) -> tuple[_PinnedHTTPSConnection, bool]:
        for address in addresses:
            conn = self._idle.take((target.host, target.port, address))
            if conn is not None:
                conn.deadline, conn.guard = deadline, guard
                assert conn.watch_handle is not None
                guard.attach(conn.watch_handle)
                return conn, True
        return self._connect_in_order(target, addresses, deadline, guard), False

    def _connect_in_order(
        self, target: Target, addresses: list[IPAddress], deadline: float, guard: _Guard
    ) -> _PinnedHTTPSConnection:
        """Connect to the first checked address that accepts; TLS failures are final, TCP ones are not.

        Each address gets an equal share of the remaining budget for its TCP connect, so one address that
        does not answer cannot use up the whole attempt.
        """
        failure: _ConnectFailed | None = None
        for index, address in enumerate(addresses):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _DeadlineExceeded()
            conn = _PinnedHTTPSConnection(target, address, self._ssl_context, self._watchdog.lock)
            conn.deadline, conn.guard = deadline, guard
            conn.connect_timeout = remaining / (len(addresses) - index)
            try:
                conn.connect()
            except _ConnectFailed as exc:
                conn.close()
                failure = exc
                continue
            except BaseException:
                conn.close()
                raise
            return conn
        assert failure is not None
        raise failure.cause

    @staticmethod
    def _request(
        conn: _PinnedHTTPSConnection, target: Target, body: bytes, headers: dict[str, str]
    ) -> http.client.HTTPResponse:
        assert conn.sock is not None
        # One timeout for the request and its answer (each socket call then waits at most what was left when the
        # request began); the watchdog ends the attempt at its deadline in any case.
        conn.sock.settimeout(conn.remaining())
        conn.post(target.request_target, body, headers)
        response = conn.getresponse()
        if conn.guard is not None and conn.guard.fired:
            # The watchdog's shutdown reads as EOF, which http.client takes for the end of the headers:
            # a head that was cut short must not pass for an answer.
            raise _DeadlineExceeded()
        return response

    @staticmethod
    def _read_body(response: http.client.HTTPResponse) -> tuple[bytes, bool]:
        """The first `BODY_KEEP_BYTES` of the body, and whether it was read to its end (then the connection
        may be reused). Reading stops after `BODY_READ_LIMIT` bytes or at the first error or the deadline."""
        kept = bytearray()
        read = 0
        try:
            while read < BODY_READ_LIMIT:
                chunk = response.read1(_READ_CHUNK)
                if not chunk:
                    # http.client does not always close a response read to its end with read1, and
                    # will not hand out the next response on the connection until it is closed.
                    response.close()
                    return bytes(kept), True
                read += len(chunk)
                if len(kept) < BODY_KEEP_BYTES:
                    kept += chunk[: BODY_KEEP_BYTES - len(kept)]
        except Exception:  # the status is known; a broken or slow body only ends the reading
            pass
        return bytes(kept), False

    def _timeout_message(self) -> str:
        return f"timeout after {self.timeout_s:.1f} s"

    @staticmethod
    def _failed(started: float, error: str) -> SendResult:
        return SendResult(ok=False, http_code=None, error=error, duration_ms=_ms_since(started))


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _status_message(status: int, location: str | None) -> str:
    if 300 <= status <= 399 and location:
        return f"HTTP {status}, redirect to {location[:200]} not followed"
    return f"HTTP {status}"


_ERRNO_MESSAGES = {
    errno.ENETUNREACH: "network unreachable",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ECONNREFUSED: "connection refused",
    errno.ETIMEDOUT: "connection timed out",
}


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def describe_error(exc: BaseException) -> str:
    """A short human message for an attempt that got no HTTP answer."""
    for error in _causes(exc):
        if isinstance(error, _ConnectFailed):
            error = error.cause
        if isinstance(error, ssl.SSLCertVerificationError):
            return f"TLS certificate verify failed: {error.verify_message or error.reason}"
        if isinstance(error, ssl.SSLError):
            return f"TLS error: {error.reason or error}"
        if isinstance(error, ConnectionRefusedError):
            return "connection refused"
        if isinstance(error, http.client.RemoteDisconnected):
            return "connection closed without a response"
        if isinstance(error, ConnectionResetError):
            return "connection reset by peer"
        if isinstance(error, BrokenPipeError | ConnectionAbortedError):
            return "connection closed while sending the request"
        if isinstance(error, TimeoutError):
            return "connection timed out"
        if isinstance(error, http.client.HTTPException):
            return f"invalid HTTP response ({type(error).__name__})"
        if isinstance(error, OSError) and error.errno in _ERRNO_MESSAGES:
            return _ERRNO_MESSAGES[error.errno]
    return f"{type(exc).__name__}: {exc}"[:200]
