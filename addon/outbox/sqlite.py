"""Wake-ups between processes on SQLite: one Unix datagram to each delivery worker of the database file.

On PostgreSQL a commit's NOTIFY wakes the workers of other processes (`addon.outbox.postgres`); SQLite has
nothing alike, and a worker in another process (`addon serve`'s child, or an `addon worker`) would otherwise
notice new deliveries only when it next polls. A listening process binds a datagram socket under a random name in
Linux's abstract namespace (no file, no path length limit, gone with the process) and leaves an empty file of
that name in `<database>-wake/`; ringing sends an empty datagram to each name listed there. A name nobody has
bound any more (its process died) is removed by the first ring that finds it so.
"""

from __future__ import annotations

import logging
import os
import secrets
import select
import socket
import threading
import time
from pathlib import Path

from addon.outbox.wakeup import Wakeup

log = logging.getLogger(__name__)

_ADDRESS_PREFIX = "\0projectrak-webhooks-wake-"
_RELIST_AFTER_S = 1.0  # besides whenever the directory changes


class Doorbell:
    """Rings the listeners of one SQLite database file; `listen` makes this process one of them."""

    def __init__(self, database: str) -> None:
        self.directory = Path(f"{database}-wake")
        self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sender.setblocking(False)
        self._own_name: str | None = None
        self._names: list[str] = []
        self._listed_mtime_ns = -1
        self._listed_at = 0.0

    def ring(self) -> None:
        """Wake every other listening process (never raises: a lost ring costs a poll's delay, nothing more)."""
        for name in self._listeners():
            if name == self._own_name:
                continue
            try:
                self._sender.sendto(b"", _ADDRESS_PREFIX + name)
            except ConnectionRefusedError:  # its process is gone
                (self.directory / name).unlink(missing_ok=True)
            except OSError:  # its queue is full (it has wake-ups waiting), or the name went meanwhile
                pass

    def listen(self, wakeup: Wakeup) -> DoorbellListener | None:
        """Start waking `wakeup` when another process rings; None where that cannot be (not Linux)."""
        name = secrets.token_hex(8)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(_ADDRESS_PREFIX + name)
            self.directory.mkdir(parents=True, exist_ok=True)
            (self.directory / name).touch()
        except OSError as err:
            sock.close()
            log.warning("other processes cannot wake this delivery worker (%s); it polls instead", err)
            return None
        self._own_name = name
        return DoorbellListener(self, sock, name, wakeup).start()

    def close(self) -> None:
        self._sender.close()

    def _listeners(self) -> list[str]:
        try:
            mtime_ns = os.stat(self.directory).st_mtime_ns
        except OSError:
            return []
        now = time.monotonic()
        if mtime_ns != self._listed_mtime_ns or now - self._listed_at > _RELIST_AFTER_S:
            try:
                self._names = os.listdir(self.directory)
            except OSError:
                self._names = []
            self._listed_mtime_ns, self._listed_at = mtime_ns, now
        return self._names


class DoorbellListener:
    """A thread that turns datagrams into wake-ups of this process (never rings back)."""

    def __init__(self, doorbell: Doorbell, sock: socket.socket, name: str, wakeup: Wakeup) -> None:
        self._doorbell = doorbell
        self._socket = sock
        self._name = name
        self._wakeup = wakeup
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="doorbell-listener", daemon=True)

    def start(self) -> DoorbellListener:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(5)
        self._socket.close()
        (self._doorbell.directory / self._name).unlink(missing_ok=True)

    def _run(self) -> None:
        self._socket.setblocking(False)
        readable = select.poll()
        readable.register(self._socket, select.POLLIN)
        self._wakeup.notify_here()  # anything committed before this process listened
        while not self._stopping.is_set():
            try:
                if not readable.poll(500):  # how soon `stop` is noticed, in ms
                    continue
                while True:  # read every waiting ring: rings that came together wake the worker once
                    self._socket.recv(1)
            except BlockingIOError:  # none left
                self._wakeup.notify_here()
            except OSError:
                if not self._stopping.is_set():
                    log.exception("doorbell socket failed; this delivery worker polls from now on")
                return
