"""Several processes on one SQLite file (`addon serve` and its worker child, or `addon worker`s): they take turns
at writing on a file lock (`addon.storage.engine.SQLiteWriteLock`), and committed deliveries wake the workers of other
processes through the doorbell (`addon.outbox.sqlite`)."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import threading
from pathlib import Path

from addon.outbox.sqlite import Doorbell
from addon.outbox.wakeup import Wakeup
from addon.storage.engine import sqlite_write_lock

HOLD_THE_LOCK = """
import sys
from addon.storage.engine import sqlite_write_lock
lock = sqlite_write_lock(sys.argv[1])
lock.acquire()
print("held", flush=True)
sys.stdin.readline()
lock.release()
print("released", flush=True)
sys.stdin.readline()
"""


def test_another_process_holding_the_write_lock_makes_this_one_wait_until_it_lets_go(tmp_path: Path) -> None:
    database = str(tmp_path / "addon.db")
    other = subprocess.Popen([sys.executable, "-c", HOLD_THE_LOCK, database], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline() == "held\n"
        lock = sqlite_write_lock(database)
        assert not lock.acquire(blocking=False), "two processes held the write lock at once"

        got_it = threading.Event()
        waiter = threading.Thread(target=lambda: (lock.acquire(), got_it.set()))
        waiter.start()
        assert not got_it.wait(0.3), "the lock was taken while the other process held it"
        other.stdin.write("\n")
        other.stdin.flush()
        assert other.stdout.readline() == "released\n"
        assert got_it.wait(10), "the lock was not handed over when the other process let go"
        waiter.join()
        lock.release()
    finally:
        other.stdin.close()
        other.wait(10)


def _try_the_lock_in_a_forked_child(database: str, parent_holds: multiprocessing.synchronize.Event,
                                    answer: multiprocessing.queues.Queue) -> None:
    parent_holds.wait(10)
    lock = sqlite_write_lock(database)
    answer.put(lock.acquire(blocking=False))


def test_a_forked_process_does_not_share_its_parents_hold_on_the_lock(tmp_path: Path) -> None:
    """gunicorn forks its web processes: a lock file descriptor inherited from the parent would be the parent's
    lock, so the child would get in while the parent writes."""
    database = str(tmp_path / "addon.db")
    lock = sqlite_write_lock(database)
    with lock:  # the parent has opened its lock file before the fork
        pass
    fork = multiprocessing.get_context("fork")
    parent_holds, answer = fork.Event(), fork.Queue()
    child = fork.Process(target=_try_the_lock_in_a_forked_child, args=(database, parent_holds, answer))
    child.start()
    with lock:
        parent_holds.set()
        child_got_it = answer.get(timeout=10)
    child.join(10)
    assert child_got_it is False


def _wait_for_the_listener(wakeup: Wakeup) -> int:
    """The listener wakes its worker once when it starts (for what was committed before); returns the generation."""
    generation = wakeup.wait(10, seen_generation=0)
    assert generation > 0, "the listener did not start"
    return generation


def test_a_ring_from_another_doorbell_wakes_the_listener_and_its_own_ring_does_not(tmp_path: Path) -> None:
    database = str(tmp_path / "addon.db")
    worker_side, intake_side = Doorbell(database), Doorbell(database)
    wakeup = Wakeup()
    listener = worker_side.listen(wakeup)
    assert listener is not None
    try:
        generation = _wait_for_the_listener(wakeup)
        intake_side.ring()
        woken = wakeup.wait(10, seen_generation=generation)
        assert woken > generation, "the listener was not woken"

        worker_side.ring()  # a process's own commits already woke it in-process
        assert wakeup.wait(0.3, seen_generation=woken) == woken
    finally:
        listener.stop()
        worker_side.close()
        intake_side.close()
    assert os.listdir(worker_side.directory) == [], "a stopped listener leaves its name behind"


def test_a_wakeup_rings_the_other_processes_as_it_wakes_its_own(tmp_path: Path) -> None:
    database = str(tmp_path / "addon.db")
    worker_side, intake_side = Doorbell(database), Doorbell(database)
    worker_wakeup, intake_wakeup = Wakeup(), Wakeup(intake_side.ring)
    listener = worker_side.listen(worker_wakeup)
    assert listener is not None
    try:
        generation = _wait_for_the_listener(worker_wakeup)
        intake_wakeup.notify()
        assert intake_wakeup.generation == 1
        assert worker_wakeup.wait(10, seen_generation=generation) > generation
    finally:
        listener.stop()
        worker_side.close()
        intake_side.close()


def test_a_ring_removes_the_name_of_a_listener_whose_process_is_gone(tmp_path: Path) -> None:
    database = str(tmp_path / "addon.db")
    doorbell = Doorbell(database)
    doorbell.directory.mkdir()
    (doorbell.directory / "0123456789abcdef").touch()  # left by a process killed with SIGKILL: nobody listens
    doorbell.ring()
    assert os.listdir(doorbell.directory) == []
    doorbell.close()
