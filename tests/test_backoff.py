"""Backoff: delays grow with jitter between ``initial`` and ``cap``, and start over after ``reset()``."""

from __future__ import annotations

import random

import pytest

from kk_etcd_mcp.backoff import Backoff


@pytest.mark.parametrize(("initial", "cap"), [(0.2, 5.0), (0.5, 30.0), (0.5, 1.0), (2.0, 1.0)])
def test_delays_stay_between_initial_and_cap_and_reach_the_cap(initial: float, cap: float) -> None:
    backoff = Backoff(initial, cap, rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(200)]
    low = min(initial, cap)
    assert all(low <= delay <= cap for delay in delays), delays
    assert max(delays) == cap, "a long run of failures waits the cap"


def test_each_delay_is_at_most_three_times_the_one_before() -> None:
    backoff = Backoff(0.1, 1000.0, rng=random.Random(1))
    previous = 0.1
    for _ in range(50):
        delay = backoff.next_delay()
        assert 0.1 <= delay <= previous * 3
        previous = delay


def test_delays_are_jittered() -> None:
    """Clients that failed together do not retry together."""
    first_delays = {Backoff(0.5, 5.0, rng=random.Random(seed)).next_delay() for seed in range(20)}
    assert len(first_delays) == 20
    assert all(0.5 <= delay <= 1.5 for delay in first_delays)


def test_reset_starts_over() -> None:
    backoff = Backoff(0.5, 30.0, rng=random.Random(3))
    for _ in range(30):
        backoff.next_delay()
    assert backoff.next_delay() > 1.5
    backoff.reset()
    assert 0.5 <= backoff.next_delay() <= 1.5


@pytest.mark.parametrize(("initial", "cap"), [(0, 1.0), (1.0, 0), (-1.0, 1.0)])
def test_delays_must_be_positive(initial: float, cap: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        Backoff(initial, cap)
