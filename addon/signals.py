"""An in-process wake-up: committed work wakes sleeping workers at once instead of waiting for a poll."""

from __future__ import annotations

import secrets
import threading


class Wakeup:
    """Many waiters, many notifiers; a notification before a wait is not lost (it is a counter, not a pulse)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._generation = 0
        # Names this wake-up in PostgreSQL NOTIFY payloads sent by code that also wakes it in-process: its own
        # listener skips those (see `addon.delivery.listener`).
        self.origin = secrets.token_hex(8)

    def notify(self) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    @property
    def generation(self) -> int:
        return self._generation

    def wait(self, timeout: float | None, seen_generation: int | None = None) -> int:
        """Sleep until notified after `seen_generation` (or at all) or until `timeout`; return the generation."""
        with self._cond:
            start = self._generation if seen_generation is None else seen_generation
            self._cond.wait_for(lambda: self._generation != start, timeout=timeout)
            return self._generation
