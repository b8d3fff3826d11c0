"""Effective times (contract v2, Time): a sender's clock is trusted within the skew only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatroute.domain.timing import effective_time, timer_time

T = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
S = timedelta(seconds=1)


@pytest.mark.parametrize(
    ("sent", "received", "skew_s", "previous", "effective"),
    [
        (T, T + 2 * S, 5, None, T),  # a clock a little behind: its time holds
        (T + 4 * S, T, 5, None, T + 4 * S),  # a little ahead: its time holds
        (T + timedelta(days=2), T, 5, None, T + 5 * S),  # two days ahead
        (datetime(2099, 1, 1, tzinfo=UTC), T, 5, None, T + 5 * S),
        (T - timedelta(hours=25), T, 5, None, T - 5 * S),  # a day behind
        (T - timedelta(hours=25), T, 0, None, T),  # no skew allowed: reception time
        (T, T, 5, T + 3 * S, T + 3 * S),  # never before the tenant's previous one
        (T + 5 * S, T, 5, T + 3 * S, T + 5 * S),
    ],
)
def test_an_events_time_moves_into_the_window_and_never_back(
    sent: datetime, received: datetime, skew_s: int, previous: datetime | None, effective: datetime
) -> None:
    assert effective_time(sent, received, skew_s, previous) == effective


def test_a_timer_fires_at_its_due_time_or_the_tenants_last_effective_time() -> None:
    assert timer_time(T, None) == T
    assert timer_time(T, T - S) == T
    assert timer_time(T, T + S) == T + S


moments = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(8999, 1, 1), timezones=st.just(UTC)
)


@given(moments, moments, st.integers(0, 10**6), st.none() | moments)
def test_the_effective_time_is_in_the_window_or_at_the_previous_one(
    sent: datetime, received: datetime, skew_s: int, previous: datetime | None
) -> None:
    effective = effective_time(sent, received, skew_s, previous)
    skew = timedelta(seconds=skew_s)
    in_window = received - skew <= effective <= received + skew
    assert in_window or effective == previous
    assert previous is None or effective >= previous
    if in_window and (previous is None or sent >= previous) and abs(sent - received) <= skew:
        assert effective == sent  # a clock within the skew is taken at its word
