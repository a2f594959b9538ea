"""Secrets: after every other scenario of the run, no webhook secret (`whsec_…`), shared secret, `ADDON_SECRET_KEY`
or JWT appears in any log (every `addon serve`/`addon worker` log file, every log record of this process) or in any
answer of the add-on, except the one answer that creates or rotates a webhook's secret (and there only that secret).

The scenario first runs a workload of its own against `addon serve` (SQLite, without ADDON_SECRET_KEY, so secrets
are stored in plain text): a signed install, lifecycle calls with the token in the query string, the admin page,
every admin API route (create, rotate, test delivery, delivery log, redelivery), a delivery, refused and forged
tokens, bodies over 1 MiB (by length and chunked, through gunicorn), a re-install with a new shared secret and an
uninstall, custom header values and the operational webhook (its secret set, rotated, and signing the notice of a
webhook disabled by a 410), and `/metrics` scraped with a wrong token and the right one; its log lines are JSON
(`LOG_FORMAT=json`).
Run alone, it checks that workload; in `make test`, everything the suite did.
Time budget: 90 s (pytest-timeout).
"""

from __future__ import annotations

import json
import re
import secrets as secrets_module

import pytest
import requests

from tests.receivers import Receiver
from tests.reliability.harness import (
    COLLECTOR,
    FIELD_CHANGES,
    JWT_PATTERN,
    WHSEC_PATTERN,
    ProcessStack,
    new_site,
    record_figures,
    wait_until,
)
from tests.support.admin import AdminClient
from tests.support.atlassian import FakeAtlassian

MIB = 1024 * 1024


def _workload(stack: ProcessStack, atlassian: FakeAtlassian, receiver: Receiver) -> dict[str, int]:
    site = new_site(atlassian, stack.url)
    admin = AdminClient(stack.url, site)
    url = stack.url
    # Tokens in the query string, as Jira sends them to pages and lifecycle callbacks.
    assert site.call(url, "POST", "/lifecycle/enabled?x=1", json_body=site.lifecycle_body("enabled"),
                     in_query=True).status_code == 204
    assert site.call(url, "GET", "/admin/webhooks?lic=none&xdm_e=https%3A%2F%2Fx.atlassian.net",
                     in_query=True).status_code == 200
    created = admin.create("secrets", receiver.url("/secrets", host="127.0.0.1"))
    COLLECTOR.add_secret(created["secret"], f"webhook secret {created['id']}")
    webhook_id = created["id"]
    rotated = admin.request("POST", f"/api/webhooks/{webhook_id}/rotate-secret").json()["secret"]
    COLLECTOR.add_secret(rotated, f"webhook secret {webhook_id} (rotated)")
    assert admin.request("GET", "/api/webhooks").status_code == 200
    assert admin.request("GET", f"/api/webhooks/{webhook_id}").status_code == 200
    assert admin.request("PATCH", f"/api/webhooks/{webhook_id}", {"name": "renamed"}).status_code == 200
    test = admin.request("POST", f"/api/webhooks/{webhook_id}/test")
    assert test.status_code == 200 and test.json()["status"] == "OK", test.text
    body = {"project": {"id": 10000}, "changes": [{"field": {"id": 1, "name": "Budget", "type": "number"},
                                                   "previous": 1, "current": 2}]}
    assert site.call(url, "POST", FIELD_CHANGES, json_body=body, sub="someone").status_code == 202
    receiver.wait_for(2, timeout=30, path="/secrets")
    items = wait_until(lambda: [i for i in admin.request("GET", f"/api/webhooks/{webhook_id}/deliveries")
                                .json()["items"] if i["status"] == "OK" and i["attempt"] == 1],
                       timeout=30, message="the delivery log")
    assert admin.request("POST", f"/api/deliveries/{items[0]['delivery_id']}/redeliver").status_code == 202
    # Refused: forged, expired and replayed tokens; a token of an uninstalled tenant comes at the end.
    assert site.call(url, "POST", FIELD_CHANGES, json_body=body, secret="x" * 48).status_code == 401
    assert site.call(url, "POST", FIELD_CHANGES, json_body=body, exp_in=-200, iat_offset=-400).status_code == 401
    token = site.token("POST", "/lifecycle/enabled")
    assert site.call(url, "POST", "/lifecycle/disabled", token=token, in_query=True).status_code == 401
    assert site.call(url, "GET", "/api/webhooks", token=token).status_code == 401
    # Over 1 MiB through gunicorn: by Content-Length and chunked.
    big = b'{"project": {"id": 10000}, "changes": [], "x": "' + b"x" * MIB + b'"}'
    for data in (big, iter([big[i:i + 65536] for i in range(0, len(big), 65536)])):
        response = _post(url + FIELD_CHANGES, data, {"Authorization": f"JWT {site.token('POST', FIELD_CHANGES)}"})
        assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large", \
            response.text[:200]
    # Custom header values (sent on every attempt, never shown) and the operational webhook's secret (shown once by
    # the PATCH that sets its URL and by its rotation), which signs the notice of a webhook the add-on disabled.
    header_value = secrets_module.token_urlsafe(24)
    COLLECTOR.add_secret(header_value, "custom header value")
    gated = admin.create("gateway", receiver.url("/gone", host="127.0.0.1"), headers={"X-Api-Key": header_value})
    assert admin.request("PATCH", f"/api/webhooks/{gated['id']}",
                         {"headers": {"X-Api-Key": None, "X-Other": header_value[::-1]}}).status_code == 200
    COLLECTOR.add_secret(header_value[::-1], "custom header value (second)")
    operational = admin.request("PATCH", "/api/settings", {"operational_url": receiver.url("/ops", host="127.0.0.1")})
    assert operational.status_code == 200, operational.text
    COLLECTOR.add_secret(operational.json()["secret"], "operational webhook secret")
    rotated_ops = admin.request("POST", "/api/settings/rotate-secret")
    assert rotated_ops.status_code == 200, rotated_ops.text
    COLLECTOR.add_secret(rotated_ops.json()["secret"], "operational webhook secret (rotated)")
    assert admin.request("GET", "/api/settings").status_code == 200
    receiver.behave("/gone", status=410)
    assert site.call(url, "POST", FIELD_CHANGES, json_body=body, sub="someone").status_code == 202
    [notice] = receiver.wait_for(1, timeout=30, path="/ops")
    assert notice.json()["data"]["event"] == "webhook.disabled"
    assert receiver.requests_for("/gone")[0].headers["x-api-key"] == header_value
    assert admin.request("GET", "/api/webhooks").status_code == 200
    # A re-install with a new shared secret, then an uninstall; the old secret and the uninstalled tenant fail.
    old_secret = site.shared_secret
    site.shared_secret = site.shared_secret[::-1] + "new"
    COLLECTOR.add_site(site)
    assert site.install(url).status_code == 204
    assert site.call(url, "POST", FIELD_CHANGES, json_body=body, secret=old_secret).status_code == 401
    assert site.install(url, event="uninstalled").status_code == 204
    assert site.call(url, "POST", FIELD_CHANGES, json_body=body).status_code == 401
    # The metrics, refused and answered (the scan reads both answers).
    token = stack.env["METRICS_TOKEN"]
    assert requests.get(f"{url}/metrics", headers={"Authorization": "Bearer x" + token}, timeout=10).status_code == 401
    scrape = requests.get(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert scrape.status_code == 200 and "addon_delivery_attempts_total" in scrape.text
    return {"webhooks_created": 2, "secrets_rotated": 2}


def _post(url: str, data: object, headers: dict[str, str]) -> requests.Response:
    for attempt in range(2):
        try:
            return requests.post(url, data=data, headers=headers, timeout=30)
        except requests.ConnectionError:
            # gunicorn may answer 413 before reading the whole body and close: the answer is still the point.
            if attempt:
                raise
    raise AssertionError("unreachable")


def _findings(text: str, where: str, secrets: dict[str, str]) -> list[str]:
    found = [f"{where}: a webhook secret ({m.group()[:12]}…)" for m in WHSEC_PATTERN.finditer(text)]
    found += [f"{where}: a JWT ({m.group()[:16]}…)" for m in JWT_PATTERN.finditer(text)]
    found += [f"{where}: {kind}" for secret, kind in secrets.items() if len(secret) >= 16 and secret in text]
    return found


@pytest.mark.after_all_scenarios
@pytest.mark.timeout(90)
@pytest.mark.parametrize("log_format", ["plain", "json"])
def test_no_secret_in_any_log_or_answer(tmp_path, atlassian: FakeAtlassian, receiver: Receiver, make_stack,
                                        log_format: str) -> None:
    stack: ProcessStack = make_stack(f"sqlite:///{tmp_path}/secrets.db", secret_key=None)
    # Plain and JSON log lines (`LOG_FORMAT=json`), and `/metrics` with its token, are scanned.
    if log_format == "json":
        stack.env["LOG_FORMAT"] = "json"
    stack.env["METRICS_TOKEN"] = metrics_token = secrets_module.token_urlsafe(24)
    COLLECTOR.add_secret(metrics_token, "METRICS_TOKEN")
    stack.start_server()
    try:
        _workload(stack, atlassian, receiver)
    finally:
        stack.stop()
    lines = [line for line in stack.server.output().splitlines() if line.strip()] if stack.server else []
    assert lines
    if log_format == "json":
        assert all(json.loads(line)["message"] is not None for line in lines)
    secrets = dict(COLLECTOR.secrets)
    probe = f"{next(iter(atlassian.sites.values())).token('GET', '/')} {next(iter(secrets))} whsec_{'A' * 43}="
    assert len(_findings(probe, "probe", secrets)) >= 3, "the scan must see each kind of thing it looks for"
    findings: list[str] = []
    log_lines = 0
    for path in COLLECTOR.log_files:
        if not path.exists():
            continue
        text = path.read_text(errors="replace")
        log_lines += text.count("\n")
        findings += _findings(text, f"log {path.name}", secrets)
    in_process = "\n".join(COLLECTOR.log_lines)
    findings += _findings(in_process, "in-process log", secrets)
    allowed = 0
    for answer in COLLECTOR.answers:
        text = answer.text
        if answer.may_carry_secret:
            own = json.loads(text.split("\n\n", 1)[1])["secret"]
            text = text.replace(own, "<the secret this answer creates>")
            allowed += 1
        findings += _findings(text, f"answer to {answer.method} {re.sub(r'jwt=[^&]+', 'jwt=…', answer.url)}",
                              secrets)
    figures = {"log_files": len(COLLECTOR.log_files), "log_lines": log_lines + len(COLLECTOR.log_lines),
               "in_process_log_records": len(COLLECTOR.log_lines), "answers": len(COLLECTOR.answers),
               "answers_allowed_their_own_secret": allowed, "known_secrets": len(secrets), "findings": len(findings),
               "first_findings": findings[:10]}
    record_figures("secrets" if log_format == "json" else "secrets-plain-logs", figures)
    assert allowed >= 5  # the workload's creates, rotations and operational URL at least
    assert sum(1 for answer in COLLECTOR.answers if answer.url.endswith("/metrics")) >= 2
    assert not findings, findings[:20]
