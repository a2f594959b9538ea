"""`LOG_FORMAT=json` (CONTRACT §10.6): every line `addon serve` writes, its worker child's and gunicorn's access and
error lines included, is one JSON object with time, level, logger and message, and the tenant, webhook and
delivery ids as fields where a line is about them; control characters a request put in stay escaped."""

from __future__ import annotations

import json
import socket

import pytest

from tests.receivers import Receiver
from tests.reliability.harness import FIELD_CHANGES, PROJECT_ID, ProcessStack, create_hooks, new_site, wait_until
from tests.support.atlassian import FakeAtlassian


@pytest.mark.timeout(120)
def test_every_line_of_serve_is_one_json_object_with_ids_as_fields(
        sqlite_url: str, atlassian: FakeAtlassian, receiver: Receiver, make_stack) -> None:
    stack: ProcessStack = make_stack(sqlite_url)
    stack.env["LOG_FORMAT"] = "json"
    server = stack.start_server()
    site = new_site(atlassian, stack.url)
    hook = create_hooks(stack.url, site, receiver, 1)[0]
    answer = site.call(stack.url, "POST", FIELD_CHANGES, sub="account-1", json_body={
        "project": {"id": PROJECT_ID},
        "changes": [{"field": {"id": 1, "name": "Note", "type": "text"}, "previous": None, "current": "json"}]})
    assert answer.status_code == 202, answer.text
    receiver.wait_for(1, timeout=30, path=hook.path)
    # A path with an escape sequence and a line break (percent-encoded: gunicorn decodes them into its lines).
    with socket.create_connection(("127.0.0.1", stack.port), timeout=10) as conn:
        conn.sendall(b"GET /nothing%1b%5b2J%0aforged HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        while conn.recv(4096):
            pass

    def attempt_logged() -> list[dict] | None:
        records = [json.loads(line) for line in server.output().splitlines() if line.strip()]
        return records if any(r["message"].startswith("delivery attempt ") for r in records) else None

    records = wait_until(attempt_logged, timeout=30, message="the attempt's log line")
    for record in records:
        assert {"time", "level", "logger", "message"} <= record.keys(), record
    attempt = next(r for r in records if r["message"].startswith("delivery attempt "))
    assert attempt["logger"] == "addon.delivery.outcomes" and attempt["level"] == "INFO"
    assert isinstance(attempt["tenant_id"], int) and attempt["webhook_id"] == hook.id
    assert isinstance(attempt["delivery_id"], int)
    accepted = next(r for r in records if r["message"].startswith("projectrak change accepted "))
    assert accepted["tenant_id"] == attempt["tenant_id"]
    access = [r for r in records if r["logger"] == "gunicorn.access"]
    assert any(f" {FIELD_CHANGES} " in r["message"] for r in access), access
    forged = [r for r in access if "/nothing" in r["message"]]
    assert forged, access
    for record in forged:  # escaped as in text lines, even once decoded
        assert "\n" not in record["message"] and "\x1b" not in record["message"], record
        assert "/nothing\\x1b[2J\\nforged" in record["message"], record
    raw = server.output()
    assert "\x1b" not in raw and "\nforged" not in raw
