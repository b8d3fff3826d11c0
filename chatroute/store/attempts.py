"""Tries that ended their worker process, counted where a SIGKILL cannot erase them.

dramatiq counts an attempt only when the actor raises. A worker killed while applying a batch
(out of memory, a crash in a driver, a hang ended by the supervisor) just leaves its message
unacknowledged; RabbitMQ delivers it again and the next worker dies the same way, forever.
So before applying rows, the tenant's lock holder adds one to their ``attempts`` and commits
that on a connection of its own, outside the batch's transaction. A row found with attempts
was in a try that never finished: such rows are applied one per transaction, each counted,
and a row whose tries ended the worker ``MAX_ATTEMPTS`` times is set aside as rejected.

PostgreSQL only: on SQLite (the embedded mode, one process) a second writer would wait for
the first, and a crash ends the whole run anyway.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Engine, Update, text, update
from sqlalchemy.orm import Session

from chatroute.store import tables

MAX_ATTEMPTS = 3


def counted(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def count(engine: Engine, seqs: Sequence[int]) -> None:
    """Commit one more try of these inbox rows at once, whatever becomes of this process."""
    if seqs:
        c = tables.inbox.c
        _add_try(engine, update(tables.inbox).where(c.seq.in_(list(seqs))))


def count_timers(engine: Engine, tenant: str, timer_ids: Sequence[str]) -> None:
    """The same for firings of these timers."""
    if timer_ids:
        c = tables.timers.c
        _add_try(engine, update(tables.timers).where(c.tenant == tenant, c.timer_id.in_(timer_ids)))


def _add_try(engine: Engine, statement: Update) -> None:
    table = statement.table
    with engine.begin() as connection:
        # Losing this count in a server crash costs one more try: no need to wait for the disk.
        connection.execute(text("SET LOCAL synchronous_commit TO OFF"))
        connection.execute(statement.values(attempts=table.c.attempts + 1))


def tries(timer: object) -> int:
    """Firings of ``timer`` that never finished (a column of the store, not of the domain)."""
    return int(getattr(timer, "attempts", 0) or 0)


def forgive(session: Session, seqs: Sequence[int]) -> None:
    """In the batch's transaction: rows that only waited were tried, not attempted."""
    if seqs:
        c = tables.inbox.c
        session.execute(update(tables.inbox).where(c.seq.in_(list(seqs))).values(attempts=0))
