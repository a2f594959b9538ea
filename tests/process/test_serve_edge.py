"""What `addon serve` (gunicorn) answers and logs at its edge: forged log lines, over-long request lines and
headers, and `GET /`. Against the real command in a subprocess, its log captured to a file."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.addon_server import wait_for
from tests.support.http import free_port
from tests.support.processes import AddonProcess, addon_env

FORGED = "2099-01-01 00:00:00,000 INFO addon.connect.lifecycle tenant installed tenant=1"


class Served:
    def __init__(self, proc: AddonProcess, port: int) -> None:
        self.proc = proc
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    def raw(self, request: bytes) -> tuple[int, dict[str, str], bytes]:
        """Send `request` as is over a fresh connection; the answer's status, headers and body."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(request)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
                head, sep, body = data.partition(b"\r\n\r\n")
                if sep:
                    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                    if length and len(body) >= int(length.group(1)):
                        break
        head, _, body = data.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {name.strip().lower(): value.strip()
                   for name, _, value in (line.partition(":") for line in header_lines)}
        return int(status_line.split(" ")[1]), headers, body


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp_path: Path = tmp_path_factory.mktemp("serve-edge")
    port = free_port()
    env = addon_env(PORT=str(port), DATABASE_URL=f"sqlite:///{tmp_path / 'edge.db'}",
                    ADDON_BASE_URL=f"http://127.0.0.1:{port}")
    proc = AddonProcess(["serve", "--no-worker"], env, tmp_path, tmp_path / "serve.log")
    try:
        proc.wait_healthy(f"http://127.0.0.1:{port}")
        yield Served(proc, port)
    finally:
        proc.stop()


def _log_after(served: Served, marker: str) -> str:
    """The log from the line holding `marker` (a request already answered) on."""
    text = wait_for(lambda: served.proc.output() if marker in served.proc.output() else "", timeout=10,
                    message=f"{marker!r} in the log")
    return text[text.index(marker):]


@pytest.mark.parametrize(("encoded", "escaped"), [("%0a", "\\n"), ("%0d", "\\r"), ("%1b", "\\x1b"),
                                                  ("%0d%0a", "\\r\\n"), ("%7f", "\\x7f"),
                                                  # NEL, a C1 line break: the WSGI path is latin-1 decoded
                                                  ("%c2%85", "\u00c2\\x85")])
def test_a_path_cannot_forge_a_log_line(served: Served, encoded: str, escaped: str) -> None:
    marker = f"marker{free_port()}"
    path = f"/healthz/{marker}{encoded}{FORGED.replace(' ', '%20')}"
    status, headers, body = served.raw(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    assert status == 404 and json.loads(body)["error"]["code"] == "not_found"
    log = _log_after(served, marker)
    access_line = log.splitlines()[0]
    assert f"{marker}{escaped}{FORGED}" in access_line  # the access log shows the path, its controls escaped
    assert not any(line.startswith("2099-01-01") for line in log.splitlines())
    assert not re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f]", log)


@pytest.mark.parametrize("control", ["\x1b", "\x7f", "\x00", "\r"])
def test_control_characters_in_a_request_line_or_header_are_escaped_in_the_log(served: Served,
                                                                                 control: str) -> None:
    """gunicorn refuses both (400, JSON) and logs the refused request line; neither reaches the log raw."""
    marker = f"marker{free_port()}"
    status, headers, body = served.raw(
        f"GET /healthz/{marker}{control}x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode("latin-1"))
    assert status == 400 and headers["content-type"] == "application/json"
    assert json.loads(body)["error"]["code"] == "bad_request"
    log = _log_after(served, marker)
    assert control not in log
    assert f"{marker}\\x{ord(control):02x}x" in log or f"{marker}\\r" in log

    status, headers, body = served.raw(
        f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-{marker}: a{control}{FORGED}\r\nConnection: close\r\n\r\n"
        .encode("latin-1"))
    assert status == 400 and headers["content-type"] == "application/json"
    assert json.loads(body)["error"]["code"] == "bad_request"
    # gunicorn's warning names the refused header (upper-cased), and its access line follows
    log = wait_for(lambda: served.proc.output().lower().count(marker) >= 2 and served.proc.output(), timeout=10,
                   message="the refused header in the log")
    assert control not in log[log.lower().index(marker):]
    assert not any(line.startswith("2099-01-01") for line in log.splitlines())


def test_the_access_log_still_drops_the_query_string(served: Served) -> None:
    marker = f"marker{free_port()}"
    assert requests.get(f"{served.url}/healthz/{marker}?jwt=secret-token%0aX", timeout=5).status_code == 404
    log = _log_after(served, marker)
    assert "jwt=" not in log and "secret-token" not in log


def _error(headers: dict[str, str], body: bytes) -> dict[str, str]:
    assert headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert set(error) == {"code", "message"}
    return error


def test_an_over_long_request_line_is_414_json(served: Served) -> None:
    status, headers, body = served.raw(f"GET /{'a' * 10_240} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert status == 414
    error = _error(headers, body)
    assert error["code"] == "uri_too_long" and "request line" in error["message"]


@pytest.mark.parametrize("headers_text", [
    "".join(f"X-Many-{n}: {n}\r\n" for n in range(200)),
    f"X-Big: {'b' * 10_240}\r\n",
], ids=["200 headers", "a 10 KB header"])
def test_headers_over_the_limits_are_431_json(served: Served, headers_text: str) -> None:
    status, headers, body = served.raw(f"GET /healthz HTTP/1.1\r\nHost: x\r\n{headers_text}\r\n".encode())
    assert status == 431
    error = _error(headers, body)
    assert error["code"] == "request_header_fields_too_large" and "headers" in error["message"]


def test_home_says_what_this_server_is(served: Served) -> None:
    answer = requests.get(f"{served.url}/", headers={"Accept": "application/json"}, timeout=5)
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "application/json"
    about = answer.json()
    assert set(about) == {"name", "version", "descriptor_url", "forge_manifest_command", "health_url", "docs"}
    assert about["name"] == "Projectrak Outgoing Webhooks"
    assert about["descriptor_url"] == f"{served.url}/atlassian-connect.json"
    assert requests.get(about["descriptor_url"], timeout=5).json()["baseUrl"] == served.url
    assert about["docs"].startswith("https://")
    assert about["forge_manifest_command"] == "addon forge manifest"
    assert requests.get(about["health_url"], timeout=5).status_code == 200

    page = requests.get(f"{served.url}/", timeout=5)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "Projectrak Outgoing Webhooks" in page.text and about["descriptor_url"] in page.text
    assert about["version"] in page.text


def test_the_addon_loggers_escape_what_a_request_put_in_a_message() -> None:
    """The add-on's own lines (webhook, project and field names, event types) go through the same escaping, and
    a traceback quoting a request stays indented under its record."""
    script = (
        "import logging\n"
        "from addon.app import configure_logging\n"
        "configure_logging()\n"
        "log = logging.getLogger('addon.test')\n"
        f"log.info('webhook saved name=%s', 'a\\n{FORGED}\\x1b[2J')\n"
        "try:\n"
        f"    raise ValueError('bad field \\n{FORGED}')\n"
        "except ValueError:\n"
        "    log.exception('intake failed')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                            check=True)
    lines = result.stderr.splitlines()
    assert lines[0].endswith(f"INFO addon.test webhook saved name=a\\n{FORGED}\\x1b[2J")
    assert lines[1].endswith("ERROR addon.test intake failed")
    assert all(line.startswith("  ") for line in lines[2:]) and len(lines) > 3
    assert not any(line.startswith("2099-01-01") for line in lines) and "\x1b" not in result.stderr
