"""The demo's webhook receiver: HTTPS on the loopback with a certificate of its own (a `trustme` CA made at start,
trusted by nothing but the demo's own sender, through `Settings.ca_bundle` of the demo's runtime), recording each
request it gets and whether its Standard Webhooks signature verifies.

The signature is checked by the `standardwebhooks` package (not the add-on's signing code) with the secrets the
add-on stored for the webhook the `webhook-id` names (`<message>_<webhook id>`), opened through the storage code's
`SecretBox`: so it verifies webhooks created in any demo session, and a rotation's previous secret too."""

from __future__ import annotations

import collections
import datetime as dt
import itertools
import json
import logging
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from standardwebhooks.webhooks import Webhook as StandardWebhook
from standardwebhooks.webhooks import WebhookVerificationError

from addon.process.runtime import Runtime
from addon.storage.models import Webhook, utcnow

log = logging.getLogger(__name__)

PATH = "/webhook"
ANSWERS = {200: "OK", 500: "Internal Server Error", 503: "Service Unavailable", 410: "Gone"}
"""What the receiver may be told to answer: success, failures that are retried, and 410 (the webhook is disabled)."""
MAX_BODY_BYTES = 1024 * 1024
KEPT = 200

Verifier = Callable[[dict[str, str], bytes], dict[str, Any]]


class Receiver:
    """The HTTPS receiver on 127.0.0.1 (`port`, or any free port for 0), in threads of this process."""

    def __init__(self, workdir: Path, port: int = 0) -> None:
        import trustme  # only the demo needs it (the `demo` extra)

        ca = trustme.CA(organization_name="Projectrak Outgoing Webhooks demo")
        self.ca_file = workdir / "demo-receiver-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        self.items: collections.deque[dict[str, Any]] = collections.deque(maxlen=KEPT)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.verifier: Verifier | None = None
        self.answer = 200
        """The status it answers (the panel changes it, to watch retries or a 410 disable the webhook)."""
        self._server = _Server(("127.0.0.1", port), _handler(self))
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True,
                                                  do_handshake_on_connect=False)
        self._thread = threading.Thread(target=self._server.serve_forever, name="demo-receiver", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}{PATH}"

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for serve_forever, which never ran otherwise
            self._server.shutdown()
        self._server.server_close()

    def record(self, path: str, headers: list[tuple[str, str]], body: bytes, answered: int) -> None:
        verification = {"verified": False, "detail": "not checked"}
        if self.verifier is not None:
            try:
                verification = self.verifier({k.lower(): v for k, v in headers}, body)
            except Exception as err:  # noqa: BLE001 - a recording is shown whatever the check did
                log.exception("demo receiver: verification failed")
                verification = {"verified": False, "detail": f"the check failed: {err}"}
        item = {"at": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"), "path": path,
                "headers": [[k, v] for k, v in headers], "body": body.decode("utf-8", "replace"), "answered": answered,
                **verification}
        with self._lock:
            item["id"] = next(self._ids)
            self.items.appendleft(item)

    def received(self, after: int = 0) -> list[dict[str, Any]]:
        with self._lock:
            return [item for item in self.items if item["id"] > after]


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:  # a failed handshake is not worth a trace
        log.info("demo receiver: a connection from %s failed", client_address)


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                self._answer(413, {"error": "too large"})
                return
            body = self.rfile.read(length)
            status = receiver.answer
            receiver.record(self.path, list(self.headers.items()), body, status)
            self._answer(status, {"received": True, "answer": ANSWERS.get(status, "")})

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
            log.info("demo receiver: " + format, *args)

    return Handler


def stored_secret_verifier(runtime: Runtime, tenant_id: int) -> Verifier:
    """Verifies a request with the secrets stored for the webhook its `webhook-id` names (current, then the
    previous one while it still signs)."""

    def verify(headers: dict[str, str], body: bytes) -> dict[str, Any]:
        message_id = headers.get("webhook-id", "")
        _, _, webhook_id = message_id.rpartition("_")
        if not webhook_id.isdigit():
            return {"verified": False, "detail": "no webhook-id naming one of the demo's webhooks"}
        with runtime.sessions() as session:
            webhook = session.get(Webhook, int(webhook_id))
            if webhook is None or webhook.tenant_id != tenant_id:
                return {"verified": False, "detail": f"no webhook {webhook_id} on the demo site"}
            secrets = [("current", webhook.secret)]
            expires = webhook.previous_secret_expires_at
            if webhook.previous_secret and (expires is None or expires > utcnow()):
                secrets.append(("previous", webhook.previous_secret))
        for which, sealed in secrets:
            try:
                StandardWebhook(runtime.box.open(sealed)).verify(body, headers)
            except WebhookVerificationError:
                continue
            return {"verified": True, "detail": f"signature verifies with webhook {webhook_id}'s {which} secret"}
        return {"verified": False, "detail": f"no signature verifies with webhook {webhook_id}'s secrets"}

    return verify
