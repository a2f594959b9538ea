"""A real HTTPS webhook receiver on 127.0.0.1 for tests.

`Receiver` serves HTTP/1.1 with keep-alive over TLS, with a certificate issued by a throw-away `trustme`
CA for `localhost`, `127.0.0.1`, `::1` and `receiver.test` (more names can be given); `ca_path` is that
CA's PEM, to pass as the sender's `ca_bundle`. What it answers is programmable per path (`behave`), and
every request is recorded with its headers, body, connection number and the TLS SNI name the client sent.

    with Receiver() as receiver:
        receiver.behave("/slow", delay_s=5)
        url = receiver.url("/slow")            # https://localhost:PORT/slow
        ...
        [request] = receiver.wait_for(1)

Waiting (`delay_s`, `drip_s`) happens only here, in the fake network peer, and is cut short by `stop()`.
"""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import trustme
from standardwebhooks import Webhook

DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1", "receiver.test")


@dataclass(frozen=True)
class Behaviour:
    """What the receiver answers on a path."""

    status: int = 200
    body: bytes = b'{"received":true}'
    headers: dict[str, str] = field(default_factory=dict)
    #: Seconds to wait after reading the request, before answering.
    delay_s: float = 0.0
    #: Answer a redirect (301 unless `status` is a 3xx) to this Location.
    redirect_to: str | None = None
    #: Answer with `Connection: close` and close the connection.
    close: bool = False
    #: Close the connection after answering without saying so (like a server's keep-alive timeout).
    hang_up: bool = False
    #: Send the status line and headers one byte at a time, waiting this long between bytes.
    drip_s: float = 0.0
    #: Send the body in pieces of `body_chunk` bytes, waiting this long between pieces.
    body_drip_s: float = 0.0
    body_chunk: int = 1
    #: Answer a body of this many bytes instead of `body`.
    body_size: int | None = None
    #: Statuses by what the request body contains: the first whose bytes it holds is answered instead of `status`.
    status_by_body: tuple[tuple[bytes, int], ...] = ()
    #: Delays by what the request body contains: the first whose bytes it holds is waited instead of `delay_s`.
    delay_by_body: tuple[tuple[bytes, float], ...] = ()


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    connection_id: int
    sni: str | None
    received_at: float

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """A programmable HTTPS receiver; see the module docstring."""

    def __init__(self, names: Iterable[str] = DEFAULT_NAMES, *, ca: trustme.CA | None = None) -> None:
        self.ca = ca or trustme.CA()
        self.names = tuple(names)
        self._cert = self.ca.issue_cert(*self.names)
        self._lock = threading.Condition()
        self._requests: list[ReceivedRequest] = []
        self._behaviours: dict[str, Behaviour] = {}
        self._default = Behaviour()
        self._stopping = threading.Event()
        self._live: dict[socket.socket, tuple[int, str | None]] = {}
        self._sni_seen: dict[int, str | None] = {}
        self.connections_opened = 0
        self.tls_failures: list[str] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.ca_path = ""

    # -- life cycle -------------------------------------------------------------------------------------

    def start(self) -> Receiver:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._cert.configure_cert(context)
        context.sni_callback = self._on_sni
        fd, self.ca_path = tempfile.mkstemp(prefix="receiver-ca-", suffix=".pem")
        with os.fdopen(fd, "wb") as f:
            f.write(self.ca.cert_pem.bytes())
        self._server = _Server(("127.0.0.1", 0), _Handler, owner=self, context=context)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="receiver", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, end waits and open connections, and remove the CA file."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            with self._lock:
                live = list(self._live)
            for sock in live:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.ca_path and os.path.exists(self.ca_path):
            os.unlink(self.ca_path)

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- addresses ----------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the receiver first"
        return self._server.server_address[1]

    def url(self, path: str = "/hook", host: str = "localhost") -> str:
        return f"https://{host}:{self.port}{path}"

    # -- behaviour ----------------------------------------------------------------------------------------

    def behave(self, path: str, **changes: Any) -> None:
        """Set what `path` answers, e.g. `behave("/x", status=503, headers={"Retry-After": "7"})`."""
        with self._lock:
            self._behaviours[path] = replace(Behaviour(), **changes)

    def behaviour_for(self, path: str) -> Behaviour:
        with self._lock:
            return self._behaviours.get(path.split("?", 1)[0], self._default)

    # -- what was received --------------------------------------------------------------------------------

    @property
    def requests(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._requests)

    def requests_for(self, path: str) -> list[ReceivedRequest]:
        return [r for r in self.requests if r.path == path]

    def wait_for(self, count: int, timeout: float = 5.0, path: str | None = None) -> list[ReceivedRequest]:
        """Wait until at least `count` requests (to `path`, if given) have arrived; returns them."""
        end = time.monotonic() + timeout
        with self._lock:
            while True:
                got = [r for r in self._requests if path is None or r.path == path]
                if len(got) >= count:
                    return got
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} requests, got {len(got)}")
                self._lock.wait(left)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()

    @staticmethod
    def verify(request: ReceivedRequest, secrets: Sequence[str]) -> Any:
        """The JSON payload if one of `secrets` verifies the request's Standard Webhooks signature, else
        `standardwebhooks.WebhookVerificationError`."""
        error: Exception | None = None
        for secret in secrets:
            try:
                return Webhook(secret).verify(request.body, request.headers)
            except Exception as exc:  # noqa: BLE001 - try the next secret
                error = exc
        assert error is not None, "no secret given"
        raise error

    # -- called by the server -----------------------------------------------------------------------------

    def _on_sni(self, sslobj: Any, name: str | None, _context: ssl.SSLContext) -> None:
        with self._lock:
            self._sni_seen[id(sslobj)] = name

    def _opened(self, sock: ssl.SSLSocket) -> None:
        with self._lock:
            self.connections_opened += 1
            self._live[sock] = (self.connections_opened, self._sni_seen.pop(id(sock), None))

    def _closed(self, sock: ssl.SSLSocket) -> None:
        with self._lock:
            self._live.pop(sock, None)

    def _connection_info(self, sock: ssl.SSLSocket) -> tuple[int, str | None]:
        with self._lock:
            return self._live.get(sock, (0, None))

    def _tls_failed(self, exc: BaseException) -> None:
        with self._lock:
            self.tls_failures.append(str(exc))

    def _record(self, request: ReceivedRequest) -> None:
        with self._lock:
            self._requests.append(request)
            self._lock.notify_all()

    def _wait(self, seconds: float) -> bool:
        """Wait, unless the receiver stops first; True when it is stopping."""
        return self._stopping.wait(seconds) if seconds > 0 else self._stopping.is_set()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default backlog of 5 drops connections when a worker opens many at once

    def __init__(self, address: tuple[str, int], handler: type, *, owner: Receiver, context: ssl.SSLContext):
        self.owner = owner
        self.context = context
        super().__init__(address, handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        """TLS happens here, in the connection's own thread, so a slow handshake holds up nobody else."""
        request.settimeout(10)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            self.owner._tls_failed(exc)
            return
        self.owner._opened(tls)
        try:
            self.RequestHandlerClass(tls, client_address, self)
        except (OSError, ssl.SSLError):
            pass
        finally:
            self.owner._closed(tls)
            try:
                tls.close()
            except OSError:
                pass

    def shutdown_request(self, request: Any) -> None:
        try:
            request.close()
        except OSError:
            pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hanging up mid-answer is what several tests do on purpose


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 30
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self._answer()

    do_GET = do_PUT = do_PATCH = do_DELETE = do_POST

    def _answer(self) -> None:
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        connection_id, sni = owner._connection_info(self.connection)
        owner._record(
            ReceivedRequest(
                method=self.command,
                path=self.path,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
                connection_id=connection_id,
                sni=sni,
                received_at=time.monotonic(),
            )
        )
        behaviour = owner.behaviour_for(self.path)
        if owner._wait(next((delay for part, delay in behaviour.delay_by_body if part in body), behaviour.delay_s)):
            self.close_connection = True
            return
        status = next((code for part, code in behaviour.status_by_body if part in body), behaviour.status)
        headers = dict(behaviour.headers)
        if behaviour.redirect_to is not None:
            status = status if 300 <= status <= 399 else 301
            headers["Location"] = behaviour.redirect_to
        payload = behaviour.body if behaviour.body_size is None else b"x" * behaviour.body_size
        headers["Content-Length"] = str(len(payload))
        if behaviour.close:
            headers["Connection"] = "close"
        self.close_connection = behaviour.close or behaviour.hang_up
        head = f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}\r\n".encode()
        head += b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items()) + b"\r\n"
        try:
            if behaviour.drip_s > 0:
                for i in range(len(head)):
                    self.wfile.write(head[i : i + 1])
                    if owner._wait(behaviour.drip_s):
                        raise ConnectionAbortedError("receiver stopping")
            else:
                self.wfile.write(head)
            if behaviour.body_drip_s > 0:
                step = max(1, behaviour.body_chunk)
                for i in range(0, len(payload), step):
                    self.wfile.write(payload[i : i + step])
                    if owner._wait(behaviour.body_drip_s):
                        raise ConnectionAbortedError("receiver stopping")
            else:
                self.wfile.write(payload)
        except OSError:
            self.close_connection = True


class ScriptedServer:
    """A TLS server (certificate from `ca`) that answers each request with the next of `answers`, as raw bytes,
    for the answers a well-behaved `Receiver` never gives: 1xx first, chunked, ended by a close, not HTTP.
    Counts the connections it accepted."""

    def __init__(self, ca: trustme.CA, answers: Sequence[bytes], *, close_after: bool = False) -> None:
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert("localhost", "127.0.0.1").configure_cert(self._context)
        self._answers = list(answers)
        self._close_after = close_after
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, name="scripted-server", daemon=True)
        self._thread.start()

    def url(self, path: str = "/scripted") -> str:
        return f"https://localhost:{self.port}{path}"

    def close(self) -> None:
        self._listener.close()
        self._thread.join(timeout=5)

    def _serve(self) -> None:
        while self._answers:
            try:
                raw, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            with raw, self._context.wrap_socket(raw, server_side=True) as conn:
                while self._answers and self._read_request(conn):
                    conn.sendall(self._answers.pop(0))
                    if self._close_after:
                        break

    def _read_request(self, conn: ssl.SSLSocket) -> bool:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return False
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?im)^content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
        while len(body) < length:
            body += conn.recv(65536)
        return True
