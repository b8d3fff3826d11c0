"""Crash recovery around the apply step.

A try that ends its worker process (a bug that kills it, the OOM killer) must not stall its
tenant forever. On PostgreSQL a try counts what it is about to apply first, on a connection
of its own (``store.attempts``), so the count outlives the process. Rows and timers a try
never finished with are suspects: each is applied alone in a transaction of its own, carefully
(in a savepoint, a bug set aside instead of raised), or set aside once ``MAX_ATTEMPTS`` tries
ended the worker. Applying goes as far as the first suspect: ``paused`` ends the transaction
there, and the rest waits for the next one.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import takewhile
from typing import TypeVar

from sqlalchemy.exc import DBAPIError

from chatroute import logs
from chatroute.bootstrap import Runtime
from chatroute.errors import Rejected
from chatroute.store import attempts, unit

log = logs.get("chatroute.crashes")

T = TypeVar("T")


class Bug(Exception):
    """An unexpected exception while applying one event or timer (careful mode only)."""


@dataclass
class Crashes:
    """One try's crash accounting."""

    fault_kill_on: frozenset[str]
    # What this try counted (None: tries are not counted, as on SQLite).
    tries: attempts.Tries | None
    # Each event and timer in a savepoint of its own, a bug rejected instead of raised.
    careful: bool = False
    # A suspect is next, or was just applied alone: the transaction ends here.
    paused: bool = False

    @classmethod
    def of(cls, rt: Runtime, work: unit.Work, *, careful: bool) -> Crashes:
        tenant = work.view.tenant
        tries = attempts.Tries(rt.engine, tenant) if work.counts_tries else None
        return cls(rt.settings.fault_kill_on, tries, careful)

    @property
    def counting(self) -> bool:
        return self.tries is not None

    def clean(self, items: Iterable[T], tried: Callable[[T], int]) -> list[T]:
        """``items`` up to the first that a try never finished with."""
        return list(items if not self.counting else takewhile(lambda i: not tried(i), items))

    def count_rows(self, seqs: list[int]) -> None:
        if self.tries is not None:
            self.tries.count_rows(seqs)

    def count_timers(self, timer_ids: list[str]) -> None:
        """Count ``timer_ids``, but not twice: a batch cut short counted its rest already."""
        if self.tries is not None:
            counted = set(self.tries.timers)
            self.tries.count_timers([t for t in timer_ids if t not in counted])

    def uncount_unreached(self, reached: set[int]) -> None:
        """Rows this try counted and a pause left unreached were not tried: uncount them."""
        if self.tries is not None:
            self.tries.uncount_rows([seq for seq in self.tries.rows if seq not in reached])

    def withdraw(self) -> None:
        """The try failed and this process lives on: the try ended nothing."""
        if self.tries is not None:
            self.tries.withdraw()

    def fault(self, cause: str) -> None:
        if cause in self.fault_kill_on:
            os.kill(os.getpid(), signal.SIGKILL)  # injected fault: a worker dying mid-batch

    @contextmanager
    def isolated(self, work: unit.Work) -> Iterator[None]:
        """In careful mode, run in a savepoint and turn a bug into ``Bug`` (rolled back)."""
        if not self.careful:
            yield
            return
        try:
            with work.savepoint():
                yield
        except (Rejected, DBAPIError):
            raise
        except Exception as error:
            log.error("event_or_timer_failed", error=repr(error), exc_info=True)
            work.view.forget()
            raise Bug from error
