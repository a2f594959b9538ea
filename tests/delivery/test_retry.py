"""The retry policy (CONTRACT §6.3)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from addon.delivery.retry import (
    FAILING_DISABLE_AFTER,
    MAX_ATTEMPTS,
    MAX_RETRY_AFTER_S,
    SCHEDULE_S,
    is_retryable,
    next_attempt_at,
)
from addon.sending.client import SendResult


@dataclass
class Outcome:
    ok: bool = False
    http_code: int | None = None
    retry_after_s: float | None = None


class Fixed:
    """An rng whose uniform(a, b) lands at a fixed point of the interval (0 = a, 0.5 = middle, 1 = b)."""

    def __init__(self, point: float) -> None:
        self.point = point

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.point


MIDDLE = Fixed(0.5)
START = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    """`seconds` after the schedule start."""
    return START + timedelta(seconds=seconds)


def due_after_start(attempt: int, outcome: Outcome, now_s: float, rng=MIDDLE) -> float | None:  # type: ignore[no-untyped-def]
    """When the attempt after `attempt` (which ended `now_s` after the start) is due, in seconds from the start."""
    due = next_attempt_at(attempt, outcome, schedule_start=START, now=at(now_s), rng=rng)
    return None if due is None else (due - START).total_seconds()


def test_schedule_is_the_contracts() -> None:
    assert SCHEDULE_S == (0, 5, 60, 300, 1800, 7200, 21600, 43200)
    assert MAX_ATTEMPTS == 8
    assert FAILING_DISABLE_AFTER == timedelta(days=5)


@pytest.mark.parametrize(
    "outcome, retryable",
    [
        (Outcome(ok=True, http_code=200), False),
        (Outcome(ok=True, http_code=204), False),
        (Outcome(http_code=None), True),  # timeout, refused, TLS, DNS...
        (Outcome(http_code=408), True),
        (Outcome(http_code=429), True),
        (Outcome(http_code=500), True),
        (Outcome(http_code=502), True),
        (Outcome(http_code=503), True),
        (Outcome(http_code=599), True),
        (Outcome(http_code=301), False),
        (Outcome(http_code=302), False),
        (Outcome(http_code=400), False),
        (Outcome(http_code=401), False),
        (Outcome(http_code=404), False),
        (Outcome(http_code=409), False),
        (Outcome(http_code=410), False),
        (Outcome(http_code=422), False),
    ],
)
def test_is_retryable(outcome: Outcome, retryable: bool) -> None:
    assert is_retryable(outcome) is retryable


def test_accepts_send_results() -> None:
    result = SendResult(ok=False, http_code=503, error="HTTP 503", duration_ms=3, retry_after_s=None)
    assert due_after_start(1, result, 0.1) == pytest.approx(5)


def test_unjittered_attempts_fall_on_the_schedule() -> None:
    for attempt in range(1, MAX_ATTEMPTS):
        assert due_after_start(attempt, Outcome(), SCHEDULE_S[attempt - 1]) == pytest.approx(SCHEDULE_S[attempt])
    assert due_after_start(MAX_ATTEMPTS, Outcome(), SCHEDULE_S[-1]) is None


def test_offsets_are_measured_from_the_schedule_start_however_long_attempts_take() -> None:
    """Each attempt took 4 s (a slow receiver) and was sent late: the next one is still due at its offset from
    the schedule start, not at the previous attempt's end plus the gap."""
    for attempt in range(1, MAX_ATTEMPTS):
        ended = SCHEDULE_S[attempt - 1] + 4.0
        assert due_after_start(attempt, Outcome(http_code=503), ended) == pytest.approx(SCHEDULE_S[attempt])
    # Attempt 2 ended 30 s after the start (sent late, answered late): attempt 3 is due 60 s after the start.
    assert due_after_start(2, Outcome(http_code=None), 30.0) == pytest.approx(60.0)


def test_an_attempt_whose_moment_has_passed_is_due_at_once() -> None:
    # Attempt 1 timed out after 10 s: attempt 2 (5 s after the start) is due now, not 15 s after the start.
    assert due_after_start(1, Outcome(http_code=None), 10.0) == pytest.approx(10.0)
    # The worker was down for an hour after attempt 3: attempt 4 (5 min) is due at once.
    assert due_after_start(3, Outcome(http_code=500), 3600.0) == pytest.approx(3600.0)


def test_jitter_stays_within_20_percent_of_each_offset() -> None:
    rng = random.Random(1234)
    for attempt in range(1, MAX_ATTEMPTS):
        offset = SCHEDULE_S[attempt]
        dues = [due_after_start(attempt, Outcome(http_code=503), SCHEDULE_S[attempt - 1], rng) for _ in range(200)]
        assert all(0.8 * offset <= d <= 1.2 * offset for d in dues)
        assert max(dues) - min(dues) > 0.2 * offset  # it does vary
    assert due_after_start(1, Outcome(), 0.0, Fixed(0)) == pytest.approx(4.0)
    assert due_after_start(1, Outcome(), 0.0, Fixed(1)) == pytest.approx(6.0)
    assert due_after_start(7, Outcome(), 21600.0, Fixed(0)) == pytest.approx(0.8 * 43200)


@pytest.mark.parametrize("code", [200, 204, 301, 400, 404, 410])
def test_final_answers_get_no_retry(code: int) -> None:
    assert due_after_start(1, Outcome(ok=200 <= code < 300, http_code=code), 0.0) is None


@pytest.mark.parametrize("attempt", [0, MAX_ATTEMPTS, MAX_ATTEMPTS + 1])
def test_no_attempt_beyond_the_schedule(attempt: int) -> None:
    assert due_after_start(attempt, Outcome(http_code=503), 43200.0) is None


@pytest.mark.parametrize(
    "attempt, ended_s, retry_after, expected_s",
    [
        (1, 0.0, 2.0, 5.0),  # shorter than the schedule: the schedule wins
        (1, 0.0, 7.0, 7.0),  # within [scheduled delay, 2 × gap]: honoured
        (1, 0.0, 10.0, 10.0),
        (1, 0.0, 3600.0, 10.0),  # clamped to twice the gap (5 s)
        (1, 0.0, 0.0, 5.0),
        (1, 8.0, 3600.0, 18.0),  # attempt 1 ended after 8 s, past attempt 2's moment: still at most 2 × 5 s
        (1, 8.0, 3.0, 11.0),  # ... and honoured though the schedule would send it at once
        (3, 61.0, 400.0, 461.0),  # gap 240 s
        (3, 61.0, 100.0, 300.0),  # the schedule is later than the Retry-After
        (6, 7201.0, 25_000.0, 7201.0 + MAX_RETRY_AFTER_S),  # gap 14400: 2 gap = 28800, but at most 6 h
        (7, 21601.0, 40_000.0, 21601.0 + MAX_RETRY_AFTER_S),  # gap 21600: 6 h from the failed attempt
        (7, 21601.0, 600.0, 43_200.0),  # a short one never makes it earlier than the schedule
    ],
)
def test_retry_after_is_clamped(attempt: int, ended_s: float, retry_after: float, expected_s: float) -> None:
    outcome = Outcome(http_code=429, retry_after_s=retry_after)
    assert due_after_start(attempt, outcome, ended_s) == pytest.approx(expected_s)


def test_retry_after_on_a_final_answer_changes_nothing() -> None:
    assert due_after_start(1, Outcome(http_code=404, retry_after_s=60), 0.0) is None
    assert due_after_start(MAX_ATTEMPTS, Outcome(http_code=503, retry_after_s=60), 43200.0) is None
