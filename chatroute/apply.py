"""Applying a tenant's events: under the tenant's lock, its unapplied inbox rows in arrival
order and its due timers between them, each state change committed with the decisions it
causes (the routing and timer workers' step, and ``chatroute replay``'s). Crash recovery
(``chatroute.crashes``) decides what a try may apply together."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import pairwise
from typing import NamedTuple

from sqlalchemy.exc import DBAPIError

from chatroute import logs
from chatroute.bootstrap import Runtime
from chatroute.crashes import TRIES, Bug, Crashes
from chatroute.decisions import DecisionWriter
from chatroute.domain import lifecycle, timing
from chatroute.domain.model import Timer, TimerState
from chatroute.errors import Rejected, UnknownConversation
from chatroute.intake import Parsed
from chatroute.store import attempts, unit
from chatroute.store.inbox import InboxRow
from schemas.events import Event, parse_event, to_command

log = logs.get("chatroute.apply")


def apply_tenant(
    rt: Runtime,
    tenant: str,
    *,
    final: bool = False,
    parsed: Parsed | None = None,
    idle: Callable[[], object] = lambda: None,
) -> bool:
    """Apply ``tenant``'s unapplied events in arrival order, under the tenant's lock.

    Returns True when more events may be waiting: a full batch was applied, or events
    arrived meanwhile. A nudge that found the tenant locked was dropped: the lock's holder
    checks for such events after committing, so none waits for the sweeper. ``final`` (end of
    a replay) rejects events still waiting for an unknown conversation instead of keeping them.
    ``parsed``: events this process has parsed already (see ``Parsed``). ``idle`` is called
    after a transaction that left nothing to apply at once, just before that check: from
    then on, an event committed needs a nudge of its own (the routing actor releases the
    tenant's nudge claim there, see ``chatroute.nudges``).
    """
    asked = _Asked(tenant, final, parsed or {}, idle)
    with TRIES.together():
        tried = _apply_or_set_aside(rt, asked, alone=False)
    if not tried.suspect_waits:
        return tried.more
    with TRIES.alone():  # see chatroute.crashes: a crash now ends no other tenant's try
        return _apply_or_set_aside(rt, asked, alone=True).more


@dataclass(frozen=True)
class _Asked:
    """What ``apply_tenant`` was asked, as each of its tries needs it."""

    tenant: str
    final: bool
    parsed: Parsed
    idle: Callable[[], object]


class Tried(NamedTuple):
    more: bool  # more events may be waiting
    suspect_waits: bool  # a row or timer a try never finished with waits to be tried alone


def _apply_or_set_aside(rt: Runtime, asked: _Asked, *, alone: bool) -> Tried:
    try:
        return _apply_batch(rt, asked, alone=alone, careful=False)
    except DBAPIError:
        raise  # the database's trouble: the actor retries the whole batch later
    except Exception:
        # A bug on some event or timer must not stall the tenant: find it and set it aside.
        log.exception("batch_failed", tenant=asked.tenant)
        return _apply_batch(rt, asked, alone=alone, careful=True)


def _apply_batch(rt: Runtime, asked: _Asked, *, alone: bool, careful: bool) -> Tried:
    now = rt.clock.now()
    limit = rt.settings.batch_size
    rt.units.settle_tries()  # before this try counts: earlier tries' counts taken back
    run: _Run | None = None
    try:
        with rt.units.tenant_work(asked.tenant, now) as work:
            if work is None:
                return Tried(False, False)
            crashes = Crashes.of(rt, work, careful=careful, alone=alone)
            run = _Run(work, DecisionWriter(now), now, rt, asked.final, asked.parsed, crashes)
            full, last_seq = _apply_pages(run, limit)
            if not full:
                run.fire_due(now)
            if crashes.paused:
                full, last_seq = True, 0  # what is done commits; the rest in the next transaction
                run.uncount_unreached()
                work.keepable = False  # tries counted for later: the next reads them afresh
            _finish(run)
    except Exception:
        if run is not None:
            run.crashes.withdraw()
        raise
    if full:
        return Tried(True, crashes.suspect_waits)
    asked.idle()
    return Tried(rt.units.has_newer(asked.tenant, last_seq), crashes.suspect_waits)


def _apply_pages(run: _Run, limit: int) -> tuple[bool, int]:
    """Apply the tenant's oldest ``limit`` unapplied rows. When every row of a full page
    waits for its conversation, read on past them: waiting events must not stall their
    tenant. Returns whether more may follow at once and the last seq read.

    Rows a try never finished with (``store.attempts``) are left for one transaction each.
    """
    after = 0
    while True:
        rows = run.work.unapplied(limit, after)
        clean = run.crashes.clean(rows, lambda row: row.attempts)
        run.view.prefetch({row.conversation_id for row in clean if row.conversation_id})
        run.crashes.count_rows([row.seq for row in clean])
        run.apply_rows(clean)
        if run.crashes.paused:
            return True, 0
        if len(clean) < len(rows):
            suspect = rows[len(clean)]
            if not run.progressed:
                run.try_suspect(suspect)
            return True, suspect.seq
        after = rows[-1].seq if rows else after
        if len(rows) < limit:
            return False, after
        if run.progressed:
            return True, after


def _finish(run: _Run) -> None:
    if run.crashes.careful:
        run.work.keepable = False  # its savepoints may have left caches behind the rows
    waited = [row.seq for rows in run.held.values() for row in rows] if run.crashes.counting else []
    outcome = unit.Outcome(
        run.applied, run.rejected, run.adjusted, waited, run.writer.rows, run.now
    )
    run.work.finish(outcome)


@dataclass
class _Run:
    work: unit.Work
    writer: DecisionWriter
    now: datetime
    rt: Runtime
    final: bool
    parsed: Parsed
    crashes: Crashes
    applied: list[int] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)
    # The effective times of the rows whose effective time is not their own, by seq.
    adjusted: dict[int, datetime] = field(default_factory=dict)
    # Rows waiting for their conversation to start, and the later rows they hold back.
    held: dict[str, list[InboxRow]] = field(default_factory=dict)
    fired: int = 0

    @property
    def view(self) -> unit.WorkView:
        return self.work.view

    @property
    def progressed(self) -> bool:
        return bool(self.applied or self.rejected)

    def try_suspect(self, row: InboxRow) -> None:
        """Apply ``row``, which a try never finished with, alone and carefully; or set it
        aside when its tries ended the worker process ``MAX_ATTEMPTS`` times."""
        if self.crashes.waits_to_go_alone():
            return
        if row.attempts >= attempts.MAX_ATTEMPTS:
            log.error(
                "event_set_aside_after_crashes",
                tenant=row.tenant,
                event_id=row.event_id,
                type=row.type,
                attempts=row.attempts,
            )
            reason = f"set aside: {row.attempts} tries ended the worker process"
            self._reject(row, reason)
            return
        self.crashes.careful = True
        self.view.prefetch({row.conversation_id} if row.conversation_id else set())
        # Timers due before it fire first; a suspect one fires alone and ends this
        # transaction (paused): the row must not be counted for a try it did not get.
        self._fire_before(row)
        if self.crashes.paused:
            return
        self.crashes.count_rows([row.seq])
        self.apply_rows([row])

    def uncount_unreached(self) -> None:
        reached = {*self.applied, *(seq for seq, _ in self.rejected)}
        reached |= {row.seq for rows in self.held.values() for row in rows}
        self.crashes.uncount_unreached(reached)

    def apply_rows(self, rows: Sequence[InboxRow]) -> None:
        """Apply ``rows`` in order. A row waiting for its conversation to start holds back
        that conversation's later rows; they apply right after the start, so the outcome is
        the same however the rows were split into batches (``chatroute replay`` relies on it)."""
        for row in rows:
            self._apply_or_hold(row)

    def _apply_or_hold(self, row: InboxRow) -> None:
        if self.crashes.paused:
            return  # left for the next transaction
        conversation = row.conversation_id or ""
        starts_it = row.type == "conversation.started"
        if conversation in self.held and not starts_it:
            self.held[conversation].append(row)
            return
        moment = self._fire_before(row)
        if self.crashes.paused:
            return
        if not self.apply_row(row, moment):
            self.held.setdefault(conversation, []).append(row)
            return
        self.fire_due(moment)
        if starts_it and conversation in self.held and not self.crashes.paused:
            for waiting in self.held.pop(conversation):
                self._apply_or_hold(waiting)

    def _fire_before(self, row: InboxRow) -> datetime:
        """Fire the timers due before ``row``, and return its effective time (which they may
        move on). Before means by its effective time, or by when it was received: a timer
        due before the event came in fires first whether or not the sweeper got to it, so a
        replay of the events stamped with their reception decides what the pipeline did."""
        self.fire_due(max(self._effective(row), row.received_at))
        return self._effective(row)

    def apply_row(self, row: InboxRow, moment: datetime) -> bool:
        """Apply one event at its effective time ``moment``; False when it must wait for its
        conversation to start."""
        self.crashes.fault(row.event_id)
        event = self._event(row)
        bound = {
            "tenant": row.tenant,
            "event_id": row.event_id,
            "type": row.type,
            "conversation": row.conversation_id,
        }
        try:
            with self.crashes.isolated(self.work):
                command = to_command(event)
                if self.rt.recast is not None:
                    command = self.rt.recast(self.view, command)
                decisions = lifecycle.handle(self.view, command, moment)
        except Bug as bug:
            self._reject(row, f"internal error ({bug.__cause__!r}); event set aside")
        except UnknownConversation as error:
            if self._may_wait(row):
                log.info("event_waits_for_conversation", **bound)
                return False
            self._reject(row, error.reason)
        except Rejected as error:
            self._reject(row, error.reason)
        else:
            self.writer.add(row.tenant, row.event_id, moment, decisions)
            self._advance(row, moment)
            self.applied.append(row.seq)
            log.debug("event_applied", decisions=len(decisions), **bound)
        return True

    def _event(self, row: InboxRow) -> Event:
        known = self.parsed.get((row.tenant, row.event_id))
        if known is not None and known.event is not None and known.body.decode() == row.body:
            return known.event
        return parse_event(row.body)

    def _may_wait(self, row: InboxRow) -> bool:
        window = timedelta(seconds=self.rt.settings.unknown_retry_s)
        return not self.final and self.now - row.received_at < window

    def _reject(self, row: InboxRow, reason: str) -> None:
        moment = self._effective(row)
        self.writer.reject(row.tenant, row.event_id, row.type, row.body.encode(), reason, moment)
        self._advance(row, moment)
        self.rejected.append((row.seq, reason))

    def _effective(self, row: InboxRow) -> datetime:
        settings = self.view.settings()
        return timing.effective_time(
            row.event_time, row.received_at, settings.clock_skew_s, settings.effective_at
        )

    def _advance(self, row: InboxRow, moment: datetime) -> None:
        """The tenant's effective time moves to ``moment``, that of ``row``."""
        settings = self.view.settings()
        settings.effective_at = moment
        if moment != row.event_time:
            settings.adjusted_events += 1
            self.adjusted[row.seq] = moment

    def fire_due(self, upto: datetime) -> None:
        """Fire the tenant's timers due at or before ``upto``, by (due, timer id).

        A timer whose firing a try never finished is fired alone in a transaction of its own,
        or set aside after ``MAX_ATTEMPTS`` (see ``store.attempts``); ``paused`` ends the
        current transaction before it, or right after it.
        """
        while not self.crashes.paused and (timers := self.view.due_timers(upto)):
            armed = [t for t in timers if t.state == TimerState.ARMED]
            clean = self.crashes.clean(armed, attempts.tries)
            self.crashes.count_timers([t.timer_id for t in clean])
            if self._fire_in_order(clean, upto) and len(clean) < len(armed):
                self._fire_suspect(armed[len(clean)])

    def _fire_in_order(self, timers: Sequence[Timer], upto: datetime) -> bool:
        """Fire ``timers`` (due by ``upto``, in order) until one arms a timer due before the
        next of them: then False, and the caller reads the due timers again."""
        for timer, following in pairwise(timers):
            self.view.lately_armed.clear()
            self._fire(timer)
            if any(
                (new.due, new.timer_id) < (following.due, following.timer_id)
                for new in self.view.lately_armed
                if new.due <= upto
            ):
                return False
        for timer in timers[-1:]:
            self._fire(timer)  # the last: what it arms is read with the next due timers
        return True

    def _fire_suspect(self, timer: Timer) -> None:
        self.crashes.paused = True  # the suspect goes alone, and ends its transaction
        if self.progressed or self.fired:
            return  # commit what is done first
        if self.crashes.waits_to_go_alone():
            return
        if attempts.tries(timer) >= attempts.MAX_ATTEMPTS:
            timer.state = TimerState.FAILED
            log.error(
                "timer_set_aside_after_crashes",
                tenant=self.view.tenant,
                timer=timer.timer_id,
                conversation=timer.conversation_id,
                attempts=attempts.tries(timer),
            )
        else:
            self.crashes.count_timers([timer.timer_id])
            self.crashes.careful = True
            self._fire(timer)

    def _fire(self, timer: Timer) -> None:
        if timer.state != TimerState.ARMED:
            # Cancelled by a timer fired before it from the same list: as if the list had been
            # read after that one fired (batches must not decide what their size is).
            return
        self.crashes.fault(f"timer:{timer.timer_id}")
        self.fired += 1
        settings = self.view.settings()
        moment = timing.timer_time(timer.due, settings.effective_at)
        try:
            with self.crashes.isolated(self.work):
                decisions = lifecycle.fire(self.view, timer, moment)
        except Bug:
            timer.state = TimerState.FAILED
            log.error("timer_failed", timer=timer.timer_id, conversation=timer.conversation_id)
            return
        timer.state = TimerState.FIRED
        settings.effective_at = moment
        self.writer.add(self.view.tenant, f"timer:{timer.timer_id}", moment, decisions)
