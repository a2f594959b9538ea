"""Hostile input at every endpoint, against the add-on served in this process (werkzeug, for speed) with
`OUTGOING_ALLOW_PRIVATE_NETWORKS=0` and no background work (so that only requests change the database):

- 10,000 Hypothesis-generated requests in all (bodies, headers, methods, paths, queries and tokens, valid and
  not) over the field-change, Jira event, lifecycle and admin API routes and any other path: every answer is
  `2xx` or `4xx` (never `5xx`), every error is the JSON error shape, and a refused request stores nothing (a
  fingerprint of every table a request can write is unchanged);
- bodies over 1 MiB get a clear `413` JSON, with a length or chunked;
- forged and replayed JWTs get `401` on every route;
- SSRF URLs in every form get `400` (`private_address` or `invalid_url`) at save time, and a name whose DNS answer
  changes to a private address after saving is blocked at send time (nothing reaches the receiver);
- one tenant reaching for another's webhooks and deliveries gets `404`, and changes nothing;
- generated families, on both databases: control characters and lone surrogates in every string, huge and long
  numbers in every numeric field (`422` naming the place), and hostile receivers' bytes (recorded, cleaned, once).

All traffic stays on 127.0.0.1: names resolve through a fake DNS table (`FakeDNS`, also patched over
`socket.getaddrinfo`), and a connection to any address that is not loopback fails in this process (a guard on
`socket.socket.connect`), so even a public IP literal that the fuzzer saves as a webhook URL never leaves.
Time budget: about 2 minutes in all; each test has its own pytest-timeout.
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import json
import socket
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import jwt
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from addon.admin import api as admin_api
from addon.intake.fields import FIELD_TYPES
from addon.intake.jira_events import JIRA_EVENTS
from addon.sending.addresses import check_url_for_saving
from addon.sending.client import Sender
from addon.storage.models import (
    Attempt,
    Delivery,
    Event,
    JiraInboxEvent,
    ProjectSnapshot,
    SeenJiraWebhook,
    Tenant,
    UsedInstallToken,
    Webhook,
)
from tests.conftest import make_settings
from tests.receivers import Receiver, ScriptedServer
from tests.reliability.harness import COLLECTOR, env_float, record_figures, wait_until
from tests.support.addon_server import AddonServer
from tests.support.atlassian import FakeAtlassian, FakeSite, new_rsa_key

FIELD_CHANGES = "/events/projectrak/field-changes"
MIB = 1024 * 1024
PUBLIC_IP = "93.184.216.34"  # only ever in the fake DNS table: the network guard stops any connection to it
FIGURES: dict[str, Any] = {"fuzz": {}, "seconds": {}, "codes": {}}
_REAL_GETADDRINFO = socket.getaddrinfo
_REAL_CONNECT = socket.socket.connect


#: Generated requests over the five fuzz families (the issue's 10,000), split 20/15/15/30/20 %.
FUZZ_TOTAL = int(env_float("RELIABILITY_FUZZ_EXAMPLES", 10_000))
FAMILIES = ("field-changes", "jira-events", "lifecycle", "admin-api", "any-path")


def fuzz_settings(share: float) -> settings:
    return settings(max_examples=max(1, round(FUZZ_TOTAL * share)), deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))


# -- the network of this module: a fake DNS, and nothing but loopback --------------------------------------------


class FakeDNS:
    """getaddrinfo for tests: numeric hosts as the system reads them (no lookup), names from `table`, else
    NXDOMAIN."""

    def __init__(self) -> None:
        self.table: dict[str, list[str]] = {"localhost": ["127.0.0.1"]}
        self.lookups: Counter[str] = Counter()

    def resolve(self, host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0,  # noqa: A002
                flags: int = 0) -> list[tuple[Any, ...]]:
        try:
            return _REAL_GETADDRINFO(host, port, family, type, proto, flags | socket.AI_NUMERICHOST)
        except (socket.gaierror, UnicodeError):
            pass
        name = (host.decode() if isinstance(host, bytes) else str(host)).lower().rstrip(".")
        self.lookups[name] += 1
        addresses = self.table.get(name)
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known (fake DNS)")
        port_number = int(port or 0) if str(port or "0").isdigit() else 0
        answers = []
        for address in addresses:
            if ipaddress.ip_address(address).version == 4:
                answers.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port_number)))
            else:
                answers.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port_number, 0, 0)))
        return answers


def _loopback_only_connect(self: socket.socket, address: Any) -> Any:
    if isinstance(address, tuple):
        try:
            off_machine = not ipaddress.ip_address(str(address[0]).split("%", 1)[0]).is_loopback
        except ValueError:
            off_machine = True
        if off_machine:
            raise OSError(errno.ENETUNREACH, f"test network guard: {address[0]} is not on this machine")
    return _REAL_CONNECT(self, address)


# -- the environment: one add-on, four tenants ---------------------------------------------------------------------


@dataclass(repr=False)
class Env:
    addon: AddonServer
    atlassian: FakeAtlassian
    dns: FakeDNS
    receiver: Receiver
    a: FakeSite  # the tenant the fuzzer acts as
    b: FakeSite  # another tenant
    lifecycle: FakeSite  # installs, uninstalls, enables and disables by the fuzzer
    roamer: FakeSite  # tokens for arbitrary paths
    gone: FakeSite  # uninstalled
    a_webhooks: list[int] = field(default_factory=list)
    b_webhooks: list[int] = field(default_factory=list)
    a_deliveries: list[int] = field(default_factory=list)
    b_deliveries: list[int] = field(default_factory=list)
    stranger_key: Any = None  # an RSA key no key server knows
    session: requests.Session = field(default_factory=requests.Session)
    last_fingerprint: tuple = ()

    def __repr__(self) -> str:
        return f"Env(addon={self.addon.url})"

    def fingerprint(self) -> tuple:
        """Everything a request can write: row counts, and the columns of webhooks, tenants and deliveries that a
        request changes (not the last-status columns that a 2xx test delivery writes)."""
        counted = (Tenant, Event, Delivery, JiraInboxEvent, SeenJiraWebhook, UsedInstallToken, Webhook, ProjectSnapshot)
        with self.addon.sessions() as session:
            counts = session.execute(select(*(select(func.count()).select_from(m).scalar_subquery()
                                              for m in counted))).one()
            deliveries = session.execute(select(func.coalesce(func.sum(Delivery.id), 0),
                                                func.max(Delivery.next_attempt_at), func.max(Delivery.finished_at),
                                                func.count().filter(Delivery.status == "pending"))).one()
            webhooks = session.execute(select(Webhook.id, Webhook.name, Webhook.url, Webhook.enabled,
                                              Webhook.disabled_reason, Webhook.deleted_at, Webhook.secret,
                                              Webhook.previous_secret).order_by(Webhook.id)).all()
            tenants = session.execute(select(Tenant.id, Tenant.client_key, Tenant.state, Tenant.shared_secret,
                                             Tenant.base_url).order_by(Tenant.id)).all()
        return (tuple(counts), tuple(deliveries), tuple(map(tuple, webhooks)), tuple(map(tuple, tenants)))


def _site(atlassian: FakeAtlassian, addon: AddonServer) -> FakeSite:
    site = atlassian.new_site()
    COLLECTOR.add_site(site)
    site.admins.add("admin-account")
    site.add_project(10000, "DEMO", "Demo project")
    site.add_project(10001, "OPS", "Operations")
    assert site.install(addon.url).status_code == 204
    assert site.call(addon.url, "POST", "/lifecycle/enabled", json_body=site.lifecycle_body("enabled")).status_code \
        == 204
    return site


def _create(addon: AddonServer, site: FakeSite, name: str, url: str) -> int:
    response = site.call(addon.url, "POST", "/api/webhooks", json_body={"name": name, "url": url},
                         token=site.context_token())
    assert response.status_code == 201, response.text
    COLLECTOR.add_secret(response.json()["secret"], "webhook secret")
    return response.json()["id"]


def fresh_tenant(env: Env, webhooks: int = 2) -> tuple[FakeSite, list[int], list[int]]:
    """A new tenant with `webhooks` webhooks and one event's deliveries, independent of what the fuzzing did."""
    site = _site(env.atlassian, env.addon)
    ids = [_create(env.addon, site, f"hook {n}", f"https://hooks-{n}.{site.name}.invalid/in") for n in range(webhooks)]
    deliveries = _event(env.addon, site)
    env.last_fingerprint = env.fingerprint()
    return site, ids, deliveries


def _event(addon: AddonServer, site: FakeSite) -> list[int]:
    body = {"project": {"id": 10000}, "changes": [{"field": {"id": 1, "name": "Budget", "type": "number"},
                                                   "previous": 1, "current": 2}]}
    response = site.call(addon.url, "POST", FIELD_CHANGES, json_body=body, sub="someone")
    assert response.status_code == 202, response.text
    with addon.sessions() as session:
        return list(session.scalars(select(Delivery.id).where(Delivery.event_id == response.json()["event_id"])))


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, fernet_key: str) -> Iterator[Env]:
    dns = FakeDNS()
    with pytest.MonkeyPatch.context() as patch, Receiver() as receiver:
        patch.setattr(socket, "getaddrinfo", dns.resolve)
        patch.setattr(socket.socket, "connect", _loopback_only_connect)
        patch.setattr(admin_api, "check_url_for_saving", functools.partial(check_url_for_saving, resolve=dns.resolve))
        atlassian = FakeAtlassian()
        database = tmp_path_factory.mktemp("hostile") / "addon.db"
        settings_ = make_settings(atlassian, f"sqlite:///{database}", allow_private_networks=False,
                                  secret_key=fernet_key, ca_bundle=receiver.ca_path, outgoing_timeout_s=2.0)
        addon = AddonServer(settings_, background=False)
        addon.runtime._sender = Sender(2.0, receiver.ca_path, False, "Projectrak-Outgoing-Webhooks/test",
                                       resolve=dns.resolve)
        COLLECTOR.add_addon_url(addon.url)
        try:
            sites = [_site(atlassian, addon) for _ in range(5)]
            env = Env(addon, atlassian, dns, receiver, *sites, stranger_key=new_rsa_key()[0])
            for site, ids in ((env.a, env.a_webhooks), (env.b, env.b_webhooks)):
                ids += [_create(addon, site, f"hook {n}", f"https://hooks-{n}.{site.name}.invalid/in") for n in (1, 2)]
            env.a_deliveries += _event(addon, env.a)
            env.b_deliveries += _event(addon, env.b)
            assert env.gone.install(addon.url, event="uninstalled").status_code == 204
            env.last_fingerprint = env.fingerprint()
            yield env
        finally:
            addon.stop()
            atlassian.stop()


# -- requests, tokens and the checks made on every answer ----------------------------------------------------------


TOKEN_KINDS = ("valid", "valid-in-query", "context", "context-non-admin", "missing", "garbage", "wrong-secret",
               "expired", "alg-none", "wrong-qsh", "other-tenant", "tampered", "uninstalled-tenant", "no-sub",
               "not-yet-valid", "empty-header")
#: A third of the requests carry a token that is valid for them (or a context token, on the admin API).
token_kinds = st.one_of(st.sampled_from(TOKEN_KINDS), st.sampled_from(("valid", "valid-in-query", "context")))
latin1 = st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f")


def _b64(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token_for(env: Env, kind: str, site: FakeSite, method: str, path: str, query: str, garbage: str
              ) -> tuple[dict[str, str], str]:
    """(headers, query) carrying a token of `kind` for the request."""
    token: str | None
    if kind in ("valid", "valid-in-query"):
        token = site.token(method, path, query)
    elif kind == "context":
        token = site.context_token()
    elif kind == "context-non-admin":
        token = site.context_token(sub="not-an-admin")
    elif kind in ("missing", "empty-header"):
        token = None
    elif kind == "garbage":
        token = garbage
    elif kind == "wrong-secret":
        token = site.token(method, path, query, secret="w" * 48)
    elif kind == "expired":
        token = site.token(method, path, query, exp_in=-120, iat_offset=-400)
    elif kind == "not-yet-valid":
        token = site.token(method, path, query, iat_offset=900)
    elif kind == "alg-none":
        claims = jwt.decode(site.token(method, path, query), options={"verify_signature": False})
        token = f"{_b64(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{_b64(json.dumps(claims).encode())}."
    elif kind == "wrong-qsh":
        token = site.token("GET" if method != "GET" else "POST", path + "x", query)
    elif kind == "other-tenant":
        other = env.b if site is not env.b else env.a
        token = other.context_token() if path.startswith("/api/") else other.token(method, path, query)
    elif kind == "tampered":
        header, payload, signature = site.token(method, path, query).split(".")
        claims = json.loads(_b64decode(payload)) | {"sub": "admin-account", "exp": int(time.time()) + 9999}
        token = f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"
    elif kind == "uninstalled-tenant":
        token = env.gone.token(method, path, query)
    elif kind == "no-sub":
        token = site.token(method, path, query, sub=None)
    else:
        raise AssertionError(kind)
    if kind == "empty-header":
        return {"Authorization": "JWT "}, query
    if token is None:
        return {}, query
    if kind == "valid-in-query":
        return {}, (query + "&" if query else "") + "jwt=" + token
    return {"Authorization": f"JWT {token}"}, query


def _b64decode(text: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def send(env: Env, family: str, method: str, path: str, query: str, headers: dict[str, str], body: bytes | None
         ) -> requests.Response:
    """Send one request and check what every answer must be; returns the answer."""
    url = env.addon.url + path + ("?" + query if query else "")
    started = time.monotonic()
    response = env.session.request(method, url, data=body, headers=headers, timeout=30)
    FIGURES["seconds"][family] = FIGURES["seconds"].get(family, 0.0) + time.monotonic() - started
    status = response.status_code
    stats: Counter = FIGURES["fuzz"].setdefault(family, Counter())
    stats[f"{status // 100}xx"] += 1
    stats["requests"] += 1
    assert status < 500, f"{method} {path}?{query} answered {status}: {response.text[:500]}"
    assert 200 <= status < 300 or 400 <= status < 500, f"{method} {path} answered {status}"
    fingerprint = env.fingerprint()
    if status >= 400:
        if method != "HEAD":
            error = response.json()["error"]
            assert isinstance(error["code"], str) and error["code"] and isinstance(error["message"], str)
            FIGURES["codes"].setdefault(family, Counter())[f"{status} {error['code']}"] += 1
        assert fingerprint == env.last_fingerprint, f"{method} {path} answered {status} and changed the database"
    env.last_fingerprint = fingerprint
    return response


# -- strategies ------------------------------------------------------------------------------------------------------


scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=-(2**70), max_value=2**70),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30),
                    st.sampled_from(["", "DEMO", "OPS", "10000", "1.50", "2w 3d", "2023-01-31", "whsec_x", "<b>x</b>",
                                     "'; DROP TABLE webhooks; --", "\u202e", "\x00"]))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                            st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                           max_leaves=15)
values = st.one_of(json_values, st.sampled_from(["DEMO", "10000", "1.50", "2w 3d 4h 30m", "2023-01-31T10:00:00Z"]),
                   st.fixed_dictionaries({"name": st.text(max_size=5)}),
                   st.fixed_dictionaries({"accountId": st.text(max_size=5)}), st.lists(st.text(max_size=4), max_size=3))
changes = st.lists(st.one_of(json_values, st.fixed_dictionaries({
    "field": st.fixed_dictionaries({"id": st.one_of(st.integers(-10, 10**6), json_values),
                                    "name": st.one_of(st.just("Field"), json_values),
                                    "type": st.one_of(st.sampled_from(sorted(FIELD_TYPES)), json_values)}),
    "previous": values, "current": values})), max_size=5)
plausible_changes = st.lists(st.fixed_dictionaries({
    "field": st.fixed_dictionaries({"id": st.integers(-10, 10**6), "name": st.just("Field"),
                                    "type": st.sampled_from(sorted(FIELD_TYPES))}),
    "previous": values, "current": values}), min_size=1, max_size=3)
plausible_field_changes = st.fixed_dictionaries(
    {"project": st.sampled_from([{"id": 10000}, {"key": "OPS"}, {"id": "10001"}]), "changes": plausible_changes},
    optional={"timestamp": st.integers(0, 2**45)})
field_change_bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({"project": st.one_of(json_values, st.sampled_from([{"id": 10000}, {"key": "OPS"},
                                                                              {"id": "10001"}, {"key": "NOPE"}])),
                           "changes": st.one_of(changes, json_values)},
                          optional={"timestamp": st.one_of(st.integers(-5, 2**64), json_values)}),
)
plausible_jira_body = st.fixed_dictionaries({"timestamp": st.integers(0, 2**45), "project": st.fixed_dictionaries(
    {"id": st.sampled_from([10000, "10001"]), "key": st.sampled_from(["DEMO", "OPS"])})})
jira_bodies = st.one_of(json_values, plausible_jira_body, st.fixed_dictionaries(
    {"project": st.one_of(json_values, st.fixed_dictionaries(
        {"id": st.one_of(st.sampled_from([10000, "10001", 424242]), json_values)},
        optional={"key": json_values, "name": json_values, "projectLead": json_values,
                  "assigneeType": json_values}))},
    optional={"timestamp": st.one_of(st.integers(-5, 2**64), json_values), "webhookEvent": json_values}))


def encoded(strategy: st.SearchStrategy) -> st.SearchStrategy[bytes | None]:
    """Bodies: JSON documents (compact or not, ASCII-escaped or not), raw bytes, or none at all."""
    as_json = st.builds(lambda v, ascii_, indent: json.dumps(v, ensure_ascii=ascii_, indent=indent).encode(),
                        strategy, st.booleans(), st.sampled_from([None, 2]))
    return st.one_of(as_json, as_json, as_json, st.binary(max_size=200), st.none(),
                     st.text(max_size=50).map(str.encode))


header_sets = st.dictionaries(
    st.one_of(st.sampled_from(["Content-Type", "Accept", "Content-Encoding", "X-Atlassian-Webhook-Identifier",
                               "X-Atlassian-Webhook-Flow", "X-Forwarded-For", "X-Forwarded-Proto", "Origin",
                               "Cookie", "Accept-Language", "X-Requested-With"]),
              st.from_regex(r"\AX-[A-Za-z0-9-]{1,20}\Z")),
    st.one_of(st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded",
                               "multipart/form-data; boundary=zz", "gzip", "application/json; charset=latin-1"]),
              st.text(latin1, max_size=80).map(str.strip)),
    max_size=4)
queries = st.one_of(st.just(""), st.lists(st.tuples(st.text(max_size=8), st.text(max_size=12)), max_size=3)
                    .map(lambda pairs: urlencode(pairs)))
garbage_tokens = st.one_of(st.text(latin1, max_size=60).map(str.strip),
                           st.sampled_from(["not.a.jwt", "a.b.c", "eyJ.eyJ.", "..", "x" * 500]))


def request_parts(env: Env, data: st.DataObject, site: FakeSite, method: str, path: str, body_strategy: Any,
                  plausible: Any = None) -> tuple[dict[str, str], str, bytes | None, str]:
    """Query, headers (with a token of a random kind) and body. With `plausible`, a third of the requests are
    ones the add-on should accept: a valid token and a plausible JSON document (headers still random)."""
    query = data.draw(queries, label="query")
    if plausible is not None and data.draw(st.integers(0, 2), label="plausible") == 0:
        kind = "valid"
        body: bytes | None = json.dumps(data.draw(plausible, label="plausible body")).encode()
    else:
        kind = data.draw(token_kinds, label="token")
        body = data.draw(encoded(body_strategy), label="body")
    auth, query = token_for(env, kind, site, method, path, query, data.draw(garbage_tokens, label="garbage"))
    headers = {**data.draw(header_sets, label="headers"), **auth}
    return headers, query, body, kind


# -- 10,000 generated requests -------------------------------------------------------------------------------------


@pytest.mark.timeout(240)
@fuzz_settings(0.20)
@given(data=st.data())
def test_fuzz_field_changes(env: Env, data: st.DataObject) -> None:
    headers, query, body, _ = request_parts(env, data, env.a, "POST", FIELD_CHANGES, field_change_bodies,
                                            plausible_field_changes)
    send(env, "field-changes", "POST", FIELD_CHANGES, query, headers, body)


@pytest.mark.timeout(240)
@fuzz_settings(0.15)
@given(data=st.data(),
       event=st.one_of(st.sampled_from(JIRA_EVENTS), st.sampled_from(JIRA_EVENTS),
                       st.text("abcdefghijklmnopqrstuvwxyz_", max_size=20)))
def test_fuzz_jira_events(env: Env, data: st.DataObject, event: str) -> None:
    path = f"/events/jira/{event}"
    headers, query, body, _ = request_parts(env, data, env.a, "POST", path, jira_bodies, plausible_jira_body)
    headers.setdefault("X-Atlassian-Webhook-Identifier", data.draw(st.one_of(st.uuids().map(str),
                                                                             st.text(latin1, max_size=300)
                                                                             .map(str.strip))))
    send(env, "jira-events", "POST", path, query, headers, body)


INSTALL_TOKEN_KINDS = ("valid", "valid", "replayed", "wrong-aud", "unknown-kid", "bad-kid", "stranger-key", "expired",
                       "hs256", "no-qsh", "wrong-qsh", "missing", "garbage", "wrong-issuer")


def install_token(env: Env, kind: str, event: str, issuer: str, kid_text: str, used: list[str]) -> str | None:
    atlassian, url, path = env.atlassian, env.addon.url, f"/lifecycle/{event}"
    if kind == "valid":
        token = atlassian.install_token(url, path, issuer=issuer)
        used.append(token)
        return token
    if kind == "replayed":
        return used[-1] if used else None
    if kind == "wrong-aud":
        return atlassian.install_token(url, path, issuer=issuer, aud="https://evil.example")
    if kind == "unknown-kid":
        return atlassian.install_token(url, path, issuer=issuer, kid="no-such-key")
    if kind == "bad-kid":
        return atlassian.install_token(url, path, issuer=issuer, kid=kid_text or "../../etc/passwd",
                                       key=env.stranger_key)
    if kind == "stranger-key":
        return atlassian.install_token(url, path, issuer=issuer, key=env.stranger_key)
    if kind == "expired":
        return atlassian.install_token(url, path, issuer=issuer, exp_in=-100, iat_offset=-400)
    if kind == "hs256":
        return env.lifecycle.token("POST", path)
    if kind == "no-qsh":
        return atlassian.install_token(url, path, issuer=issuer, omit=("qsh",))
    if kind == "wrong-qsh":
        return atlassian.install_token(url, path, issuer=issuer, qsh_value="0" * 64)
    if kind == "wrong-issuer":
        return atlassian.install_token(url, path, issuer="someone-else")
    if kind == "garbage":
        return kid_text or "garbage"
    return None


lifecycle_mutations = st.dictionaries(st.sampled_from(["key", "clientKey", "sharedSecret", "baseUrl", "displayUrl",
                                                       "productType", "eventType", "extra"]),
                                      st.one_of(json_values, st.sampled_from(["https://x.atlassian.net",
                                                                              "http://127.0.0.1:1/x", "", "a" * 300])),
                                      max_size=3)


@pytest.mark.timeout(240)
@fuzz_settings(0.15)
@given(data=st.data(), event=st.sampled_from(["installed", "uninstalled", "enabled", "disabled"]))
def test_fuzz_lifecycle(env: Env, data: st.DataObject, event: str) -> None:
    site = env.lifecycle
    path = f"/lifecycle/{event}"
    body_doc: Any = site.lifecycle_body(event) | data.draw(lifecycle_mutations, label="changes")
    if data.draw(st.booleans(), label="drop a field") and body_doc:
        body_doc.pop(data.draw(st.sampled_from(sorted(body_doc))), None)
    body_doc = data.draw(st.one_of(st.just(body_doc), json_values), label="body document")
    headers = data.draw(header_sets, label="headers")
    query = data.draw(queries, label="query")
    if event in ("installed", "uninstalled"):
        issuer = body_doc.get("clientKey") if isinstance(body_doc, dict) else None
        issuer = issuer if isinstance(issuer, str) and issuer else site.client_key
        kind = data.draw(st.sampled_from(INSTALL_TOKEN_KINDS), label="install token")
        kid_text = data.draw(st.text(latin1, max_size=40).map(str.strip), label="kid or garbage")
        token = install_token(env, kind, event, issuer, kid_text, FIGURES.setdefault("install_tokens", []))
        if token:
            headers["Authorization"] = f"JWT {token}"
    else:
        auth, query = token_for(env, data.draw(token_kinds), site, "POST", path, query,
                                data.draw(garbage_tokens))
        headers |= auth
    body = data.draw(st.one_of(st.just(json.dumps(body_doc).encode()), encoded(json_values)), label="body")
    send(env, "lifecycle", "POST", path, query, headers, body)


ADMIN_ROUTES = [("GET", "/api/webhooks"), ("POST", "/api/webhooks"), ("GET", "/api/webhooks/{w}"),
                ("PATCH", "/api/webhooks/{w}"), ("DELETE", "/api/webhooks/{w}"), ("POST", "/api/webhooks/{w}/test"),
                ("POST", "/api/webhooks/{w}/rotate-secret"), ("GET", "/api/webhooks/{w}/deliveries"),
                ("POST", "/api/deliveries/{d}/redeliver"), ("GET", "/admin/webhooks")]
webhook_urls = st.one_of(
    st.text(max_size=40),
    st.builds(lambda host, path: f"https://{host}/{path}",
              st.one_of(st.from_regex(r"\A[a-z0-9-]{1,12}(\.[a-z0-9-]{1,12}){0,3}\Z"),
                        st.ip_addresses().map(lambda ip: f"[{ip}]" if ip.version == 6 else str(ip)),
                        st.sampled_from(["localhost", "internal.test", "rebind.test", "127.1", "0x7f.1",
                                         "2130706433", "[::ffff:127.0.0.1]", "user:pw@example.invalid"])),
              st.text("abcdefghij/-_.?=&%", max_size=15)),
    st.sampled_from(["http://example.invalid/x", "https://", "ftp://x.invalid", "https://x.invalid:0/",
                     "https://x.invalid:99999/", "javascript:alert(1)"]))
webhook_bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({}, optional={"name": st.one_of(st.text(max_size=300), json_values), "url": webhook_urls,
                                        "enabled": st.one_of(st.booleans(), json_values),
                                        "secret": st.text(max_size=10), "tenant_id": st.integers()}))


@pytest.mark.timeout(300)
@fuzz_settings(0.30)
@given(data=st.data(), route=st.sampled_from(ADMIN_ROUTES),
       method=st.one_of(st.none(), st.sampled_from(["GET", "POST", "PATCH", "DELETE", "PUT", "HEAD", "OPTIONS"])))
def test_fuzz_admin_api(env: Env, data: st.DataObject, route: tuple[str, str], method: str | None) -> None:
    method = method or route[0]
    webhook_id = data.draw(st.one_of(st.sampled_from(env.a_webhooks + env.b_webhooks), st.integers(-5, 2**40),
                                     st.text("0123456789abc-", max_size=8)), label="webhook id")
    delivery_id = data.draw(st.one_of(st.sampled_from(env.a_deliveries + env.b_deliveries), st.integers(-5, 2**40),
                                      st.text("0123456789abc-", max_size=8)), label="delivery id")
    path = route[1].format(w=quote(str(webhook_id)), d=quote(str(delivery_id)))
    query = data.draw(st.one_of(queries, st.builds(lambda limit, before: urlencode({"limit": limit, "before": before}),
                                                   st.one_of(st.integers(-3, 500), st.text(max_size=5)),
                                                   st.one_of(st.integers(-3, 2**40), st.text(max_size=5)))))
    kind = data.draw(token_kinds, label="token")
    auth, query = token_for(env, kind, env.a, method, path, query, data.draw(garbage_tokens))
    headers = {**data.draw(header_sets, label="headers"), **auth}
    body = data.draw(encoded(webhook_bodies), label="body")
    response = send(env, "admin-api", method, path, query, headers, body)
    if 200 <= response.status_code < 300 and method != "OPTIONS":  # OPTIONS: Flask's own answer, no data
        acting_for_b = kind == "other-tenant"
        foreign = (env.a_webhooks + env.a_deliveries) if acting_for_b else (env.b_webhooks + env.b_deliveries)
        mine_webhooks, mine_deliveries = (env.b_webhooks, env.b_deliveries) if acting_for_b else (env.a_webhooks,
                                                                                                env.a_deliveries)
        if "{w}" in route[1]:
            assert webhook_id not in foreign or webhook_id in mine_webhooks, f"{method} {path}: another tenant's"
        if "{d}" in route[1]:
            assert delivery_id not in foreign or delivery_id in mine_deliveries, f"{method} {path}: another tenant's"
        sent = _json_or_none(body)
        saving = (method, route[1]) in (("POST", "/api/webhooks"), ("PATCH", "/api/webhooks/{w}"))
        if saving and isinstance(sent, dict) and isinstance(sent.get("url"), str):
            check_url_for_saving(sent["url"].strip(), False, resolve=env.dns.resolve)  # what was saved is allowed


def _json_or_none(body: bytes | None) -> Any:
    try:
        return json.loads(body or b"")
    except ValueError:
        return None


KNOWN_PATHS = ["/", "/healthz", "/atlassian-connect.json", "/static/admin.js", "/static/nope.js", "/admin/webhooks",
               "/lifecycle/enabled", "/lifecycle/disabled", "/lifecycle/installed", FIELD_CHANGES,
               "/events/jira/project_created", "/api/webhooks", "/api/webhooks/1", "/api/deliveries/1/redeliver",
               "/events/projectrak/field-changes/", "//api//webhooks", "/api/webhooks/1/../../healthz",
               "/%2e%2e/%2e%2e/etc/passwd", "/api/webhooks/%00"]


@pytest.mark.timeout(240)
@fuzz_settings(0.20)
@given(data=st.data(), method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]),
       path=st.one_of(st.sampled_from(KNOWN_PATHS),
                      st.text(st.characters(min_codepoint=0x21, max_codepoint=0x2FF), max_size=40)
                      .map(lambda p: "/" + quote(p, safe="/-_.~%"))))
def test_fuzz_any_path(env: Env, data: st.DataObject, method: str, path: str) -> None:
    headers, query, body, _ = request_parts(env, data, env.roamer, method, path, json_values)
    send(env, "any-path", method, path, query, headers, body)


# -- deterministic checks ------------------------------------------------------------------------------------------


def _big_json(size: int) -> bytes:
    return b'{"project": {"id": 10000}, "changes": [], "padding": "' + b"x" * size + b'"}'


@pytest.mark.timeout(120)
def test_oversized_bodies_get_413(env: Env) -> None:
    """Every route that takes a body, with a valid token: 1 MiB + 1 byte answers 413 JSON, by Content-Length or
    chunked, and stores nothing."""
    site, (webhook_id,), _ = fresh_tenant(env, webhooks=1)
    body = _big_json(MIB)
    routes = [("POST", FIELD_CHANGES, False), ("POST", "/events/jira/project_updated", False),
              ("POST", "/api/webhooks", True), ("PATCH", f"/api/webhooks/{webhook_id}", True),
              ("POST", "/lifecycle/enabled", False), ("POST", "/lifecycle/disabled", False)]
    results = Counter()
    for method, path, context in routes:
        # `enabled`/`disabled` ignore their bodies: a declared length over the limit is refused, a chunked body
        # is never read.
        for chunked in (False, True) if not path.startswith("/lifecycle/") else (False,):
            token = site.context_token() if context else site.token(method, path)
            data = iter([body[i:i + 65536] for i in range(0, len(body), 65536)]) if chunked else body
            response = _send_big(env, method, path, {"Authorization": f"JWT {token}"}, data)
            results[response.status_code] += 1
            assert response.status_code == 413, (method, path, chunked, response.status_code, response.text[:200])
            assert response.json()["error"]["code"] == "payload_too_large"
            assert "1 MiB" in response.json()["error"]["message"]
    token = env.atlassian.install_token(env.addon.url, "/lifecycle/installed", issuer=site.client_key)
    response = _send_big(env, "POST", "/lifecycle/installed", {"Authorization": f"JWT {token}"}, body)
    results[response.status_code] += 1
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"
    assert env.fingerprint() == env.last_fingerprint
    just_under = env.session.post(env.addon.url + FIELD_CHANGES, data=_big_json(MIB - 200),
                                  headers={"Authorization": f"JWT {site.token('POST', FIELD_CHANGES)}"}, timeout=30)
    assert just_under.status_code != 413 and just_under.status_code < 500  # read in full and judged on what it says
    env.last_fingerprint = env.fingerprint()
    FIGURES["oversized"] = {"requests": sum(results.values()) + 1, "answers": {str(k): v for k, v in results.items()},
                            "just_under_1MiB": just_under.status_code}


def _send_big(env: Env, method: str, path: str, headers: dict[str, str], data: Any) -> requests.Response:
    try:
        return env.session.request(method, env.addon.url + path, data=data, headers=headers, timeout=30)
    except requests.ConnectionError:
        # The server may answer before reading the whole body and close; the answer is still there to read.
        return requests.request(method, env.addon.url + path, data=data, headers=headers, timeout=30)


JWT_ATTACKS = ("missing", "garbage", "alg-none", "wrong-secret", "expired", "not-yet-valid", "wrong-qsh", "tampered",
               "uninstalled-tenant", "empty-header", "hs256-with-rsa-public-key", "rs256-by-install-key",
               "replayed-to-other-path", "replayed-to-other-method", "replayed-to-other-query", "context-on-intake",
               "old-shared-secret")


@pytest.mark.timeout(120)
def test_forged_and_replayed_jwts_get_401(env: Env) -> None:
    """Each forged or replayed token on each route that takes one: 401 JSON, nothing changes."""
    import hashlib
    import hmac

    site = env.roamer
    rsa_private, rsa_public_pem = env.atlassian.keys[env.atlassian.current_kid]
    routes = [("POST", FIELD_CHANGES, {"project": {"id": 10000}, "changes": []}),
              ("POST", "/events/jira/project_updated", {"timestamp": 1, "project": {"id": 10000}}),
              ("POST", "/lifecycle/enabled", site.lifecycle_body("enabled")),
              ("POST", "/lifecycle/disabled", site.lifecycle_body("disabled")),
              ("GET", "/admin/webhooks", None), ("GET", "/api/webhooks", None), ("POST", "/api/webhooks",
                                                                                 {"name": "x", "url": "https://a.b"})]
    counts: Counter = Counter()
    for method, path, doc in routes:
        body = None if doc is None else json.dumps(doc).encode()
        for attack in JWT_ATTACKS:
            query = ""
            if attack == "hs256-with-rsa-public-key":
                claims = jwt.decode(site.token(method, path), options={"verify_signature": False})
                head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
                pay = _b64(json.dumps(claims).encode())
                sig = _b64(hmac.new(rsa_public_pem, f"{head}.{pay}".encode(), hashlib.sha256).digest())
                headers = {"Authorization": f"JWT {head}.{pay}.{sig}"}
            elif attack == "rs256-by-install-key":
                headers = {"Authorization": f"JWT {site.token(method, path, algorithm='RS256', key=rsa_private)}"}
            elif attack == "replayed-to-other-path":
                headers = {"Authorization": f"JWT {site.token(method, '/events/jira/project_created')}"}
            elif attack == "replayed-to-other-method":
                headers = {"Authorization": f"JWT {site.token('GET' if method == 'POST' else 'POST', path)}"}
            elif attack == "replayed-to-other-query":
                headers = {"Authorization": f"JWT {site.token(method, path, 'a=1')}"}
                query = "a=2"
            elif attack == "context-on-intake":
                if path.startswith("/api/"):
                    continue  # context tokens are the admin API's own
                headers = {"Authorization": f"JWT {site.context_token()}"}
            elif attack == "old-shared-secret":
                headers = {"Authorization": f"JWT {site.token(method, path, secret=env.roamer_old_secret)}"}
            else:
                headers, query = token_for(env, attack, site, method, path, query, "not-a-token")
            response = send(env, "jwt-attacks", method, path, query, headers, body)
            assert response.status_code == 401, (attack, method, path, response.status_code, response.text[:200])
            assert response.json()["error"]["code"] == "unauthorized"
            counts[attack] += 1
    FIGURES["jwt_attacks"] = {"requests": sum(counts.values()), "routes": len(routes), "attacks": len(JWT_ATTACKS)}


@pytest.fixture(scope="module", autouse=True)
def _rotate_roamer_secret(env: Env) -> None:
    """The roamer re-installs with a new shared secret: the old one must stop working at once."""
    old = env.roamer.shared_secret
    env.roamer.shared_secret = env.roamer.shared_secret[::-1]
    COLLECTOR.add_site(env.roamer)
    assert env.roamer.install(env.addon.url).status_code == 204
    env.roamer_old_secret = old  # type: ignore[attr-defined]
    env.last_fingerprint = env.fingerprint()


@pytest.mark.timeout(60)
def test_install_replays_and_forgeries_get_401(env: Env) -> None:
    site = env.lifecycle
    body = json.dumps(site.lifecycle_body("installed")).encode()
    url, path = env.addon.url, "/lifecycle/installed"
    token = env.atlassian.install_token(url, path, issuer=site.client_key)
    first = env.session.post(url + path, data=body, headers={"Authorization": f"JWT {token}",
                                                             "Content-Type": "application/json"}, timeout=30)
    assert first.status_code == 204, first.text
    env.last_fingerprint = env.fingerprint()
    forged = {
        "replayed": token,
        "wrong audience": env.atlassian.install_token(url, path, issuer=site.client_key, aud="https://evil.example"),
        "unknown kid": env.atlassian.install_token(url, path, issuer=site.client_key, kid="nobody"),
        "kid path traversal": env.atlassian.install_token(url, path, issuer=site.client_key, kid="../keys/x",
                                                          key=env.stranger_key),
        "signed by a stranger's key": env.atlassian.install_token(url, path, issuer=site.client_key,
                                                                  key=env.stranger_key),
        "issuer is not the clientKey": env.atlassian.install_token(url, path, issuer="someone-else"),
        "HS256 with the shared secret": site.token("POST", path),
        "uninstall token used to install": env.atlassian.install_token(url, "/lifecycle/uninstalled",
                                                                       issuer=site.client_key),
    }
    for name, forged_token in forged.items():
        response = send(env, "jwt-attacks", "POST", path, "",
                        {"Authorization": f"JWT {forged_token}", "Content-Type": "application/json"}, body)
        assert response.status_code == 401, (name, response.status_code, response.text)
    FIGURES["install_attacks"] = {"requests": len(forged)}


SSRF_URLS = {
    # IP literals in every spelling
    "https://127.0.0.1/x": "private_address", "https://127.8.9.10/x": "private_address",
    "https://10.0.0.1/x": "private_address", "https://172.16.5.4/x": "private_address",
    "https://192.168.1.1/x": "private_address", "https://169.254.169.254/latest/meta-data/": "private_address",
    "https://100.64.0.1/x": "private_address", "https://0.0.0.0/x": "private_address",
    "https://192.0.2.10/x": "private_address", "https://198.51.100.1/x": "private_address",
    "https://203.0.113.9/x": "private_address", "https://224.0.0.1/x": "private_address",
    "https://255.255.255.255/x": "private_address", "https://198.18.0.1/x": "private_address",
    "https://[::1]/x": "private_address", "https://[::]/x": "private_address",
    "https://[::ffff:127.0.0.1]/x": "private_address", "https://[::ffff:7f00:1]/x": "private_address",
    "https://[::ffff:a9fe:a9fe]/x": "private_address", "https://[::127.0.0.1]/x": "private_address",
    "https://[64:ff9b::a00:1]/x": "private_address", "https://[64:ff9b:1::1]/x": "private_address",
    "https://[2002:7f00:1::]/x": "private_address", "https://[2002:c0a8:101::1]/x": "private_address",
    "https://[2001:0:4136:e378:8000:63bf:80ff:fffe]/x": "private_address",  # Teredo, client 127.0.0.1
    "https://[fe80::1]/x": "private_address", "https://[fc00::1]/x": "private_address",
    "https://[fd12:3456::1]/x": "private_address", "https://[ff02::1]/x": "private_address",
    "https://[2001:db8::1]/x": "private_address", "https://127.0.0.1:8443/x": "private_address",
    # names that resolve to such addresses
    "https://localhost/x": "private_address", "https://internal.test/x": "private_address",
    "https://metadata.test/computeMetadata/v1/": "private_address", "https://mixed.test/x": "private_address",
    "https://v6loop.test/x": "private_address", "https://mapped.test/x": "private_address",
    "https://INTERNAL.test./x": "private_address",
    # spellings that hide an address, and URLs that are not https
    "https://2130706433/x": "invalid_url", "https://0x7f000001/x": "invalid_url", "https://017700000001/x":
    "invalid_url", "https://127.1/x": "invalid_url", "https://0x7f.0.0.1/x": "invalid_url",
    "https://0177.0.0.1/x": "invalid_url", "https://[::1%25eth0]/x": "invalid_url",
    "http://example.invalid/x": "invalid_url", "https://user:pw@example.invalid/x": "invalid_url",
    "https://example.invalid@127.0.0.1/x": "invalid_url", "ftp://example.invalid/x": "invalid_url",
    "file:///etc/passwd": "invalid_url", "gopher://127.0.0.1:25/x": "invalid_url",
    "https://exa mple.invalid/x": "invalid_url", "https://example.invalid\\@127.0.0.1/x": "invalid_url",
    "https:///x": "invalid_url", "https://[127.0.0.1]/x": "invalid_url",
}


@pytest.mark.timeout(60)
def test_ssrf_urls_are_refused_at_save_time(env: Env) -> None:
    env.dns.table |= {"internal.test": ["10.1.2.3"], "metadata.test": ["169.254.169.254"],
                      "mixed.test": [PUBLIC_IP, "127.0.0.1"], "v6loop.test": ["::1"],
                      "mapped.test": ["::ffff:10.0.0.1"]}
    site, (webhook_id,), _ = fresh_tenant(env, webhooks=1)
    codes: Counter = Counter()
    for url, code in SSRF_URLS.items():
        for method, path in (("POST", "/api/webhooks"), ("PATCH", f"/api/webhooks/{webhook_id}")):
            doc = {"name": "ssrf", "url": url}
            response = send(env, "ssrf", method, path, "", {"Authorization": f"JWT {site.context_token()}",
                                                            "Content-Type": "application/json"},
                            json.dumps(doc).encode())
            assert response.status_code == 400, (url, method, response.status_code, response.text)
            assert response.json()["error"]["code"] == code, (url, response.json())
            codes[code] += 1
    FIGURES["ssrf_at_save"] = {"urls": len(SSRF_URLS), "requests": sum(codes.values()),
                               "answers": dict(codes)}


@pytest.mark.timeout(90)
def test_dns_change_after_saving_is_blocked_at_send_time(env: Env, tmp_path, fernet_key: str) -> None:
    """A name public at save time and private at send time: the test delivery and the worker's delivery are both
    blocked, and the receiver (on 127.0.0.1, whose certificate names `receiver.test`) gets nothing."""
    receiver = env.receiver
    env.dns.table["receiver.test"] = [PUBLIC_IP]
    settings_ = make_settings(env.atlassian, f"sqlite:///{tmp_path}/dns.db", allow_private_networks=False,
                              secret_key=fernet_key, ca_bundle=receiver.ca_path, outgoing_timeout_s=2.0)
    addon = AddonServer(settings_)  # with its delivery worker
    addon.runtime._sender = Sender(2.0, receiver.ca_path, False, "Projectrak-Outgoing-Webhooks/test",
                                   resolve=env.dns.resolve, dns_cache_s=0)
    COLLECTOR.add_addon_url(addon.url)
    try:
        site = _site(env.atlassian, addon)
        created = site.call(addon.url, "POST", "/api/webhooks", token=site.context_token(),
                            json_body={"name": "rebinding", "url": receiver.url("/rebind", host="receiver.test")})
        assert created.status_code == 201, created.text
        COLLECTOR.add_secret(created.json()["secret"], "webhook secret")
        webhook_id = created.json()["id"]
        env.dns.table["receiver.test"] = ["127.0.0.1"]  # the DNS answer changes after saving
        test = site.call(addon.url, "POST", f"/api/webhooks/{webhook_id}/test", token=site.context_token())
        assert test.status_code == 200, test.text
        assert test.json()["status"] == "ERROR" and "blocked private address 127.0.0.1" in test.json()["error"]
        event = site.call(addon.url, "POST", FIELD_CHANGES, sub="u", json_body={
            "project": {"id": 10000}, "changes": [{"field": {"id": 1, "name": "B", "type": "text"},
                                                   "previous": "a", "current": "b"}]})
        assert event.status_code == 202, event.text

        def worker_attempt() -> dict | None:
            items = site.call(addon.url, "GET", f"/api/webhooks/{webhook_id}/deliveries",
                              token=site.context_token()).json()["items"]
            return next((i for i in items if '"event":"updated"' in (i["request_body"] or "")), None)

        attempt = wait_until(worker_attempt, timeout=30, message="the worker's attempt")
        assert attempt["status"] == "ERROR" and "blocked private address 127.0.0.1" in attempt["error"], attempt
        assert receiver.requests_for("/rebind") == []
    finally:
        addon.stop()
    FIGURES["dns_change_at_send"] = {"test_delivery": test.json()["error"], "worker_delivery": attempt["error"],
                                     "requests_at_receiver": 0}


@pytest.mark.timeout(60)
def test_one_tenant_cannot_reach_anothers_webhooks_or_deliveries(env: Env) -> None:
    owner, owner_webhooks, owner_deliveries = fresh_tenant(env)
    b, _, _ = fresh_tenant(env)
    before = env.fingerprint()
    attempts = []
    for webhook_id in owner_webhooks:
        attempts += [("GET", f"/api/webhooks/{webhook_id}", None),
                     ("PATCH", f"/api/webhooks/{webhook_id}", {"name": "mine now"}),
                     ("PATCH", f"/api/webhooks/{webhook_id}", {"url": "https://evil.invalid/x"}),
                     ("PATCH", f"/api/webhooks/{webhook_id}", {"enabled": False}),
                     ("DELETE", f"/api/webhooks/{webhook_id}", None),
                     ("POST", f"/api/webhooks/{webhook_id}/test", None),
                     ("POST", f"/api/webhooks/{webhook_id}/rotate-secret", None),
                     ("GET", f"/api/webhooks/{webhook_id}/deliveries", None),
                     ("GET", f"/api/webhooks/{webhook_id}/deliveries?limit=5&before=999999", None)]
    attempts += [("POST", f"/api/deliveries/{delivery_id}/redeliver", None) for delivery_id in owner_deliveries]
    for method, path, doc in attempts:
        plain = path.split("?", 1)
        for token in (b.context_token(), b.token(method, plain[0], plain[1] if len(plain) > 1 else "")):
            response = send(env, "tenant-isolation", method, plain[0], plain[1] if len(plain) > 1 else "",
                            {"Authorization": f"JWT {token}", "Content-Type": "application/json"},
                            None if doc is None else json.dumps(doc).encode())
            assert response.status_code == 404, (method, path, response.status_code, response.text)
            assert response.json()["error"]["code"] == "not_found"
    listed = b.call(env.addon.url, "GET", "/api/webhooks", token=b.context_token()).json()
    assert {w["id"] for w in listed}.isdisjoint(owner_webhooks)
    mine = owner.call(env.addon.url, "GET", "/api/webhooks", token=owner.context_token()).json()
    assert [w["name"] for w in mine] == ["hook 0", "hook 1"] and all(w["enabled"] for w in mine)
    assert env.fingerprint() == before
    FIGURES["tenant_isolation"] = {"requests": 2 * len(attempts), "answers": {"404": 2 * len(attempts)}}


@pytest.mark.timeout(30)
def test_hostile_totals(env: Env) -> None:
    """Records the figures of this module; the fuzz families together sent at least 10,000 requests."""
    fuzz = {family: dict(stats) for family, stats in FIGURES["fuzz"].items()}
    generated = sum(fuzz.get(f, {}).get("requests", 0) for f in FAMILIES)
    all_requests = sum(stats.get("requests", 0) for stats in fuzz.values())
    figures = {"generated_requests": generated, "planned": FUZZ_TOTAL, "all_requests": all_requests,
               "status_5xx": sum(stats.get("5xx", 0) for stats in fuzz.values()), "by_family": fuzz,
               "request_seconds": {k: round(v, 1) for k, v in FIGURES["seconds"].items()},
               "errors": {k: dict(v.most_common()) for k, v in FIGURES["codes"].items()},
               **{k: v for k, v in FIGURES.items() if k not in ("fuzz", "install_tokens", "seconds", "codes")},
               "fake_dns_lookups": sum(env.dns.lookups.values())}
    record_figures("hostile-input", figures)
    assert figures["status_5xx"] == 0
    if all(family in fuzz for family in FAMILIES):  # every family ran in this session
        assert generated >= FUZZ_TOTAL, f"only {generated} generated requests"


# -- generated families: control characters, huge numbers, hostile receivers, on both databases ---------------------
#
# Each family enumerates a class (every C0 character, DEL, every C1 character, lone surrogates; long digit strings,
# trailing zeros, huge and tiny exponents; receivers' bytes) over every place that takes it, so a new route, field
# or type that mishandles the class fails here. `send` checks what every answer must be (never a 5xx, the JSON
# error shape, nothing stored for a refused request); the families add where the answer must point.

UNSTORABLE = ("\x00", "\ud800", "\udbff", "\udc00", "\udfff")
"""A NUL and lone surrogates (high and low, at both ends of each range): CONTRACT §5, 422 where they stand."""
OTHER_CONTROLS = "".join(chr(c) for c in (*range(1, 0x20), 0x7F, *range(0x80, 0xA0)))
"""Every other C0 character, DEL and every C1 character: stored as given, or refused as a 4xx, never a 5xx."""
UNSTORABLE_MESSAGE = "a string cannot hold a NUL or a lone surrogate"


@dataclass
class Stage:
    """One tenant on the add-on (no background work) over one database; quacks like `Env` for `send`."""

    addon: AddonServer
    site: FakeSite
    session: requests.Session = field(default_factory=requests.Session)
    last_fingerprint: tuple = ()
    fingerprint = Env.fingerprint


@pytest.fixture
def stage(atlassian: FakeAtlassian, database_url: str, fernet_key: str) -> Iterator[Stage]:
    addon = AddonServer(make_settings(atlassian, database_url, secret_key=fernet_key), background=False)
    try:
        stage = Stage(addon, _site(atlassian, addon))
        stage.last_fingerprint = stage.fingerprint()
        yield stage
    finally:
        addon.stop()


def _change(field_type: str, current: Any, name: str = "Field") -> dict:
    return {"field": {"id": 1, "name": name, "type": field_type}, "previous": None, "current": current}


def _changes(*changes: dict, **top: Any) -> dict:
    return {"project": {"id": 10000}, "changes": list(changes), **top}


def _jira(**project: Any) -> dict:
    return {"timestamp": 1675182117615, "webhookEvent": "project_updated",
            "project": {"id": 10000, "key": "DEMO", "name": "Demo project", **project}}


JIRA_UPDATED = "/events/jira/project_updated"
# (route, where the string stands, the body with the string `s` there)
STRING_PLACES: list[tuple[str, str, Any]] = [
    (FIELD_CHANGES, "project.key", lambda s: {"project": {"key": "DE" + s}, "changes": []}),
    (FIELD_CHANGES, "project.id", lambda s: {"project": {"id": "100" + s}, "changes": []}),
    (FIELD_CHANGES, "timestamp", lambda s: _changes(timestamp="1" + s)),
    (FIELD_CHANGES, "changes[0].field.name", lambda s: _changes(_change("text", "x", name="F" + s))),
    (FIELD_CHANGES, "changes[0].field.type", lambda s: _changes({"field": {"id": 1, "name": "F", "type": "te" + s}})),
    *[(FIELD_CHANGES, "changes[0].current", lambda s, t=t: _changes(_change(t, "a" + s + "b")))
      for t in sorted(FIELD_TYPES)],
    (FIELD_CHANGES, "changes[1].previous",
     lambda s: _changes(_change("text", "x"), {**_change("text", "y"), "previous": s})),
    (FIELD_CHANGES, "changes[0].current.content[0].text",
     lambda s: _changes(_change("multiline_text", {"type": "doc", "content": [{"text": s}]}))),
    *[(FIELD_CHANGES, f"changes[0].current.{k}", lambda s, t=t, k=k: _changes(_change(t, {k: "a" + s})))
      for t, k in (("status", "name"), ("list", "value"), ("priority", "text"), ("user", "accountId"),
                   ("project", "key"))],
    *[(FIELD_CHANGES, "changes[0].current[1]", lambda s, t=t: _changes(_change(t, ["OPS", "a" + s])))
      for t in ("multi_list", "multi_user", "multi_project")],
    (JIRA_UPDATED, "project.name", lambda s: _jira(name="Demo" + s)),
    (JIRA_UPDATED, "project.key", lambda s: _jira(key="DE" + s)),
    (JIRA_UPDATED, "project.id", lambda s: _jira(id="1000" + s)),
    (JIRA_UPDATED, "project.description", lambda s: _jira(description=s)),
    (JIRA_UPDATED, "project.projectLead.accountId", lambda s: _jira(projectLead={"accountId": "a" + s})),
    (JIRA_UPDATED, "webhookEvent", lambda s: {**_jira(), "webhookEvent": "project_updated" + s}),
    ("/api/webhooks", "name", lambda s: {"name": "n" + s, "url": "https://example.com/in"}),
    ("/api/webhooks", "url", lambda s: {"name": "n", "url": "https://example.com/in" + s}),
    ("/api/webhooks", "enabled", lambda s: {"name": "n", "url": "https://example.com/in", "enabled": s}),
    ("PATCH", "name", lambda s: {"name": "n" + s}),
    ("PATCH", "url", lambda s: {"url": "https://example.com/" + s}),
]


def _post(stage: Stage, route: str, body: bytes, family: str) -> requests.Response:
    """Send `body` to `route` (`PATCH`: the tenant's webhook) as the tenant would, checked by `send`; a webhook
    the admin API created is deleted again, so the tenant never reaches its limit of 50."""
    site, method, path = stage.site, "POST", route
    headers = {"Content-Type": "application/json"}
    if route in ("/api/webhooks", "PATCH"):
        headers["Authorization"] = f"JWT {site.context_token()}"
        if route == "PATCH":
            method, path = "PATCH", f"/api/webhooks/{_patched_webhook(stage)}"
    else:
        headers["Authorization"] = f"JWT {site.token('POST', route, '')}"
        headers["X-Atlassian-Webhook-Identifier"] = str(time.monotonic_ns())
    answer = send(stage, family, method, path, "", headers, body)  # type: ignore[arg-type]
    if method == "POST" and route == "/api/webhooks" and answer.status_code == 201:
        COLLECTOR.add_secret(answer.json()["secret"], "webhook secret")
        send(stage, family, "DELETE", f"/api/webhooks/{answer.json()['id']}", "",  # type: ignore[arg-type]
             {"Authorization": f"JWT {site.context_token()}"}, None)
    return answer


def _patched_webhook(stage: Stage) -> int:
    if not hasattr(stage, "webhook_id"):
        stage.webhook_id = _create(stage.addon, stage.site, "patched", "https://example.com/in")  # type: ignore
        stage.last_fingerprint = stage.fingerprint()
    return stage.webhook_id  # type: ignore[attr-defined]


@pytest.mark.timeout(180)
def test_family_control_characters_and_lone_surrogates_in_every_string(stage: Stage) -> None:
    """A NUL or a lone surrogate anywhere is 422 naming the place, on both databases; every other control
    character (C0, DEL, C1), alone at one place and all together at every place, is accepted or a 4xx."""
    for route, where, body_with in STRING_PLACES:
        for char in UNSTORABLE:
            answer = _post(stage, route, json.dumps(body_with(char)).encode(), "strings")
            assert answer.status_code == 422, (route, where, repr(char), answer.text[:300])
            assert answer.json()["error"]["message"] == f"{where}: {UNSTORABLE_MESSAGE}", (route, repr(char))
        _post(stage, route, json.dumps(body_with(OTHER_CONTROLS)).encode(), "strings")
        _post(stage, route, json.dumps(body_with(OTHER_CONTROLS), ensure_ascii=False).encode(), "strings")
    for char in OTHER_CONTROLS:
        for route, _, body_with in (STRING_PLACES[6], STRING_PLACES[-6], STRING_PLACES[-5]):  # text, Jira, name
            _post(stage, route, json.dumps(body_with(char)).encode(), "strings")
    # keys of objects are strings too
    answer = _post(stage, FIELD_CHANGES, json.dumps({**_changes(), "\ud800": 1}).encode(), "strings")
    assert answer.json()["error"]["message"] == f'["\\ud800"]: {UNSTORABLE_MESSAGE}'


LONG_NUMBERS = [
    "1" + "0" * 19, "1" + "0" * 400, "1" + "0" * 4300, "1" + "0" * 100_000, "9" * 4001, "-" + "9" * 100_000,
    "1." + "0" * 100_000, "0." + "0" * 100_000 + "1", "1" + "0" * 100_000 + "e-100000",
    "1e999999999", "-1e999999999", "1e-999999999", "1E+400", "9.99e-400", "-0", "0.0",
]
"""Long digit strings, trailing zeros, huge and tiny exponents: each as a JSON number and as a string."""
# (route, where the number stands, the raw JSON body with `@` for it)
NUMBER_PLACES: list[tuple[str, str, str]] = [
    (FIELD_CHANGES, "project.id", '{"project": {"id": @}, "changes": []}'),
    (FIELD_CHANGES, "timestamp", '{"project": {"id": 10000}, "timestamp": @, "changes": []}'),
    (FIELD_CHANGES, "changes[0].field.id",
     '{"project": {"id": 10000}, "changes": [{"field": {"id": @, "name": "F", "type": "text"}, "current": "x"}]}'),
    *[(FIELD_CHANGES, "changes[0].current",
       '{"project": {"id": 10000}, "changes": [{"field": {"id": 1, "name": "F", "type": "TYPE"}, "current": @}]}'
       .replace("TYPE", t))
      for t in ("number", "date", "duration", "project", "text", "status")],
    (FIELD_CHANGES, "changes[0].current[0]",
     '{"project": {"id": 10000}, "changes": [{"field": {"id": 1, "name": "F", "type": "multi_project"}, '
     '"current": [@]}]}'),
    (FIELD_CHANGES, "changes[0].current.id",
     '{"project": {"id": 10000}, "changes": [{"field": {"id": 1, "name": "F", "type": "project"}, '
     '"current": {"id": @}}]}'),
    (JIRA_UPDATED, "timestamp", '{"timestamp": @, "webhookEvent": "project_updated", "project": {"id": 10000}}'),
    (JIRA_UPDATED, "project.id", '{"timestamp": 1, "webhookEvent": "project_updated", "project": {"id": @}}'),
    ("/api/webhooks", "enabled", '{"name": "n", "url": "https://example.com/in", "enabled": @}'),
]


@pytest.mark.timeout(240)
def test_family_huge_and_long_numbers_in_every_numeric_field(stage: Stage) -> None:
    """Every numeric place takes every long or extreme literal, as a number and as a string: accepted, or a 422
    naming the place; never a 400 for well-formed JSON, never a 5xx. A cost that grows faster than the body
    (stripping zeros one by one took 13 s for 100,000 of them) runs this family out of its timeout."""
    literals = [*LONG_NUMBERS, *(json.dumps(n) for n in LONG_NUMBERS)]
    for route, where, template in NUMBER_PLACES:
        for literal in literals:
            answer = _post(stage, route, template.replace("@", literal).encode(), "numbers")
            if answer.status_code >= 400:
                assert answer.status_code == 422, (route, where, literal[:30], answer.text[:300])
                assert answer.json()["error"]["message"].startswith(where), (where, literal[:30], answer.text[:300])
    for duration in ("1d" * 450_000, "1.5h " * 200_000, "1" * 15 + "w" * 900_000, "1d" + " " * 1_000_000 + "x"):
        body = json.dumps(_changes(_change("duration", duration)))
        answer = _post(stage, FIELD_CHANGES, body.encode(), "numbers")
        assert answer.status_code == 422 and answer.json()["error"]["message"].startswith("changes[0].current")


HOSTILE_ANSWERS = {  # a receiver's raw answer -> (attempt status, HTTP code, body start recorded)
    "nul": (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nok\x00ok", ("OK", 200, "ok\ufffdok")),
    "invalid-utf8": (b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n\xff\xfe\xc3(ok",
                     ("OK", 200, "\ufffd\ufffd\ufffd(ok")),
    "controls": (b"HTTP/1.1 200 OK\r\nContent-Length: 70\r\n\r\n" + bytes(range(32)) + b"\x7f" + "\u0085".encode()
                 + b"\x00" * 35, ("OK", 200, "\ufffd" * 9 + "\t\n" + "\ufffd" * 58)),
    "huge": (b"HTTP/1.1 200 OK\r\nContent-Length: 300000\r\n\r\n" + "\x00é".encode() * 100_000,
             ("OK", 200, ("\ufffdé" * 683)[:-1])),  # 2,048 bytes kept, the é they cut left out
    "chunked-nul": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\na\x00b\r\n0\r\n\r\n",
                    ("OK", 200, "a\ufffdb")),
    "odd-headers": (b"HTTP/1.1 200 \x01\x7f\r\nX-Odd: \xff\xfe obs-text\r\nRetry-After: \xff\xfe\r\n"
                    b"Content-Length: 2\r\n\r\nok", ("OK", 200, "ok")),
    # not HTTP (a control character in a header's value): a network error, its next attempt scheduled
    "invalid-header": (b"HTTP/1.1 200 OK\r\nX-Odd: \x01\x00\r\nContent-Length: 2\r\n\r\nok", ("ERROR", None, None)),
    "reason-phrase": (b"HTTP/1.1 400 Bad\x1b[2J\xff Request\r\nContent-Length: 3\r\n\r\n\x00\x00\x00",
                      ("ERROR", 400, "\ufffd\ufffd\ufffd")),
    # C1 bytes (obs-text) in a Location that the error text quotes
    "location": (b"HTTP/1.1 301 Moved\r\nLocation: /\x85\x9b[2J\xff\xfe" + b"\x80" * 600 + b"\r\nContent-Length: 0"
                 b"\r\n\r\n", ("ERROR", 301, "")),
}


@pytest.fixture
def sending_stage(atlassian: FakeAtlassian, database_url: str, fernet_key: str) -> Iterator[tuple[Stage, Receiver]]:
    """The add-on with its worker over one database, trusting a receiver CA."""
    with Receiver() as receiver:
        addon = AddonServer(make_settings(atlassian, database_url, secret_key=fernet_key,
                                          ca_bundle=receiver.ca_path, outgoing_timeout_s=5.0))
        try:
            yield Stage(addon, _site(atlassian, addon)), receiver
        finally:
            addon.stop()


@pytest.mark.timeout(120)
def test_family_hostile_receiver_answers_are_recorded_cleaned(sending_stage: tuple[Stage, Receiver]) -> None:
    """Whatever bytes a receiver answers (NUL, invalid UTF-8, control characters, a huge body, odd status lines and
    headers) are recorded, cleaned, on both databases: the attempt is written once, with no control character but
    tab and newline and at most 2,048 characters of body, and the delivery ends or waits for its next scheduled
    attempt; it is never sent again at once because its recording failed."""
    stage, receiver = sending_stage
    servers = {kind: ScriptedServer(receiver.ca, [raw]) for kind, (raw, _) in HOSTILE_ANSWERS.items()}
    try:
        for kind, server in servers.items():
            _create(stage.addon, stage.site, kind, server.url(f"/{kind}"))
        started = time.monotonic()
        response = stage.site.call(stage.addon.url, "POST", FIELD_CHANGES, sub="someone", json_body=_changes(
            _change("number", 2)))
        assert response.status_code == 202 and response.json()["deliveries"] == len(servers), response.text
        event_id = response.json()["event_id"]
        with stage.addon.sessions() as session:
            names = {row.id: row.name for row in session.execute(select(Webhook.id, Webhook.name))}

        def recorded() -> list[tuple[Delivery, list[Any]]] | None:
            with stage.addon.sessions() as session:
                deliveries = session.scalars(select(Delivery).where(Delivery.event_id == event_id)).all()
                rows = [(d, session.scalars(select(Attempt).where(Attempt.delivery_id == d.id)).all())
                        for d in deliveries]
            return rows if all(attempts for _, attempts in rows) else None

        rows = wait_until(recorded, 30, "every hostile answer's attempt to be recorded")
        time.sleep(max(0.0, started + 2.0 - time.monotonic()))  # a failed recording would be retried by now
        rows = recorded()
        assert rows is not None
        for delivery, attempts in rows:
            kind = names[delivery.webhook_id]
            status, code, body = HOSTILE_ANSWERS[kind][1]
            assert delivery.attempt_count == 1 and delivery.lease_until is None and len(attempts) == 1, kind
            [attempt] = attempts
            assert (attempt.status, attempt.http_code, attempt.response_body_start) == (status, code, body), kind
            for text in (attempt.error or "", attempt.response_body_start or ""):
                assert not any(c < " " and c not in "\t\n" or "\x7f" <= c <= "\x9f" for c in text), (kind, text)
            assert len(attempt.error or "") <= 500, kind
            assert servers[kind].connections == 1, kind
    finally:
        for server in servers.values():
            server.close()
