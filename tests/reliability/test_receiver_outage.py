"""Receivers that fail: down for the first part of the run, then back; and one that answers `410 Gone`.

Four webhooks of one tenant receive field-change events at 10/s for 12 s:
- `up`: answers 200 throughout (the control);
- `refused`: nothing listens on its port for the first 6 s (connection refused), then a receiver starts there;
- `unavailable`: answers 503 for the first 6 s, then 200;
- `gone`: answers 410.

Everything accepted arrives at the first three, the last two through the retries: each delivery's attempts follow
the retry schedule (never earlier than a scheduled offset from the event less its 20 % jitter), they all fail until
the receiver is back, and the first attempt after that succeeds. The `gone` webhook is disabled at its first
answer, shown so by `GET /api/webhooks` (`enabled: false`, `disabled_reason: "gone"`), and its other deliveries are
cancelled.

The retry schedule is shortened in-process (the add-on runs in this process, `AddonServer` with werkzeug) by
monkeypatching `addon.delivery.retry.SCHEDULE_S` to 0, 1, 3, 7, 15, 31, 63, 127 s (gaps 1, 2, 4, 8, … s, the same
shape as production's 0, 5 s, 1 min, 5 min, …) so the scenario takes seconds instead of minutes.
Each retry is checked against the schedule, measured from the event: no earlier than its offset less 20 % jitter,
no later than its offset plus 20 % (or the previous attempt, when that ended later) and 3.5 s of scheduling slack
(a busy 2-core machine).
Time budget: 12 s of load + 30 s of drain + 60 s of slack (pytest-timeout 120 s).
"""

from __future__ import annotations

import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from addon.delivery import retry
from addon.delivery.worker import DEFAULT_CONCURRENCY, per_webhook_bound
from addon.storage.models import Attempt, Delivery, DeliveryStatus, utcnow
from tests.conftest import make_settings
from tests.receivers import _Handler, _Server
from tests.reliability.harness import (
    COLLECTOR,
    Hook,
    LoadGenerator,
    StatusReceiver,
    Tally,
    new_site,
    record_figures,
    wait_for_arrivals,
)
from tests.support.addon_server import AddonServer
from tests.support.admin import AdminClient
from tests.support.atlassian import FakeAtlassian
from tests.support.http import free_port

SHORT_SCHEDULE_S = (0, 1, 3, 7, 15, 31, 63, 127)
RATE, LOAD_S, DOWN_S = 10.0, 12.0, 6.0
OUTGOING_TIMEOUT_S = 2.0
#: How late after its due time a retry may start on a busy 2-core machine (the dispatcher, the send itself).
SCHEDULING_SLACK_S = 3.5


class ReceiverOnPort(StatusReceiver):
    """A `Receiver` listening on a port chosen in advance: a webhook can point at it before it starts."""

    def __init__(self, port: int, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self.fixed_port = port

    def start(self) -> ReceiverOnPort:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._cert.configure_cert(context)
        context.sni_callback = self._on_sni
        self._server = _Server(("127.0.0.1", self.fixed_port), _Handler, owner=self, context=context)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="receiver-late", daemon=True)
        self._thread.start()
        return self


@pytest.fixture
def receivers() -> Iterator[tuple[StatusReceiver, ReceiverOnPort]]:
    up = StatusReceiver().start()
    late = ReceiverOnPort(free_port(), ca=up.ca)
    yield up, late
    late.stop()
    up.stop()


@pytest.mark.timeout(120)
def test_receiver_down_then_back_and_gone(atlassian: FakeAtlassian, sqlite_url: str, fernet_key: str,
                                          receivers: tuple[StatusReceiver, ReceiverOnPort],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    up, late = receivers
    monkeypatch.setattr(retry, "SCHEDULE_S", SHORT_SCHEDULE_S)
    up.behave("/unavailable", status=503)
    up.behave("/gone", status=410)
    addon = AddonServer(make_settings(atlassian, sqlite_url, ca_bundle=up.ca_path, secret_key=fernet_key,
                                      outgoing_timeout_s=OUTGOING_TIMEOUT_S))
    COLLECTOR.add_addon_url(addon.url)
    try:
        site = new_site(atlassian, addon.url)
        admin = AdminClient(addon.url, site)
        urls = {"up": up.url("/up", host="127.0.0.1"), "unavailable": up.url("/unavailable", host="127.0.0.1"),
                "gone": up.url("/gone", host="127.0.0.1"),
                "refused": f"https://127.0.0.1:{late.fixed_port}/refused"}
        hooks: dict[str, Hook] = {}
        for name, url in urls.items():
            created = admin.create(name, url)
            COLLECTOR.add_secret(created["secret"], f"webhook secret {created['id']}")
            hooks[name] = Hook(created["id"], "/" + name, created["secret"])

        load = LoadGenerator(addon.url, site, RATE, LOAD_S).start()
        tally_up = Tally(up, [hooks["up"], hooks["unavailable"]], load.tag, sample_every=1)
        tally_late = Tally(late, [hooks["refused"]], load.tag, sample_every=1)
        while load.elapsed() < DOWN_S:
            time.sleep(0.02)
        back_at = utcnow()
        late.start()
        up.behave("/unavailable", status=200)
        back_at_monotonic = time.monotonic()
        load.join()
        wait_for_arrivals(tally_up, load, 30)
        wait_for_arrivals(tally_late, load, 10)
        listed = {w["name"]: w for w in admin.request("GET", "/api/webhooks").json()}
        with addon.sessions() as session:
            attempts = list(session.scalars(
                select(Attempt).where(Attempt.webhook_id.in_([hooks["refused"].id, hooks["unavailable"].id]))
                .order_by(Attempt.delivery_id, Attempt.attempt)))
            schedule_starts = {delivery_id: start for delivery_id, start in session.execute(
                select(Delivery.id, Delivery.schedule_started_at)
                .where(Delivery.webhook_id.in_([hooks["refused"].id, hooks["unavailable"].id])))}
            gone_pending = session.scalar(select(func.count()).select_from(Delivery).where(
                Delivery.webhook_id == hooks["gone"].id, Delivery.status == DeliveryStatus.PENDING))
            gone_deliveries = Counter(session.scalars(
                select(Delivery.status).where(Delivery.webhook_id == hooks["gone"].id)))
    finally:
        addon.stop()

    by_delivery: dict[int, list[Attempt]] = {}
    for attempt in attempts:
        by_delivery.setdefault(attempt.delivery_id, []).append(attempt)
    schedule_violations, wrong_outcomes = [], []
    for delivery_id, items in by_delivery.items():
        start = schedule_starts[delivery_id]
        for before, after in zip(items, items[1:], strict=False):
            # Due at its offset from the schedule start (±20 %), or at once when that had passed; recorded once
            # sent and answered.
            offset = SHORT_SCHEDULE_S[after.attempt - 1]
            at = (after.at - start).total_seconds()
            latest = max((1 + retry.JITTER) * offset, (before.at - start).total_seconds())
            if not (1 - retry.JITTER) * offset - 0.05 <= at <= latest + SCHEDULING_SLACK_S:
                schedule_violations.append(f"delivery {delivery_id}: attempt {after.attempt} {at:.2f}s after the "
                                           f"event, scheduled at {offset}s")
        *failed, last = items
        if last.status != "OK" or any(a.status != "ERROR" for a in failed):
            wrong_outcomes.append(f"delivery {delivery_id}: {[a.status for a in items]}")
        # A failed attempt is recorded at most one attempt's time (plus slack) after the receiver came back.
        late_failures = [a for a in failed if (a.at - back_at).total_seconds() > OUTGOING_TIMEOUT_S + 2]
        if late_failures:
            wrong_outcomes.append(f"delivery {delivery_id}: attempt {late_failures[0].attempt} failed after the "
                                  "receiver was back")
    accepted = load.accepted()
    figures_up = tally_up.figures(accepted, load.started_at)
    figures_late = tally_late.figures(accepted, load.started_at)
    gone = listed["gone"]
    gone_requests = len(up.requests_for("/gone"))
    attempts_needed = Counter(len(items) for items in by_delivery.values())
    figures = load.figures() | {
        "webhooks": 4, "receiver_down_s": DOWN_S, "schedule_s": SHORT_SCHEDULE_S,
        "expected_deliveries": 3 * len(accepted),
        "arrived": figures_up["arrived"] + figures_late["arrived"],
        "lost": figures_up["lost"] + figures_late["lost"],
        "duplicated_deliveries": figures_up["duplicated_deliveries"] + figures_late["duplicated_deliveries"],
        "failed_attempts_seen_by_receivers": tally_up.refused_by_receiver + tally_late.refused_by_receiver,
        "signatures_checked": figures_up["signatures_checked"] + figures_late["signatures_checked"],
        "signature_failures": figures_up["signature_failures"] + figures_late["signature_failures"],
        "retried_deliveries": sum(n for k, n in attempts_needed.items() if k > 1),
        "attempts_per_delivery": {str(k): v for k, v in sorted(attempts_needed.items())},
        "last_arrival_after_back_s": round(max(tally_up.last_arrival_at or 0, tally_late.last_arrival_at or 0)
                                           - back_at_monotonic, 1),
        "schedule_violations": len(schedule_violations),
        "gone": {"requests_received": gone_requests, "enabled": gone["enabled"],
                 "disabled_reason": gone["disabled_reason"], "last_status": gone["last_status"],
                 "last_status_code": gone["last_status_code"],
                 "deliveries": {str(k): v for k, v in sorted(gone_deliveries.items())}},
    }
    record_figures("receiver-outage", figures)
    assert figures["status_500"] == 0 and figures["refused_4xx"] == 0 and figures["gave_up"] == 0, load.errors()
    assert figures["lost"] == 0
    assert figures["signature_failures"] == 0
    assert not schedule_violations, schedule_violations[:5]
    assert not wrong_outcomes, wrong_outcomes[:5]
    assert figures["retried_deliveries"] > 0
    assert gone["enabled"] is False and gone["disabled_reason"] == "gone", gone
    assert gone["last_status"] == "ERROR" and gone["last_status_code"] == 410, gone
    per_webhook = per_webhook_bound(DEFAULT_CONCURRENCY)  # the in-process worker's bound
    assert 1 <= gone_requests <= per_webhook, "requests went on after the 410 (beyond those already in flight)"
    assert gone_pending == 0
    assert listed["up"]["enabled"] and listed["refused"]["enabled"] and listed["unavailable"]["enabled"]
