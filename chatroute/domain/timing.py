"""Effective times: when the engine takes an event or a timer to have happened.

A sender's clock may be wrong by hours or years; the engine's timers must never run on it.
An event's ``time`` is trusted only within ``clock_skew_s`` of when the engine received it,
and a tenant's effective times never go back, so its timers fire in one order whatever the
senders' clocks say.
"""

from __future__ import annotations

from datetime import datetime, timedelta


def effective_time(
    sent: datetime, received: datetime, skew_s: int, previous: datetime | None
) -> datetime:
    """``sent`` moved into ``[received - skew_s, received + skew_s]``, and never before
    ``previous`` (the tenant's last effective time)."""
    skew = timedelta(seconds=skew_s)
    moment = min(max(sent, received - skew), received + skew)
    return moment if previous is None else max(moment, previous)


def timer_time(due: datetime, previous: datetime | None) -> datetime:
    """A timer fires at its due time, or at the tenant's last effective time if later."""
    return due if previous is None else max(due, previous)
