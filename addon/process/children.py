"""`addon serve`'s delivery worker as a child process.

In the web process the worker shares one GIL with the intake: at 100 events/s with 5 webhooks that process needs
80–85 % of a core, so on a slow or shared machine events queue behind each other (docs/benchmarks.md). As an
`addon worker` child it has a core of its own and is woken like any other worker: by LISTEN/NOTIFY on PostgreSQL, by
a datagram on SQLite (`addon.outbox.sqlite`), where the two processes wait for each other's writes in SQLite's
busy handler.

gunicorn's arbiter drives it from its main loop (`ServeArbiter`): the child is started and restarted in the same
thread that forks the web processes, never beside a fork (a web process forked while `Popen` waits for its exec
would inherit the pipe `Popen` waits on). It is restarted after a pause that grows while it keeps dying, stopped
with the server, and never outlives it: it asks Linux for SIGTERM when the server goes, even by SIGKILL
(`die_with_parent`).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time

from gunicorn.arbiter import Arbiter

from addon.process.metrics import mark_process_dead

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
FIRST_PAUSE_S = 1.0
LONGEST_PAUSE_S = 30.0
HEALTHY_AFTER_S = 60.0  # a child that lived this long starts the pauses from the first again


class WorkerChild:
    """One `addon worker --parent-pid <this process>`, kept running until `stop()`. Not thread-safe: one thread
    (the arbiter's main thread) calls it."""

    def __init__(self, stop_timeout_s: float = 30.0) -> None:
        self._argv = [sys.executable, "-m", "addon.cli", "worker", "--parent-pid", str(os.getpid())]
        self._stop_timeout_s = stop_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._started_at = 0.0
        self._pause_s = 0.0  # none yet: the first is FIRST_PAUSE_S
        self._next_start_at = 0.0
        self._stopped = False

    def keep_running(self) -> None:
        """Start the child if none runs and its pause is over."""
        if self._stopped:
            return
        self.reap()
        if self._proc is None and time.monotonic() >= self._next_start_at:
            self._started_at = time.monotonic()
            try:
                self._proc = subprocess.Popen(self._argv)
            except OSError as err:  # the server goes on serving; the next try comes after a pause
                self._pause_s = min(max(self._pause_s * 2, FIRST_PAUSE_S), LONGEST_PAUSE_S)
                self._next_start_at = time.monotonic() + self._pause_s
                log.error("delivery worker process could not start: %s; trying again in %.0f s", err, self._pause_s)
                return
            log.info("delivery worker process started pid=%s", self._proc.pid)

    def reap(self) -> None:
        """Collect the child's exit status if it ended (before gunicorn's `waitpid(-1)` takes it as unknown)."""
        proc = self._proc
        if proc is None or self._stopped or proc.poll() is None:
            return
        healthy = time.monotonic() - self._started_at >= HEALTHY_AFTER_S
        self._pause_s = FIRST_PAUSE_S if healthy or not self._pause_s else min(self._pause_s * 2, LONGEST_PAUSE_S)
        self._next_start_at = time.monotonic() + self._pause_s
        self._proc = None
        mark_process_dead(proc.pid)  # its live gauges (slots in use) leave /metrics with it
        how = f"killed by {signal.Signals(-proc.returncode).name}" if proc.returncode < 0 else f"code {proc.returncode}"
        log.warning("delivery worker process pid=%s ended (%s); starting another in %.0f s", proc.pid, how,
                    self._pause_s)

    def stop(self) -> None:
        """SIGTERM to the child, which finishes the attempts it started; SIGKILL if it takes longer than allowed."""
        self._stopped = True
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(self._stop_timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("delivery worker process pid=%s did not stop in %.0f s; killing it", proc.pid,
                        self._stop_timeout_s)
            proc.kill()
            proc.wait()
        mark_process_dead(proc.pid)


class ServeArbiter(Arbiter):
    """gunicorn's arbiter, which also keeps a `WorkerChild` running from its main loop (woken at least once a
    second, and at once by SIGCHLD) and stops it on the way out."""

    def __init__(self, app: object, worker_child: WorkerChild | None) -> None:
        self.worker_child = worker_child
        super().__init__(app)

    def manage_workers(self) -> None:
        super().manage_workers()
        if self.worker_child is not None:
            self.worker_child.keep_running()

    def handle_chld(self) -> None:
        if self.worker_child is not None:
            self.worker_child.reap()
        super().handle_chld()

    handle_cld = handle_chld  # gunicorn dispatches SIGCHLD by either name (SIGCLD is its alias on Linux)

    def halt(self, reason: str | None = None, exit_status: int = 0) -> None:
        try:
            super().halt(reason, exit_status)  # stops the web processes, then exits
        finally:
            if self.worker_child is not None:
                self.worker_child.stop()


def die_with_parent(parent_pid: int) -> None:
    """In the child: SIGTERM when the parent goes (PR_SET_PDEATHSIG), and at once if it went already.

    Without prctl (not Linux) a thread checks the parent every second instead."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (AttributeError, OSError):
        prctl = None
    if prctl is None or prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
        threading.Thread(target=_watch_parent, args=(parent_pid,), name="parent-watch", daemon=True).start()
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    # To the main thread, which takes it with `sigwait` (this thread, started before the mask, would let a
    # signal to the process end it at once).
    signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGTERM)
