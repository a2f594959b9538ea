"""The retry policy of one delivery (CONTRACT §6.3), as data and pure functions.

Attempt n (1-based) is due `SCHEDULE_S[n - 1]` seconds after the delivery's schedule start (the event's
acceptance, or the moment it was redelivered): at 0 s, 5 s, 1 min, 5 min, 30 min, 2 h, 6 h and 12 h. Each offset
is jittered by ±20 % so that a receiver that was down does not get every pending delivery back in the same second.
The offsets are measured from the schedule start, not from the previous attempt, so the time attempts take does
not push the later ones back; an attempt whose moment has already passed is due at once.

Retried: network errors, timeouts, 408, 429 and 5xx. Final: success, 3xx and other 4xx (410 also
disables the webhook, which the worker does on `result.gone`). A `Retry-After` may push the next attempt
later (never earlier) than the schedule: to at most twice the scheduled (jittered) delay between the two
attempts after the failed one, and never more than 6 h.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Protocol

#: Offsets, in seconds from the schedule start, of attempts 1..8.
SCHEDULE_S: tuple[float, ...] = (0, 5, 60, 300, 1800, 7200, 21600, 43200)
MAX_ATTEMPTS = len(SCHEDULE_S)
#: Relative jitter applied to every scheduled delay.
JITTER = 0.2
#: The longest a `Retry-After` may push an attempt back.
MAX_RETRY_AFTER_S = 6 * 3600
#: HTTP statuses worth another attempt besides 5xx.
RETRYABLE_STATUSES = frozenset({408, 429})
#: A webhook whose attempts have all failed for this long is disabled (`disabled_reason = "failing"`).
FAILING_DISABLE_AFTER = dt.timedelta(days=5)


class AttemptOutcome(Protocol):
    """What the policy needs from a `sender.SendResult`."""

    @property
    def ok(self) -> bool: ...
    @property
    def http_code(self) -> int | None: ...
    @property
    def retry_after_s(self) -> float | None: ...


class _Uniform(Protocol):
    def uniform(self, a: float, b: float) -> float: ...


def is_retryable(result: AttemptOutcome) -> bool:
    """Whether a failed attempt may succeed later: no HTTP answer at all, 408, 429 or any 5xx."""
    if result.ok:
        return False
    code = result.http_code
    return code is None or code in RETRYABLE_STATUSES or 500 <= code <= 599


def scheduled_gap(attempt_number: int) -> float | None:
    """The un-jittered seconds between attempt `attempt_number` and the next, or None after the last."""
    if not 1 <= attempt_number < len(SCHEDULE_S):
        return None
    return float(SCHEDULE_S[attempt_number] - SCHEDULE_S[attempt_number - 1])


def next_attempt_at(attempt_number: int, result: AttemptOutcome, *, schedule_start: dt.datetime,
                    now: dt.datetime, rng: _Uniform = random) -> dt.datetime | None:
    """When the attempt after `attempt_number` (1-based, just ended `now` with `result`) is due, or None when
    this one is final.

    Final: a success, a non-retryable answer, or attempt 8 (the schedule is exhausted). Otherwise the next
    attempt's offset from `schedule_start`, jittered ±20 % (one draw `r`), or `now` when that moment has passed.
    A `Retry-After` later than that is honoured up to `now` + twice the jittered scheduled gap between the two
    attempts (`r` × the gap) and at most `MAX_RETRY_AFTER_S`; it never makes the attempt earlier.
    """
    if not is_retryable(result):
        return None
    gap = scheduled_gap(attempt_number)
    if gap is None:
        return None
    ratio = rng.uniform(1 - JITTER, 1 + JITTER)
    due = max(now, schedule_start + dt.timedelta(seconds=SCHEDULE_S[attempt_number] * ratio))
    retry_after = result.retry_after_s
    if retry_after is not None and retry_after > 0:
        pushed = now + dt.timedelta(seconds=min(retry_after, 2 * gap * ratio, MAX_RETRY_AFTER_S))
        due = max(due, pushed)
    return due
