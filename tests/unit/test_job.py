"""The pure rules about one job (original tests 53-57, with the documented backoff)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shard.job import (
    BACKOFF_CAP_FACTOR,
    is_expired,
    is_ready,
    is_timed_out,
    retry_delay,
    should_go_to_dlq,
)


def test_is_ready() -> None:
    assert is_ready(950, 1000)
    assert is_ready(1000, 1000)  # run_at <= now
    assert not is_ready(1001, 1000)
    assert not is_ready(2000, 1000)


def test_is_expired() -> None:
    assert is_expired(500, 400, 1000)
    assert not is_expired(500, 600, 1000)
    assert not is_expired(500, 500, 1000)  # strict: now > created_at + ttl
    assert is_expired(500, 499, 1000)
    assert not is_expired(500, 0, 10**12)  # ttl 0: never


def test_is_timed_out() -> None:
    assert is_timed_out(600, 300, 1000)
    assert not is_timed_out(600, 500, 1000)
    assert not is_timed_out(600, 400, 1000)  # strict
    assert is_timed_out(600, 399, 1000)
    assert not is_timed_out(0, 300, 1000)  # never started
    assert not is_timed_out(600, 0, 10**12)  # no timeout


def test_should_go_to_dlq() -> None:
    assert should_go_to_dlq(3, 3)
    assert should_go_to_dlq(4, 3)
    assert not should_go_to_dlq(2, 3)
    assert not should_go_to_dlq(10**6, 0)  # 0 = retry forever
    assert should_go_to_dlq(1, 1)


def test_retry_delay_doubles_from_the_base() -> None:
    # applied after FAIL increments attempts: the first failure waits the base
    assert [retry_delay(1000, n) for n in (1, 2, 3, 4)] == [1000, 2000, 4000, 8000]
    assert retry_delay(100, 1) == 100
    assert retry_delay(0, 1) == 0
    assert retry_delay(0, 50) == 0
    assert retry_delay(1000, 0) == 0


def test_retry_delay_is_capped_at_1024_times_the_base() -> None:
    assert BACKOFF_CAP_FACTOR == 1024
    assert retry_delay(1000, 11) == 1000 * 1024
    assert retry_delay(1000, 12) == 1000 * 1024
    assert retry_delay(1000, 10) == 1000 * 512
    assert retry_delay(7, 10**9) == 7 * 1024


@given(base=st.integers(1, 1 << 40), attempts=st.integers(1, 10**6))
def test_retry_delay_formula(base: int, attempts: int) -> None:
    assert retry_delay(base, attempts) == base * min(2 ** (attempts - 1), 1024)
