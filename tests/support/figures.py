"""Figures of measured values, one definition for the tests' reports (`tests/reliability`) and the benchmarks
(`bench/`), so that a p99 means the same in both."""

from __future__ import annotations

from collections.abc import Sequence


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """The p-th percentile (p in 0..100) of already sorted values: the value at 0-based rank ⌊p/100·n⌋, i.e. the
    nearest rank taken from above (never below the textbook nearest rank, so a p99 is not flattered); NaN for no
    values."""
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(p / 100 * len(sorted_values)))]
