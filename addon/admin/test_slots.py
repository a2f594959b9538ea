"""How many "Send test" requests a web process runs at once (CONTRACT §7).

A test is sent by the request's own thread and may hold it for the whole outgoing timeout (a receiver that never
answers). So tests get at most a quarter of the process's threads: the other three quarters stay free for the
intake and the admin page whatever the receivers do. A test that finds no free place is refused at once (503 with
Retry-After) rather than queued, since a queued request would hold a thread too.
"""

from __future__ import annotations

import threading

from flask import Flask

#: Threads per web process (`addon serve --threads`); `create_app`'s caller records its own in `WEB_THREADS_KEY`.
DEFAULT_WEB_THREADS = 8
WEB_THREADS_KEY = "WEB_THREADS"
_EXTENSION = "addon_test_slots"
_lock = threading.Lock()


class TestSlots:
    """A non-blocking count of the tests in progress in this process, at most a quarter of its threads."""

    __test__ = False  # not a pytest class, whatever its name

    def __init__(self, threads: int) -> None:
        self.capacity = max(1, threads // 4)
        self._free = threading.BoundedSemaphore(self.capacity)

    def try_take(self) -> bool:
        return self._free.acquire(blocking=False)

    def give_back(self) -> None:
        self._free.release()


def test_slots(app: Flask) -> TestSlots:
    """The app's `TestSlots`, made on first use from its `WEB_THREADS`."""
    slots = app.extensions.get(_EXTENSION)
    if slots is None:
        with _lock:
            slots = app.extensions.setdefault(
                _EXTENSION, TestSlots(int(app.config.get(WEB_THREADS_KEY, DEFAULT_WEB_THREADS))))
    return slots
