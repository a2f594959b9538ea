"""Fixtures of the reliability scenarios, and the collection the secrets scenario scans at the end of the run."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from cryptography.fernet import Fernet

from tests.receivers import Receiver
from tests.reliability.harness import COLLECTOR, CollectingHandler, ProcessStack, StatusReceiver, record_figures
from tests.support.atlassian import FakeAtlassian


def _ours(item: pytest.Item) -> bool:
    return "tests/reliability/" in item.nodeid.replace("\\", "/")


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """The secrets scenario scans what every other scenario left behind: it runs after the last of them (and
    before any test outside this directory, so the collection below ends with this directory)."""
    last = [item for item in items if item.get_closest_marker("after_all_scenarios")]
    if last:
        rest = [item for item in items if item not in last]
        end = max((n for n, item in enumerate(rest) if _ours(item)), default=len(rest) - 1)
        items[:] = rest[:end + 1] + last + rest[end + 1:]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "after_all_scenarios: runs after every other test of the session")


#: Outcome and duration of each reliability test of this session, for the report's "suite" line.
OUTCOMES: dict[str, dict] = {}
_SPAN: list[float] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "tests/reliability/" not in report.nodeid.replace("\\", "/"):
        return
    now = time.time()
    if not _SPAN:
        _SPAN.append(now - report.duration)
    entry = OUTCOMES.setdefault(report.nodeid.split("::", 1)[1], {"outcome": "passed", "seconds": 0.0})
    entry["seconds"] = round(entry["seconds"] + report.duration, 1)
    if report.failed:
        entry["outcome"] = "failed"
    elif report.skipped:
        entry["outcome"] = "skipped"
    _SPAN[1:] = [now]


@pytest.fixture(scope="package", autouse=True)
def collect_logs_and_answers() -> Iterator[None]:
    """Every in-process log record, and every answer the add-on gives to a `requests` call, kept for the scan,
    while this directory's tests run."""
    handler = CollectingHandler(COLLECTOR)
    root = logging.getLogger()
    root.addHandler(handler)
    addon_logger = logging.getLogger("addon")
    old_level = addon_logger.level
    addon_logger.setLevel(logging.INFO)  # as in production (`addon serve` logs at INFO)
    original_send = requests.Session.send

    def send(self: requests.Session, request: requests.PreparedRequest, **kwargs):  # type: ignore[no-untyped-def]
        response = original_send(self, request, **kwargs)
        url = request.url or ""
        if COLLECTOR.is_addon_url(url) and not kwargs.get("stream"):
            COLLECTOR.add_answer(request.method or "", url, response.status_code, dict(response.headers),
                                 response.content)
        return response

    requests.Session.send = send  # type: ignore[method-assign]
    try:
        yield
    finally:
        requests.Session.send = original_send  # type: ignore[method-assign]
        root.removeHandler(handler)
        addon_logger.setLevel(old_level)
        if len(_SPAN) == 2:
            record_figures("suite", {"wall_s": round(_SPAN[1] - _SPAN[0], 1), "tests": OUTCOMES,
                                     "failed": sum(1 for o in OUTCOMES.values() if o["outcome"] == "failed")})


@pytest.fixture(scope="session")
def fernet_key() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with StatusReceiver() as r:
        yield r


@pytest.fixture
def make_stack(tmp_path: Path, atlassian: FakeAtlassian, receiver: Receiver, fernet_key: str
               ) -> Iterator[Callable[..., ProcessStack]]:
    stacks: list[ProcessStack] = []

    def make(database_url: str, *, timeout_s: float = 5.0, secret_key: str | None = fernet_key) -> ProcessStack:
        stack = ProcessStack(tmp_path, database_url, atlassian, receiver, secret_key=secret_key, timeout_s=timeout_s)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.stop()
