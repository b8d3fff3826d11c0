"""Crash recovery around the apply step.

A try that ends its worker process (a bug that kills it, the OOM killer) must not stall its
tenant forever. On PostgreSQL a try counts what it is about to apply first, on a connection
of its own (``store.attempts``), so the count outlives the process. Rows and timers a try
never finished with are suspects: each is applied alone in a transaction of its own, carefully
(in a savepoint, a bug set aside instead of raised), or set aside once ``MAX_ATTEMPTS`` tries
ended the worker. Applying goes as far as the first suspect: ``paused`` ends the transaction
there, and the rest waits for the next one.

A SIGKILL ends every try of its process, not only the one that caused it: the tries of other
tenants that threads of the process were applying are counted too. So a suspect is tried
alone in its process (``TRIES.alone``): a crash then ends no other try, and an innocent row
that a crash beside it counted once is next tried alone, where only its own fault can end it.
"""

from __future__ import annotations

import os
import signal
import threading
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


class ProcessTries:
    """This process's tries: any number together, or one alone. One waiting to go alone keeps
    new ones from starting, so it is not starved."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._together = 0
        self._alone = False
        self._waiting_alone = 0

    @contextmanager
    def together(self) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: not (self._alone or self._waiting_alone))
            self._together += 1
        try:
            yield
        finally:
            with self._changed:
                self._together -= 1
                self._changed.notify_all()

    @contextmanager
    def alone(self) -> Iterator[None]:
        with self._changed:
            self._waiting_alone += 1
            self._changed.wait_for(lambda: not (self._alone or self._together))
            self._waiting_alone -= 1
            self._alone = True
        try:
            yield
        finally:
            with self._changed:
                self._alone = False
                self._changed.notify_all()


TRIES = ProcessTries()


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
    # Whether this try runs alone in its process (``TRIES.alone``): only such a try applies a
    # suspect; one that runs together with others ends at it, and ``suspect_waits`` says so.
    alone: bool = False
    suspect_waits: bool = False

    @classmethod
    def of(cls, rt: Runtime, work: unit.Work, *, careful: bool, alone: bool) -> Crashes:
        return cls(rt.settings.fault_kill_on, work.tries(), careful, alone=alone)

    def waits_to_go_alone(self) -> bool:
        """At a suspect: True (and the transaction ends here) unless this try runs alone."""
        if self.alone:
            return False
        self.paused = self.suspect_waits = True
        return True

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
