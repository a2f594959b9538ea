"""LISTEN/NOTIFY wake-ups on PostgreSQL: another process's commit wakes this one's worker; a commit of its own,
which already woke it in-process, does not wake it a second time."""

from __future__ import annotations

import time

import psycopg
import pytest

from addon.delivery.listener import NotifyListener, libpq_url
from addon.delivery.outbox import NOTIFY_CHANNEL
from addon.signals import Wakeup
from tests.support.addon_server import wait_for


@pytest.fixture
def listening(pg_url):  # type: ignore[no-untyped-def]
    wakeup = Wakeup()
    listener = NotifyListener(pg_url, wakeup).start()
    wait_for(lambda: wakeup.generation >= 1, message="the listener wakes once when it starts listening")
    yield wakeup, pg_url
    listener.stop()


def _notify(pg_url: str, payload: str) -> None:
    with psycopg.connect(libpq_url(pg_url), autocommit=True) as conn:
        conn.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, payload))


def test_own_notifications_are_skipped_and_others_wake(listening):  # type: ignore[no-untyped-def]
    wakeup, pg_url = listening
    before = wakeup.generation
    _notify(pg_url, wakeup.origin)  # a commit of this runtime's own: it woke in-process already
    _notify(pg_url, "")  # another process's (or an older add-on's) commit
    wait_for(lambda: wakeup.generation > before)
    time.sleep(0.5)  # both have arrived (in commit order) by now
    assert wakeup.generation == before + 1, "its own notification woke it too"
    _notify(pg_url, Wakeup().origin)  # another runtime's
    wait_for(lambda: wakeup.generation > before + 1, message="another runtime's commit wakes this one")
