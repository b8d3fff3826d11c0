"""What is due, across tenants: timers by their due time, and events left waiting. The
sweeper nudges these tenants; ``chatroute replay`` applies them on its virtual clock."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine, func, select

from chatroute.domain.model import TimerState
from chatroute.store import inbox, tables

# An event left unapplied this long was missed by its nudge (a crash) or waits for its
# conversation: nudge its tenant again.
WAITING_AFTER = timedelta(seconds=1)


def due_tenants(engine: Engine, now: datetime, lookahead: timedelta) -> dict[str, float]:
    """Tenants to nudge, with how many seconds from ``now``: timers due by ``now + lookahead``
    (at their earliest due time), and events received a while ago still unapplied (now)."""
    t = tables.timers.c
    with engine.connect() as connection:
        query = (
            select(t.tenant, func.min(t.due))
            .where(t.state == TimerState.ARMED, t.due <= now + lookahead)
            .group_by(t.tenant)
        )
        wait = {
            tenant: max(0.0, (due - now).total_seconds())
            for tenant, due in connection.execute(query)
        }
        for tenant in inbox.tenants_waiting(connection, now - WAITING_AFTER):
            wait[tenant] = 0.0
    return wait


def next_due_elsewhere(engine: Engine, tenant: str) -> tuple[datetime | None, datetime | None]:
    """The earliest armed timer of another tenant than ``tenant``, and the reception time of
    the oldest event still unapplied (any tenant's)."""
    t = tables.timers.c
    with engine.connect() as connection:
        due = connection.scalar(
            select(func.min(t.due)).where(t.state == TimerState.ARMED, t.tenant != tenant)
        )
        return due, inbox.oldest_unapplied(connection)


def tenants_with_unapplied(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return inbox.tenants_waiting(connection)
