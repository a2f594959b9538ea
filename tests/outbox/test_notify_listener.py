"""LISTEN/NOTIFY wake-ups on PostgreSQL: another process's commit wakes this one's worker; a commit of its own,
which already woke it in-process, does not wake it a second time."""

from __future__ import annotations

import time
import uuid

import psycopg
import pytest

import addon.outbox.postgres as listener_module
from addon.outbox.postgres import NotifyListener, libpq_url
from addon.outbox.wakeup import Wakeup
from tests.support.addon_server import wait_for


@pytest.fixture
def listening(pg_url, monkeypatch):  # type: ignore[no-untyped-def]
    # A channel of this test's own: NOTIFY is per database, and other add-ons on it must not count here.
    channel = f"test_{uuid.uuid4().hex[:12]}"
    monkeypatch.setattr(listener_module, "NOTIFY_CHANNEL", channel)
    wakeup = Wakeup()
    listener = NotifyListener(pg_url, wakeup).start()
    wait_for(lambda: wakeup.generation >= 1, message="the listener wakes once when it starts listening")
    yield wakeup, pg_url, channel
    listener.stop()


def _notify(pg_url: str, channel: str, payload: str) -> None:
    with psycopg.connect(libpq_url(pg_url), autocommit=True) as conn:
        conn.execute("SELECT pg_notify(%s, %s)", (channel, payload))


def test_own_notifications_are_skipped_and_others_wake(listening):  # type: ignore[no-untyped-def]
    wakeup, pg_url, channel = listening
    before = wakeup.generation
    _notify(pg_url, channel, wakeup.origin)  # a commit of this runtime's own: it woke in-process already
    _notify(pg_url, channel, "")  # another process's (or an older add-on's) commit
    wait_for(lambda: wakeup.generation > before)
    time.sleep(0.5)  # both have arrived (in commit order) by now
    assert wakeup.generation == before + 1, "its own notification woke it too"
    _notify(pg_url, channel, Wakeup().origin)  # another runtime's
    wait_for(lambda: wakeup.generation > before + 1, message="another runtime's commit wakes this one")
