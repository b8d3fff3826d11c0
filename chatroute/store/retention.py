"""``chatroute prune``: the inbox and outbox do not grow for ever.

Sent outbox rows and applied or rejected inbox rows older than the retention go. What that
gives up, and why it is safe: an event redelivered after its inbox row went would be taken
for new (so the retention must outlast any redelivery: days, not minutes); ``chatroute
history`` no longer shows those events and decisions. State, contacts, timers and statistics
are kept: they live in their own tables. Unsent decisions and unapplied events are never
pruned, whatever their age.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, delete

from chatroute.store import inbox, tables


@dataclass(frozen=True)
class Pruned:
    inbox: int
    outbox: int


def prune(engine: Engine, before: datetime) -> Pruned:
    """Delete what is done with and older than ``before``; one transaction per table."""
    i, o = tables.inbox.c, tables.outbox.c
    with engine.begin() as connection:
        done = i.state.in_([inbox.APPLIED, inbox.REJECTED])
        events = connection.execute(delete(tables.inbox).where(done, i.applied_at < before))
    with engine.begin() as connection:
        sent = connection.execute(
            delete(tables.outbox).where(o.sent_at.is_not(None), o.sent_at < before)
        )
    return Pruned(inbox=max(events.rowcount, 0), outbox=max(sent.rowcount, 0))
