"""LISTEN/NOTIFY on PostgreSQL: a delivery committed by another process wakes this process's worker at once."""

from __future__ import annotations

import logging
import threading

import psycopg
from sqlalchemy.engine import make_url

from addon.outbox.store import NOTIFY_CHANNEL
from addon.outbox.wakeup import Wakeup

log = logging.getLogger(__name__)


def libpq_url(sqlalchemy_url: str) -> str:
    return make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(hide_password=False)


class NotifyListener:
    """A thread holding one autocommit connection that LISTENs and turns notifications into wake-ups."""

    def __init__(self, database_url: str, wakeup: Wakeup) -> None:
        self._conninfo = libpq_url(database_url)
        self._wakeup = wakeup
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="delivery-listener", daemon=True)

    def start(self) -> NotifyListener:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self._wakeup.notify_here()  # anything committed while we were not listening
                    while not self._stopping.is_set():
                        for notify in conn.notifies(timeout=1.0):
                            # A commit of this runtime's own that already woke it in-process needs no second
                            # wake-up (which would cost the dispatcher an empty claim per event).
                            if notify.payload != self._wakeup.origin:
                                self._wakeup.notify_here()
            except psycopg.Error:
                log.warning("LISTEN connection lost; reconnecting")
                self._stopping.wait(1.0)
