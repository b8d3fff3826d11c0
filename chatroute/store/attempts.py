"""Tries that ended their worker process, counted where a SIGKILL cannot erase them.

dramatiq counts an attempt only when the actor raises. A worker killed while applying a batch
(out of memory, a crash in a driver, a hang ended by the supervisor) just leaves its message
unacknowledged; RabbitMQ delivers it again and the next worker dies the same way, forever.
So before applying rows, the tenant's lock holder adds one to their ``attempts`` and commits
that on a connection of its own, outside the batch's transaction. A row found with attempts
was in a try that never finished: such rows are applied one per transaction, each counted,
and a row whose tries ended the worker ``MAX_ATTEMPTS`` times is set aside as rejected.

A try that ends with an exception did not end its process (the database restarted under it,
say): it takes its counts back (``Tries.withdraw``). When the database cannot take them back
yet, they wait in the process, which tries again every ``SETTLE_EVERY_S`` and before its next
try counts anything (``settle``): soon after the database is back, before other workers take
those rows for suspects and apply them one per transaction. A process that dies meanwhile
leaves them counted, as a try that ended a process should.

PostgreSQL only: on SQLite (the embedded mode, one process) a second writer would wait for
the first, and a crash ends the whole run anyway.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, Engine, Table, Update, bindparam, func, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from chatroute.store import tables

MAX_ATTEMPTS = 3
SETTLE_EVERY_S = 0.25


def counted(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def count(engine: Engine, seqs: Sequence[int]) -> None:
    """Commit one more try of these inbox rows at once, whatever becomes of this process
    (``engine``: best ``db.lone_engine``'s, where this is one round trip)."""
    if seqs:
        _add_try(engine, _ROWS, {"seqs": list(seqs), "step": 1})


def count_timers(engine: Engine, tenant: str, timer_ids: Sequence[str]) -> None:
    """The same for firings of these timers."""
    if timer_ids:
        _add_try(engine, _TIMERS, {"owner": tenant, "ids": list(timer_ids), "step": 1})


def _add_try(engine: Engine, statement: Update, values: dict[str, object]) -> None:
    with engine.begin() as connection:
        connection.execute(statement, values)


def _counted(table: Table, *where: ColumnElement[bool]) -> Update:
    # Never below 0: a count taken back may have been lost in a crash of the server.
    tries = func.greatest(table.c.attempts + bindparam("step"), 0)
    return update(table).where(*where).values(attempts=tries)


# Built once: a statement built per try cost more than its round trip.
_ROWS = _counted(tables.inbox, tables.inbox.c.seq.in_(bindparam("seqs", expanding=True)))
_TIMERS = _counted(
    tables.timers,
    tables.timers.c.tenant == bindparam("owner"),
    tables.timers.c.timer_id.in_(bindparam("ids", expanding=True)),
)


@dataclass
class Tries:
    """What one try counted, so that it can take the counts back if it ends with an exception."""

    engine: Engine
    tenant: str
    rows: list[int] = field(default_factory=list)
    timers: list[str] = field(default_factory=list)

    def count_rows(self, seqs: Sequence[int]) -> None:
        count(self.engine, seqs)
        self.rows += seqs

    def count_timers(self, timer_ids: Sequence[str]) -> None:
        count_timers(self.engine, self.tenant, timer_ids)
        self.timers += timer_ids

    def uncount_rows(self, seqs: Sequence[int]) -> None:
        """These counted rows were not tried after all (the transaction ended before them)."""
        if seqs:
            _add_try(self.engine, _ROWS, {"seqs": list(seqs), "step": -1})
            self.rows = [seq for seq in self.rows if seq not in set(seqs)]

    def withdraw(self) -> None:
        """This try ended with an exception, not with its process: it ended nothing."""
        if self.rows or self.timers:
            with _lock:
                _withdrawn.append(Tries(self.engine, self.tenant, self.rows, self.timers))
            if not settle(self.engine):
                _settle_soon(self.engine)

    def take_back(self) -> None:
        if self.rows:
            _add_try(self.engine, _ROWS, {"seqs": self.rows, "step": -1})
        if self.timers:
            values = {"owner": self.tenant, "ids": self.timers, "step": -1}
            _add_try(self.engine, _TIMERS, values)


_lock = threading.Lock()
_withdrawn: list[Tries] = []  # taken back when the database answers again


def settle(engine: Engine) -> bool:
    """Take back the counts of this process's tries that ended with an exception; False when
    some must wait for the database."""
    with _lock:
        waiting = [tries for tries in _withdrawn if tries.engine is engine]
        _withdrawn[:] = [tries for tries in _withdrawn if tries.engine is not engine]
    for n, tries in enumerate(waiting):
        try:
            tries.take_back()
        except DBAPIError:
            with _lock:
                _withdrawn.extend(waiting[n:])
            return False
    return True


_settling: set[int] = set()  # engines a thread is settling for


def _settle_soon(engine: Engine) -> None:
    """Settle in the background until the database takes every count back."""
    with _lock:
        if id(engine) in _settling:
            return
        _settling.add(id(engine))

    def retry() -> None:
        while not settle(engine):
            time.sleep(SETTLE_EVERY_S)
        with _lock:
            _settling.discard(id(engine))

    threading.Thread(target=retry, name="attempts-settle", daemon=True).start()


def tries(timer: object) -> int:
    """Firings of ``timer`` that never finished (a column of the store, not of the domain)."""
    return int(getattr(timer, "attempts", 0) or 0)


def forgive(session: Session, seqs: Sequence[int]) -> None:
    """In the batch's transaction: rows that only waited were tried, not attempted."""
    if seqs:
        c = tables.inbox.c
        session.execute(update(tables.inbox).where(c.seq.in_(list(seqs))).values(attempts=0))
