"""Reconnect backoff: full jitter under a geometrically growing, capped bound."""

from __future__ import annotations

import random

import pytest

from driver_sim.backoff import Backoff


def _expected_cap_s(failures: int) -> float:
    return min(10.0, 0.25 * 2.0 ** (failures - 1))


def test_delay_stays_between_zero_and_the_cap() -> None:
    """For failures 1..100 and many seeds every delay is in [0, min(max_s, base * 2^(n-1))]."""
    backoff = Backoff()
    for seed in range(50):
        rng = random.Random(seed)
        for failures in range(1, 101):
            assert 0.0 <= backoff.delay_s(failures, rng) <= _expected_cap_s(failures)


def test_cap_grows_geometrically_then_saturates() -> None:
    """The largest of 2000 delays is within 10 % of 0.25, 0.5, 1, ... 8, then 10 s for good."""
    backoff = Backoff()
    rng = random.Random(7)
    for failures in range(1, 13):
        cap_s = _expected_cap_s(failures)
        assert backoff.cap_s(failures) == pytest.approx(cap_s)
        largest_s = max(backoff.delay_s(failures, rng) for _ in range(2000))
        assert 0.9 * cap_s <= largest_s <= cap_s
    assert backoff.cap_s(7) == backoff.cap_s(50) == 10.0


def test_no_failures_means_no_delay() -> None:
    """failures <= 0 (nothing failed yet) gives 0.0."""
    rng = random.Random(1)
    assert Backoff().delay_s(0, rng) == 0.0
    assert Backoff().delay_s(-3, rng) == 0.0


def test_huge_failure_counts_do_not_overflow() -> None:
    """A long outage (10**6 failures, even with a steep factor) stays at max_s."""
    rng = random.Random(1)
    for backoff in (Backoff(), Backoff(base_s=1.0, factor=10.0, max_s=60.0)):
        assert backoff.cap_s(10**6) == backoff.max_s
        assert 0.0 <= backoff.delay_s(10**6, rng) <= backoff.max_s


def test_delay_is_deterministic_for_a_seed() -> None:
    """The same seed gives the same jitter sequence."""
    first = [Backoff().delay_s(n, random.Random(3)) for n in range(1, 20)]
    second = [Backoff().delay_s(n, random.Random(3)) for n in range(1, 20)]
    assert first == second


def test_invalid_parameters_are_rejected() -> None:
    """Negative or non-finite parameters, and a shrinking factor, are configuration errors."""
    for kwargs in ({"base_s": -1.0}, {"max_s": float("inf")}, {"factor": 0.5}):
        with pytest.raises(ValueError):
            Backoff(**kwargs)
