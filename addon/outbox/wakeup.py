"""A wake-up: committed work wakes sleeping workers at once instead of waiting for a poll."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable


class Wakeup:
    """Many waiters, many notifiers; a notification before a wait is not lost (it is a counter, not a pulse)."""

    def __init__(self, ring_others: Callable[[], None] | None = None) -> None:
        self._ring_others = ring_others  # wakes other processes where the database cannot (`addon.outbox.sqlite`)
        self._cond = threading.Condition()
        self._generation = 0
        # Names this wake-up in PostgreSQL NOTIFY payloads sent by code that also wakes it in-process: its own
        # listener skips those (see `addon.outbox.postgres`).
        self.origin = secrets.token_hex(8)

    def notify(self) -> None:
        """Wake this process's waiters and, where the database does not carry wake-ups, other processes'."""
        self.notify_here()
        if self._ring_others is not None:
            self._ring_others()

    def notify_here(self) -> None:
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
