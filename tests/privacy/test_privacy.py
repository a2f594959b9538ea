"""Personal data (CONTRACT §11): stored accountIds reported to Atlassian's report endpoint (the fake Atlassian
checks the app's JWT on it), in batches of at most 90, once per cycle, `429` honoured; closed accounts erased from
the delivery log, pending deliveries and snapshots. Both databases."""

from __future__ import annotations

import datetime as dt
import json
import logging
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

import addon.delivery.retry as retry
from addon.admin.permissions import AdminCache
from addon.privacy.accounts import accounts_in_body, erase_from_body
from addon.privacy.report import housekeeping_job, report_all
from addon.storage.engine import transaction
from addon.storage.models import Event, ReportedAccount, Tenant
from tests.conftest import make_settings
from tests.support.addon_server import AddonServer
from tests.support.admin import AdminClient
from tests.support.atlassian import REPORT_ACCOUNTS_PATH, FakeAtlassian, FakeSite
from tests.support.delivery import add_webhook, emit, tenant_id_of
from tests.support.intake import inbox, snapshot, wait_inbox_done
from tests.support.processes import ADDON, addon_env

# Atlassian's test accounts (its personal data reporting guide): always answered active, resp. closed.
ACTIVE = "5be24ad8b1653240376955d2"
CLOSED = "5be24ba3f91c106033269289"


def body(user: str | None, *fields: dict[str, Any]) -> dict[str, Any]:
    return {"data": {"event": "updated", "user": user, "timestamp": 1675182117615,
                     "project": {"id": 10000, "key": "DEMO", "name": "Demo project"}, "fields": list(fields)}}


def field(kind: str, current: Any, previous: Any, field_id: int = 20000) -> dict[str, Any]:
    return {"id": field_id, "name": f"A {kind}", "type": kind, "value": {"current": current, "previous": previous}}


def stored_bodies(addon: AddonServer, tenant_id: int) -> list[str]:
    with addon.sessions() as session:
        return list(session.scalars(select(Event.body).where(Event.tenant_id == tenant_id).order_by(Event.id)))


def records(addon: AddonServer, tenant_id: int) -> int:
    with addon.sessions() as session:
        return session.scalar(select(func.count()).select_from(ReportedAccount)
                              .where(ReportedAccount.tenant_id == tenant_id))


def serve(atlassian: FakeAtlassian, database_url: str, *, background: bool, **changes: Any
          ) -> Iterator[tuple[AddonServer, FakeSite, int]]:
    server = AddonServer(make_settings(atlassian, database_url, **changes), background=background)
    site = atlassian.new_site()
    assert site.install(server.url).status_code == 204
    yield server, site, tenant_id_of(server, site.client_key)
    server.stop()


@pytest.fixture
def quiet(atlassian, database_url):  # type: ignore[no-untyped-def]
    """The add-on without background work (passes run only when the test runs them), one installed site."""
    yield from serve(atlassian, database_url, background=False)


# Where accountIds stand in a body (§6.1).

def test_accounts_are_the_user_and_user_type_values_only():
    stored = body("u-actor",
                  field("user", "u-now", "u-before"),
                  field("multi_user", ["u-a", "unknown", "u-b"], []),
                  field("text", "u-looks-like-one", None),
                  field("list", "u-a-list", None),
                  field("user", None, "unknown"))
    assert list(accounts_in_body(stored)) == ["u-actor", "u-now", "u-before", "u-a", "u-b"]
    assert list(accounts_in_body(body("unknown"))) == []
    assert list(accounts_in_body({"data": {"event": "webhook.disabled", "webhook": {"id": 1}}})) == []


def test_erasing_nulls_single_values_and_leaves_lists():
    stored = body("gone", field("user", "gone", "kept"), field("multi_user", ["kept", "gone"], ["gone"]),
                  field("text", "gone", None))
    assert erase_from_body(stored, {"gone"}) == 4
    assert stored["data"]["user"] is None
    assert stored["data"]["fields"][0]["value"] == {"current": None, "previous": "kept"}
    assert stored["data"]["fields"][1]["value"] == {"current": ["kept"], "previous": []}
    assert stored["data"]["fields"][2]["value"]["current"] == "gone"  # a text field holds no account


# Reporting.

def test_batches_of_at_most_90_with_the_oldest_time_stored(quiet):
    addon, site, tenant_id = quiet
    accounts = [f"account-{i:03d}" for i in range(200)]
    first = emit(addon, tenant_id, body(accounts[0], field("multi_user", accounts[:100], ["unknown"])))
    emit(addon, tenant_id, body("unknown", field("multi_user", accounts[100:], accounts[:5])))

    counts = report_all(addon.runtime)

    assert (counts.reported, counts.closed, counts.updated) == (200, 0, 0)
    calls = site.calls_to("POST", REPORT_ACCOUNTS_PATH)
    assert len(calls) == 3 and all(len(c.body["accounts"]) <= 90 for c in calls)
    assert all(c.claims["iss"] == addon.settings.app_key for c in calls)  # signed as the app (checked by the fake)
    assert sorted(site.reported_ids) == accounts  # each once, `unknown` never
    with addon.sessions() as session:
        first_stored = session.get_one(Event, first).created_at
    reported = {a["accountId"]: a["updatedAt"] for batch in site.reports for a in batch}
    oldest = first_stored.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{first_stored.microsecond // 1000:03d}Z"
    assert reported[accounts[3]] == oldest  # stored by both events: the first one's time


def test_a_report_not_signed_as_the_app_is_refused_and_kept_for_the_next_pass(atlassian, database_url):
    for addon, site, tenant_id in serve(atlassian, database_url, background=False, app_key="another-app"):
        emit(addon, tenant_id, body("a-1"))
        counts = report_all(addon.runtime)
        assert (counts.reported, counts.failed_tenants) == (0, 1)
        assert site.reports == [] and any("is not the app key" in r for r in site.rejected_calls)
        assert records(addon, tenant_id) == 0


def test_erasure_drops_cached_admin_checks():
    cache = AdminCache()
    cache.put((1, "gone"), True)
    cache.put((2, "gone"), True)
    assert cache.forget([(1, "gone"), (1, "never-cached")]) == 1
    assert cache.get((1, "gone")) is None and cache.get((2, "gone")) is True


def test_each_account_once_per_cycle(quiet):
    addon, site, tenant_id = quiet
    emit(addon, tenant_id, body("a-1", field("user", "a-2", None)))
    now = dt.datetime.now(dt.UTC)
    assert report_all(addon.runtime, now).reported == 2

    emit(addon, tenant_id, body("a-1", field("user", "a-3", "a-2")))
    assert report_all(addon.runtime, now + dt.timedelta(hours=1)).reported == 1  # only the new one
    assert site.reported_ids == ["a-1", "a-2", "a-3"]
    assert report_all(addon.runtime, now + dt.timedelta(days=6)).reported == 0

    assert report_all(addon.runtime, now + dt.timedelta(days=7, minutes=1)).reported == 2  # a-1, a-2 again
    assert sorted(site.reported_ids[3:]) == ["a-1", "a-2"]


def test_cycle_period_header_sets_the_cycle(quiet):
    addon, site, tenant_id = quiet
    site.cycle_period_s = 3600
    emit(addon, tenant_id, body("a-1"))
    now = dt.datetime.now(dt.UTC)
    assert report_all(addon.runtime, now).reported == 1
    assert report_all(addon.runtime, now + dt.timedelta(minutes=59)).reported == 0
    assert report_all(addon.runtime, now + dt.timedelta(minutes=61)).reported == 1


def test_429_stops_the_tenant_until_retry_after_then_resumes(quiet):
    addon, site, tenant_id = quiet
    emit(addon, tenant_id, body(None, field("multi_user", [f"acc-{i:03d}" for i in range(200)], None)))
    site.report_answers = [(204, None, {}), (429, {"message": "slow down"}, {"Retry-After": "120"})]
    now = dt.datetime.now(dt.UTC)

    counts = report_all(addon.runtime, now)
    assert counts.reported == 90 and counts.failed_tenants == 1
    assert len(site.reports) == 2  # the second batch was refused: nothing after it
    refused = [a["accountId"] for a in site.reports[1]]

    assert report_all(addon.runtime, now + dt.timedelta(seconds=60)).reported == 0  # Retry-After not over
    assert len(site.reports) == 2

    counts = report_all(addon.runtime, now + dt.timedelta(seconds=121))
    assert counts.reported == 110 and counts.failed_tenants == 0
    resumed = [a["accountId"] for batch in site.reports[2:] for a in batch]
    assert sorted(resumed) == sorted(set(site.reported_ids) - {a["accountId"] for a in site.reports[0]})
    assert set(refused) <= set(resumed)
    assert len(site.reported_ids) == 90 + 90 + 110  # the first batch was not sent again


def test_a_failing_site_keeps_the_cycle_state(quiet):
    addon, site, tenant_id = quiet
    emit(addon, tenant_id, body(None, field("multi_user", [f"acc-{i:03d}" for i in range(100)], None)))
    site.report_answers = [(204, None, {}), (503, {"message": "down"}, {})]
    now = dt.datetime.now(dt.UTC)
    assert report_all(addon.runtime, now).reported == 90
    assert report_all(addon.runtime, now + dt.timedelta(minutes=5)).reported == 10  # only what failed


def test_housekeeping_passes_daily_and_tries_a_failed_one_again_within_the_hour(quiet):
    addon, site, tenant_id = quiet
    site.cycle_period_s = 60  # every account is due again after a minute: only the daily rule holds them back
    emit(addon, tenant_id, body("a-1"))
    site.report_answers = [(503, {"message": "down"}, {})]
    now = dt.datetime.now(dt.UTC)
    housekeeping_job(addon.runtime, now)
    assert len(site.reports) == 1 and records(addon, tenant_id) == 0  # failed: not recorded
    housekeeping_job(addon.runtime, now + dt.timedelta(hours=1))
    assert len(site.reports) == 2 and records(addon, tenant_id) == 1
    housekeeping_job(addon.runtime, now + dt.timedelta(hours=23))
    assert len(site.reports) == 2  # went through an hour ago: the next daily pass is not due
    housekeeping_job(addon.runtime, now + dt.timedelta(hours=25))
    assert len(site.reports) == 3
    assert report_all(addon.runtime, now + dt.timedelta(hours=25, minutes=2)).reported == 1  # on demand: any time


def test_records_go_with_the_data_they_describe(quiet):
    addon, site, tenant_id = quiet
    emit(addon, tenant_id, body("a-1"))
    report_all(addon.runtime)
    assert records(addon, tenant_id) == 1
    with transaction(addon.sessions) as session:
        session.query(Event).filter(Event.tenant_id == tenant_id).delete()
    report_all(addon.runtime)
    assert records(addon, tenant_id) == 0


def test_updated_accounts_are_counted_and_kept(quiet):
    addon, site, tenant_id = quiet
    site.updated_accounts = {"a-1"}
    emit(addon, tenant_id, body("a-1", field("user", "a-2", None)))
    counts = report_all(addon.runtime)
    assert (counts.reported, counts.closed, counts.updated) == (2, 0, 1)
    assert "a-1" in stored_bodies(addon, tenant_id)[0]


# Erasure.

@pytest.fixture
def delivering(atlassian, database_url, receiver):  # type: ignore[no-untyped-def]
    """The add-on with its delivery worker and Jira inbox running, trusting the receiver."""
    yield from serve(atlassian, database_url, background=True, ca_bundle=receiver.ca_path, outgoing_timeout_s=2.0)


def test_closed_account_vanishes_from_the_log_the_pending_retry_and_snapshots(delivering, receiver, atlassian,
                                                                             monkeypatch, caplog):
    monkeypatch.setattr(retry, "SCHEDULE_S", (0, 3, 3, 3, 3, 3, 3, 3))
    addon, site, tenant_id = delivering
    # A project led by the closed account, recorded by a fresh install's snapshot.
    site.add_project(10000, "DEMO", "Demo project", lead=CLOSED)
    assert site.install(addon.url).status_code == 204
    wait_inbox_done(addon, site)
    assert snapshot(addon, site, 10000)[-5] == CLOSED
    # A Jira event by the closed account, kept in the inbox after it is processed (it changes nothing).
    assert site.send_webhook(addon.url, "project_updated", 10000, sub=CLOSED).status_code == 204
    assert any(row.user_account_id == CLOSED and CLOSED in row.body for row in wait_inbox_done(addon, site))
    site.closed_accounts = {CLOSED}

    webhook_id, _ = add_webhook(addon, tenant_id, receiver.url("/flaky"))
    site.admins.add("admin-account")
    admin = AdminClient(addon.url, site)
    receiver.behave("/flaky", status=503)
    sent = body(CLOSED, field("user", CLOSED, ACTIVE), field("multi_user", [ACTIVE, CLOSED], [CLOSED], 20001))
    emit(addon, tenant_id, sent)
    [failed] = receiver.wait_for(1, timeout=10)
    assert CLOSED in failed.body.decode()

    with caplog.at_level(logging.INFO, logger="addon.privacy"):
        counts = report_all(addon.runtime)
    assert (counts.reported, counts.closed) == (2, 1)
    assert sorted(site.reported_ids) == sorted([ACTIVE, CLOSED])
    receiver.behave("/flaky", status=200)

    # The delivery log, the body the retry will send, and the snapshot no longer hold it.
    [stored] = stored_bodies(addon, tenant_id)
    assert CLOSED not in stored
    assert json.loads(stored)["data"] == {**sent["data"], "user": None, "fields": [
        field("user", None, ACTIVE), field("multi_user", [ACTIVE], [], 20001)]}
    assert snapshot(addon, site, 10000)[-5] is None
    assert all(row.user_account_id is None and CLOSED not in row.body for row in inbox(addon, site))
    assert records(addon, tenant_id) == 1  # ACTIVE's; CLOSED is mentioned nowhere now

    retried = receiver.wait_for(2, timeout=15)[1:]
    assert all(CLOSED not in r.body.decode() for r in retried)
    for path in (f"/api/webhooks/{webhook_id}/deliveries", f"/api/webhooks/{webhook_id}/delivery-log"):
        shown = admin.request("GET", path)  # the delivery log as the administrator reads it
        assert shown.status_code == 200, shown.text
        assert ACTIVE in shown.text and CLOSED not in shown.text  # the body is shown, without the closed id
    assert json.loads(retried[-1].body)["data"]["user"] is None

    [line] = [r.getMessage() for r in caplog.records if "closed accounts erased" in r.getMessage()
              and r.levelno == logging.INFO]
    assert "accounts=1 " in line and "events=1 " in line and "pending_deliveries=1 " in line
    assert "snapshots=1 " in line and "inbox_events=1 " in line and CLOSED not in line
    assert all(CLOSED not in r.getMessage() for r in caplog.records if r.levelno >= logging.INFO)

    # Nothing left to report about the closed account.
    report_all(addon.runtime, dt.datetime.now(dt.UTC) + dt.timedelta(days=8))
    assert site.reported_ids.count(CLOSED) == 1


def test_cli_report_prints_the_counts(quiet, database_url, tmp_path):
    addon, site, tenant_id = quiet
    site.closed_accounts = {CLOSED}
    site.updated_accounts = {"a-2"}
    emit(addon, tenant_id, body(CLOSED, field("multi_user", ["a-1", "a-2", ACTIVE], None)))
    result = subprocess.run([ADDON, "privacy", "report"], env=addon_env(DATABASE_URL=database_url), cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "accounts reported: 4, closed: 1, updated: 1" in result.stdout
    assert CLOSED not in stored_bodies(addon, tenant_id)[0]
    again = subprocess.run([ADDON, "privacy", "report"], env=addon_env(DATABASE_URL=database_url), cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
    assert "accounts reported: 0, closed: 0, updated: 0" in again.stdout


# The Forge door: the same pass, to `{PRIVACY_API_URL}/app/report-accounts/` with the installation's system token.

@pytest.fixture
def forge_site(atlassian, forge, database_url):  # type: ignore[no-untyped-def]
    """The add-on with its Forge door open and reporting to the fake Forge; one Forge installation."""
    server = AddonServer(make_settings(atlassian, database_url, forge_app_id=forge.app_id,
                                       forge_jwks_url=forge.jwks_url, forge_api_hosts=("127.0.0.1",),
                                       privacy_api_url=forge.url), background=False)
    inst = forge.install()
    invocation = inst.invoke(server.url + "/forge/lifecycle", inst.lifecycle_body())
    assert invocation.status == 204, invocation.attempts[-1].body
    with server.sessions() as session:
        tenant_id = session.scalar(select(Tenant.id).where(Tenant.installation_id == inst.installation_id))
    yield server, inst, tenant_id
    server.stop()


def test_forge_tenants_report_with_the_system_token_and_erase_closed_accounts(forge_site):
    addon, inst, tenant_id = forge_site
    site = inst.site
    site.closed_accounts = {CLOSED}
    site.cycle_period_s = 3600
    emit(addon, tenant_id, body(CLOSED, field("multi_user", [ACTIVE, CLOSED, "unknown"], None)))
    emit(addon, tenant_id, body(None, field("multi_user", [f"f-{i:03d}" for i in range(150)], None)))
    now = dt.datetime.now(dt.UTC)

    counts = report_all(addon.runtime, now)

    assert (counts.reported, counts.closed, counts.updated) == (152, 1, 0)
    calls = site.calls_to("POST", "/app/report-accounts/")
    assert len(calls) == 2 and all(len(c.body["accounts"]) <= 90 for c in calls)
    assert all(c.claims["system_token"] == inst.system_tokens[-1] for c in calls)
    assert "unknown" not in site.reported_ids
    assert all(CLOSED not in text for text in stored_bodies(addon, tenant_id))
    assert report_all(addon.runtime, now + dt.timedelta(minutes=30)).reported == 0  # Cycle-Period: an hour
    assert report_all(addon.runtime, now + dt.timedelta(minutes=61)).reported == 151


def test_forge_429_and_no_fresh_token_leave_the_work_for_the_next_pass(forge_site):
    addon, inst, tenant_id = forge_site
    site = inst.site
    emit(addon, tenant_id, body("a-1"))
    site.report_answers = [(429, None, {"Retry-After": "30"})]
    now = dt.datetime.now(dt.UTC)
    assert report_all(addon.runtime, now).failed_tenants == 1
    inst.expire_system_tokens()  # the stored token is refused now
    assert report_all(addon.runtime, now + dt.timedelta(seconds=31)).reported == 0
    assert records(addon, tenant_id) == 0
    inst.invoke(addon.url + "/forge/lifecycle", inst.lifecycle_body("avi:forge:upgraded:app"))  # a fresh token
    assert report_all(addon.runtime, now + dt.timedelta(seconds=32)).reported == 1
