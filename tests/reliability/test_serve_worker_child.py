"""`addon serve` runs its delivery worker as a child `addon worker` process (addon/worker_child.py), on PostgreSQL
and on SQLite: it delivers, it is started again when it dies, it stops with the server, and it never outlives a
killed server."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import pytest

from tests.receivers import Receiver
from tests.reliability.harness import PROJECT_ID, ProcessStack, create_hooks, new_site, wait_until
from tests.support.atlassian import FakeAtlassian, FakeSite

FIELD_CHANGES = "/events/projectrak/field-changes"


def _children(pid: int) -> dict[int, str]:
    """Live child processes of `pid` and their command lines (Linux /proc)."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                found[int(stat.parent.name)] = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
    return found


def _worker_children(server_pid: int) -> list[int]:
    return [pid for pid, cmdline in _children(server_pid).items() if " worker --parent-pid " in cmdline]


def _alive(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z"


def _send_event(url: str, site: FakeSite, value: str) -> None:
    answer = site.call(url, "POST", FIELD_CHANGES, sub="account-1", json_body={
        "project": {"id": PROJECT_ID},
        "changes": [{"field": {"id": 1, "name": "Note", "type": "text"}, "previous": None, "current": value}]})
    assert answer.status_code == 202, answer.text


def _arrived(receiver: Receiver, path: str, value: str) -> bool:
    return any(f'"current":"{value}"' in r.body.decode() for r in receiver.requests_for(path))


@pytest.mark.timeout(180)
def test_serve_delivers_through_a_child_worker_that_is_restarted_and_stops_with_it(
        database_url: str, atlassian: FakeAtlassian, receiver: Receiver, make_stack) -> None:
    stack: ProcessStack = make_stack(database_url)
    server = stack.start_server()
    master = server.proc.pid
    workers = wait_until(lambda: _worker_children(master), timeout=60, message="the child worker")
    assert len(workers) == 1, _children(master)
    site = new_site(atlassian, stack.url)
    hook = create_hooks(stack.url, site, receiver, 1)[0]

    _send_event(stack.url, site, "first")
    wait_until(lambda: _arrived(receiver, hook.path, "first"), timeout=30, message="the first delivery")

    os.kill(workers[0], signal.SIGKILL)  # the child dies: another one takes over
    replacement = wait_until(lambda: [p for p in _worker_children(master) if p != workers[0]], timeout=30,
                             message="a new child worker")
    assert len(replacement) == 1 and not _alive(workers[0])
    _send_event(stack.url, site, "second")
    wait_until(lambda: _arrived(receiver, hook.path, "second"), timeout=30, message="the delivery after the restart")
    assert f"delivery worker process pid={workers[0]} ended (killed by SIGKILL)" in server.output()

    os.kill(master, signal.SIGTERM)  # the server alone: it stops its child itself
    assert server.proc.wait(60) == 0
    assert not _alive(replacement[0])
    assert "worker stopping" in server.output()
    server.stop()
    stack.server = None


@pytest.mark.timeout(120)
def test_a_server_killed_with_sigkill_leaves_no_worker_behind(database_url: str, make_stack) -> None:
    stack: ProcessStack = make_stack(database_url)
    server = stack.start_server()
    master = server.proc.pid
    child = wait_until(lambda: _worker_children(master), timeout=60, message="the child worker")[0]
    wait_until(lambda: "worker started" in server.output(), timeout=60, message="the child worker to start")

    os.kill(master, signal.SIGKILL)  # the server alone, not its process group
    server.proc.wait(10)
    # If it still runs, its threads' stacks (SIGUSR1) go into the failure. (Once an orphan was found still running
    # 16 minutes after this test failed; the likely cause, a SIGTERM handler setting the Event its main thread was
    # entering a wait on, is gone: addon/cli.py takes the signal with sigwait.)
    try:
        wait_until(lambda: not _alive(child), timeout=30, message="the orphaned worker to stop")
    except AssertionError:
        os.kill(child, signal.SIGUSR1)
        with contextlib.suppress(AssertionError):
            wait_until(lambda: "most recent call first" in server.output(), timeout=5, message="the stacks")
        raise AssertionError(f"the orphaned worker did not stop; the log's end:\n{server.output()[-8000:]}") from None
    assert "worker stopping" in server.output(), "the worker stops cleanly (SIGTERM), not killed"
    server.kill()  # whatever else is left of the group
    stack.server = None


@pytest.mark.timeout(120)
def test_serve_on_sqlite_wakes_its_child_worker_at_once(sqlite_url: str, atlassian: FakeAtlassian,
                                                       receiver: Receiver, make_stack) -> None:
    """SQLite has no NOTIFY: the web process rings the child's doorbell (addon/doorbell.py). Without it the child
    would find a new delivery only when it next polls, up to `MAX_IDLE_SLEEP_S` (5 s) later, so ten deliveries
    in a row each arriving within 2 s of their event would not all happen by chance."""
    stack: ProcessStack = make_stack(sqlite_url)
    server = stack.start_server()
    wait_until(lambda: "worker started" in server.output(), timeout=60, message="the child worker to start")
    site = new_site(atlassian, stack.url)
    hook = create_hooks(stack.url, site, receiver, 1)[0]
    for n in range(10):
        _send_event(stack.url, site, f"rung-{n}")
        wait_until(lambda n=n: _arrived(receiver, hook.path, f"rung-{n}"), timeout=2.0,
                   message=f"delivery {n} within 2 s of its event")
    assert server.stop() == 0
    stack.server = None


@pytest.mark.timeout(60)
def test_serve_with_no_worker_starts_no_child(sqlite_url: str, make_stack) -> None:
    stack: ProcessStack = make_stack(sqlite_url)
    server = stack.start_server("--no-worker")
    assert _worker_children(server.proc.pid) == [] and "worker started" not in server.output()
    assert server.stop() == 0
    stack.server = None
