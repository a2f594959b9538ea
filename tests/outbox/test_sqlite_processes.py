"""Several processes on one SQLite file (`addon serve` and its worker child, or `addon worker`s): committed
deliveries wake the workers of other processes through the doorbell (`addon.outbox.sqlite`)."""

from __future__ import annotations

import os
from pathlib import Path

from addon.outbox.sqlite import Doorbell
from addon.outbox.wakeup import Wakeup


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
