"""The retry policy (CONTRACT §6.3)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta

import pytest

from addon.delivery.retry import (
    FAILING_DISABLE_AFTER,
    MAX_ATTEMPTS,
    MAX_RETRY_AFTER_S,
    SCHEDULE_S,
    is_retryable,
    next_attempt_delay,
    scheduled_gap,
)
from addon.delivery.sender import SendResult


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
    assert next_attempt_delay(1, result, MIDDLE) == 5


def test_unjittered_delays_add_up_to_the_schedule() -> None:
    at = 0.0
    for attempt in range(1, MAX_ATTEMPTS):
        delay = next_attempt_delay(attempt, Outcome(), MIDDLE)
        assert delay == pytest.approx(scheduled_gap(attempt))
        at += delay
        assert at == pytest.approx(SCHEDULE_S[attempt])
    assert next_attempt_delay(MAX_ATTEMPTS, Outcome(), MIDDLE) is None


def test_jitter_stays_within_20_percent() -> None:
    rng = random.Random(1234)
    for attempt in range(1, MAX_ATTEMPTS):
        gap = scheduled_gap(attempt)
        delays = [next_attempt_delay(attempt, Outcome(http_code=503), rng) for _ in range(200)]
        assert all(0.8 * gap <= d <= 1.2 * gap for d in delays)
        assert max(delays) - min(delays) > 0.2 * gap  # it does vary
    assert next_attempt_delay(1, Outcome(), Fixed(0)) == pytest.approx(4.0)
    assert next_attempt_delay(1, Outcome(), Fixed(1)) == pytest.approx(6.0)


@pytest.mark.parametrize("code", [200, 204, 301, 400, 404, 410])
def test_final_answers_get_no_retry(code: int) -> None:
    assert next_attempt_delay(1, Outcome(ok=200 <= code < 300, http_code=code), MIDDLE) is None


@pytest.mark.parametrize("attempt", [0, MAX_ATTEMPTS, MAX_ATTEMPTS + 1])
def test_no_attempt_beyond_the_schedule(attempt: int) -> None:
    assert next_attempt_delay(attempt, Outcome(http_code=503), MIDDLE) is None


@pytest.mark.parametrize(
    "attempt, retry_after, expected",
    [
        (1, 2.0, 5.0),  # shorter than the schedule: the schedule wins
        (1, 7.0, 7.0),  # within [gap, 2 gap]: honoured
        (1, 10.0, 10.0),
        (1, 3600.0, 10.0),  # clamped to twice the gap
        (3, 400.0, 400.0),  # gap 240
        (6, 25_000.0, MAX_RETRY_AFTER_S),  # gap 14400: 2 gap = 28800, but at most 6 h
        (7, 40_000.0, 21_600.0),  # gap 21600: the cap never makes it earlier than the schedule
        (1, 0.0, 5.0),
    ],
)
def test_retry_after_is_clamped(attempt: int, retry_after: float, expected: float) -> None:
    outcome = Outcome(http_code=429, retry_after_s=retry_after)
    assert next_attempt_delay(attempt, outcome, MIDDLE) == pytest.approx(expected)


def test_retry_after_on_a_final_answer_changes_nothing() -> None:
    assert next_attempt_delay(1, Outcome(http_code=404, retry_after_s=60), MIDDLE) is None
    assert next_attempt_delay(MAX_ATTEMPTS, Outcome(http_code=503, retry_after_s=60), MIDDLE) is None
