"""The engine's two steps: taking events in, and applying a tenant's events.

Both are called by thin actors (``workers/``) and by ``chatroute replay``. Each commits the
state change, the idempotency record and the decisions it causes together.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import pairwise, takewhile
from typing import Any

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from chatroute import logs
from chatroute.bootstrap import Runtime
from chatroute.domain import lifecycle, timing
from chatroute.domain.model import Decision, Timer, TimerState
from chatroute.errors import InvalidEvent, Rejected, UnknownConversation, reason_kind
from chatroute.store import attempts, inbox, outbox, unit
from chatroute.store.inbox import InboxRow
from chatroute.store.kept import KeptBody, keep
from schemas.decisions import make_decision
from schemas.events import (
    DATA_MODELS,
    Event,
    best_effort_identity,
    canonical_json,
    parse_event,
    to_command,
)

log = logs.get("chatroute.service")

ACCEPTED_CONTENT_TYPES = {"application/cloudevents+json", "application/json"}
UNKNOWN_TENANT = "unknown"
# Same shape as the envelope's tenant: it becomes part of an AMQP topic routing key.
MAX_ID = 200
TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")


@dataclass(frozen=True)
class Incoming:
    """One message as it reached ``chat.events``, in structured mode: the AMQP edge
    (``chatroute.cloudevents_amqp``) translates a binary-mode message into its JSON body."""

    body: bytes
    content_type: str | None = None  # the body's
    # When it reached us; None: now. ``chatroute replay`` gives each line its virtual time.
    received_at: datetime | None = None
    # How it was published (routing key, AMQP content type): kept on a rejected copy.
    origin: outbox.Origin | None = None
    # Why the edge found it cannot be an event (a binary-mode message only); checked first.
    reason: str | None = None
    # The body as already parsed, by whoever read it first (``chatroute replay`` reads each
    # line to group them): parsed once, not once per step.
    event: Event | None = None


# Events already parsed, by (tenant, id), each with the body it was parsed from: apply uses
# one whose body is the inbox row's instead of parsing the row again.
Parsed = Mapping[tuple[str, str], Incoming]


@dataclass
class DecisionWriter:
    """Turns domain decisions into outbox rows with deterministic ids, in decision order."""

    created_at: datetime
    rows: list[dict[str, Any]] = field(default_factory=list)
    count: int = 0

    def add(
        self, tenant: str, cause_id: str, time: datetime, decisions: Sequence[Decision]
    ) -> None:
        for index, decision in enumerate(decisions):
            envelope = make_decision(tenant, cause_id, index, time, decision.type, decision.data)
            self.rows.append(outbox.decision_row(envelope, self.created_at))
        self.count += len(decisions)

    def reject(
        self,
        tenant: str,
        event_id: str | None,
        type_: str | None,
        body: bytes,
        reason: str,
        time: datetime,
        cause: str | None = None,
        origin: outbox.Origin | None = None,
    ) -> None:
        """``cause`` (the decision's causationid) defaults to the event's id. Without a usable
        tenant an id identifies nothing: garbage bodies that share one are different messages,
        each kept; a repeat of the same bytes (the whole body, however much is kept) is one."""
        kept = keep(body)
        if cause is None:
            keyed = event_id is not None and tenant != UNKNOWN_TENANT
            cause = event_id if keyed else "body:" + kept.sha256
        data = {"event_id": event_id, "type": type_, "reason": reason}
        envelope = make_decision(tenant, cause, 0, time, "event.rejected", data)
        self.rows.append(outbox.decision_row(envelope, self.created_at))
        self.rows.append(
            outbox.rejected_copy_row(envelope["id"], tenant, kept, reason, self.created_at, origin)
        )
        self.count += 1
        # The reason's kind only: a reason may quote a value of the event (see reason_kind);
        # the whole reason is in the decision and on the inbox row.
        kind = type_ if type_ in DATA_MODELS else None  # a garbage body's "type" is anything
        log.warning(
            "event_rejected",
            tenant=tenant,
            event_id=event_id,
            type=kind,
            reason=reason_kind(reason),
        )


# ---------------------------------------------------------------- taking events in


def ingest(rt: Runtime, messages: Sequence[Incoming]) -> set[str]:
    """Validate and record ``messages`` in one transaction; returns the tenants to nudge.

    Every message with a usable (tenant, id) is recorded in the inbox, accepted or rejected,
    so a redelivery of either decides nothing new. A message whose id is taken by a
    different event (another JSON value) is rejected, not taken for a repeat. A message that
    hits a bug is set aside (rejected with an ``internal error`` reason, its body kept).
    """
    try:
        return _ingest(rt, messages)
    except (OperationalError, InterfaceError):
        raise  # the database's trouble: the gateway acks nothing and takes the batch again
    except Exception as error:
        # Raising would end the gateway, and the broker would hand the batch to the next
        # gateway, which would end too: find the message and set it aside.
        log.exception("intake_failed", messages=len(messages))
        if len(messages) == 1:
            return _set_aside(rt, messages[0], error)
        return set().union(*(ingest(rt, [message]) for message in messages))


def _set_aside(rt: Runtime, message: Incoming, error: Exception) -> set[str]:
    # Under the tenant "unknown": the tenant or id read from the body may be the trouble.
    now = rt.clock.now()
    writer = DecisionWriter(now)
    reason = f"internal error ({type(error).__name__}); event set aside"
    writer.reject(UNKNOWN_TENANT, None, None, message.body, reason, now, origin=message.origin)
    rt.units.decisions_alone(writer.rows)
    return set()


def _ingest(rt: Runtime, messages: Sequence[Incoming]) -> set[str]:
    now = rt.clock.now()
    writer = DecisionWriter(now)
    verdicts = [_verdict(message, now) for message in messages]

    def take(known: dict[tuple[str, str], inbox.StoredBody]) -> tuple[unit.Rows, unit.Rows]:
        # Only repeats come back, so only they pay for a body comparison.
        rows = [row for v in verdicts if (row := _take(v, known, writer, now)) is not None]
        return rows, writer.rows

    return rt.units.intake([v.key for v in verdicts if v.key is not None], take)


def _take(
    verdict: _Verdict,
    known: dict[tuple[str, str], inbox.StoredBody],
    writer: DecisionWriter,
    now: datetime,
) -> dict[str, Any] | None:
    """The inbox row ``verdict`` adds, if any; its rejection, if any, goes to ``writer``.
    ``known`` maps the keys recorded so far to their bodies."""
    key = verdict.key
    if key is not None and key in known:
        if not _same_body(known[key], verdict):
            _reject_reuse(verdict, writer, now)
        return None
    if verdict.reason is not None:
        writer.reject(*verdict.identity, verdict.body, verdict.reason, now, origin=verdict.origin)
    if key is None:
        return None
    known[key] = inbox.StoredBody(verdict.text, verdict.row.get("body_sha256"))
    return verdict.row


def _same_body(stored: inbox.StoredBody, verdict: _Verdict) -> bool:
    """Whether ``verdict`` holds the stored event: the same JSON value or, when only the head
    of a big body was stored, the same bytes (by the whole body's digest)."""
    if stored.sha256 is not None:
        return stored.sha256 == hashlib.sha256(verdict.body).hexdigest()
    return canonical_json(stored.text) == canonical_json(verdict.text)


def _reject_reuse(verdict: _Verdict, writer: DecisionWriter, now: datetime) -> None:
    """Reject a body whose id a different event holds. Its own cause, from its JSON value,
    keeps the id's decisions apart and makes a redelivery of it decide nothing new."""
    _, event_id, _ = verdict.identity
    reason = verdict.reason or f"id {event_id!r} was already used by a different event"
    digest = hashlib.sha256(canonical_json(verdict.text).encode()).hexdigest()
    cause = "body:" + digest
    writer.reject(*verdict.identity, verdict.body, reason, now, cause=cause, origin=verdict.origin)


@dataclass(frozen=True)
class _Verdict:
    body: bytes
    identity: tuple[str, str | None, str | None]  # tenant (or "unknown"), event id, type
    row: dict[str, Any]
    origin: outbox.Origin | None
    reason: str | None = None

    @property
    def key(self) -> tuple[str, str] | None:
        tenant, event_id, _ = self.identity
        return None if tenant == UNKNOWN_TENANT or event_id is None else (tenant, event_id)

    @property
    def text(self) -> str:
        """The whole body as text (exact for every verdict with a key: its body is UTF-8)."""
        return self.body.decode("utf-8", errors="replace")


def _verdict(message: Incoming, now: datetime) -> _Verdict:
    try:
        if message.reason is not None:
            raise InvalidEvent(message.reason)
        _check_content_type(message.content_type)
        event = message.event if message.event is not None else parse_event(message.body)
    except InvalidEvent as error:
        return _rejected_verdict(message, error.reason, now)
    row = {
        "tenant": event.tenant,
        "event_id": event.id,
        "type": event.type,
        "conversation_id": getattr(event.data, "conversation", None),
        "event_time": event.time,
        "received_at": message.received_at or now,
        "body": message.body.decode(),
        "state": inbox.NEW,
    }
    return _Verdict(message.body, (event.tenant, event.id, event.type), row, message.origin)


def _rejected_verdict(message: Incoming, reason: str, now: datetime) -> _Verdict:
    body = message.body
    tenant, event_id, type_ = best_effort_identity(body)
    usable = tenant if tenant is not None and TENANT.fullmatch(tenant) else UNKNOWN_TENANT
    if event_id is not None and not 0 < len(event_id) <= MAX_ID:
        event_id = None
    row = {
        "tenant": usable,
        "event_id": event_id,
        "type": (type_ or "")[:64],
        "conversation_id": None,
        "event_time": now,
        "received_at": now,
        "state": inbox.REJECTED,
        "reason": reason,
        "applied_at": now,
        **_kept_columns(keep(body)),
    }
    return _Verdict(body, (usable, event_id, type_), row, message.origin, reason)


def _kept_columns(kept: KeptBody) -> dict[str, Any]:
    """The inbox columns of a rejected body: its head, and its size and digest when cut."""
    cut = kept.truncated
    return {
        "body": kept.head.decode("utf-8", errors="replace"),
        "body_size": kept.size if cut else None,
        "body_sha256": kept.sha256 if cut else None,
    }


def _check_content_type(content_type: str | None) -> None:
    if content_type is None:
        return
    base = content_type.split(";")[0].strip().lower()
    if base not in ACCEPTED_CONTENT_TYPES:
        accepted = " or ".join(sorted(ACCEPTED_CONTENT_TYPES))
        raise InvalidEvent(f"content type {content_type!r} is not {accepted}")


# ---------------------------------------------------------------- applying a tenant's events


def apply_tenant(
    rt: Runtime, tenant: str, *, final: bool = False, parsed: Parsed | None = None
) -> bool:
    """Apply ``tenant``'s unapplied events in arrival order, under the tenant's lock.

    Returns True when more events may be waiting: a full batch was applied, or events
    arrived meanwhile. A nudge that found the tenant locked was dropped: the lock's holder
    checks for such events after committing, so none waits for the sweeper. ``final`` (end of
    a replay) rejects events still waiting for an unknown conversation instead of keeping them.
    ``parsed``: events this process has parsed already (see ``Parsed``).
    """
    try:
        return _apply_batch(rt, tenant, final, parsed or {}, careful=False)
    except DBAPIError:
        raise  # the database's trouble: the actor retries the whole batch later
    except Exception:
        # A bug on some event or timer must not stall the tenant: find it and set it aside.
        log.exception("batch_failed", tenant=tenant)
        return _apply_batch(rt, tenant, final, parsed or {}, careful=True)


def _apply_batch(rt: Runtime, tenant: str, final: bool, parsed: Parsed, *, careful: bool) -> bool:
    now = rt.clock.now()
    limit = rt.settings.batch_size
    rt.units.settle_tries()  # before this try counts: earlier tries' counts taken back
    run: _Run | None = None
    try:
        with rt.units.tenant_work(tenant, now) as work:
            if work is None:
                return False
            run = _Run(work, DecisionWriter(now), now, rt, final, parsed, careful=careful)
            full, last_seq = _apply_pages(run, limit)
            if not full:
                run.fire_due(now)
            if run.paused:
                full, last_seq = True, 0  # what is done commits; the rest in the next transaction
                run.uncount_unreached()
                work.keepable = False  # tries counted for later: the next reads them afresh
            _finish(run)
    except Exception:
        if run is not None and run.tries is not None:
            run.tries.withdraw()  # this process lives on: the try ended nothing
        raise
    return full or rt.units.has_newer(tenant, last_seq)


def _apply_pages(run: _Run, limit: int) -> tuple[bool, int]:
    """Apply the tenant's oldest ``limit`` unapplied rows. When every row of a full page
    waits for its conversation, read on past them: waiting events must not stall their
    tenant. Returns whether more may follow at once and the last seq read.

    Rows a try never finished with (``store.attempts``) are left for one transaction each.
    """
    after = 0
    while True:
        rows = run.work.unapplied(limit, after)
        clean = rows if not run.counting else list(takewhile(lambda r: not r.attempts, rows))
        run.view.prefetch({row.conversation_id for row in clean if row.conversation_id})
        if run.tries is not None:
            run.tries.count_rows([row.seq for row in clean])
        run.apply_rows(clean)
        if run.paused:
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
    if run.careful:
        run.work.keepable = False  # its savepoints may have left caches behind the rows
    waited = [row.seq for rows in run.held.values() for row in rows] if run.counting else []
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
    careful: bool = False
    applied: list[int] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)
    # The effective times of the rows whose effective time is not their own, by seq.
    adjusted: dict[int, datetime] = field(default_factory=dict)
    # Rows waiting for their conversation to start, and the later rows they hold back.
    held: dict[str, list[InboxRow]] = field(default_factory=dict)
    fired: int = 0
    # A suspect timer is next, or was just fired alone: the transaction ends here, and what
    # is left waits for the next one.
    paused: bool = False
    # Tries that end the worker are counted (PostgreSQL): what this try counted.
    tries: attempts.Tries | None = field(init=False)

    def __post_init__(self) -> None:
        counted = self.work.counts_tries
        self.tries = attempts.Tries(self.rt.engine, self.view.tenant) if counted else None

    @property
    def view(self) -> unit.WorkView:
        return self.work.view

    @property
    def counting(self) -> bool:
        return self.tries is not None

    @property
    def progressed(self) -> bool:
        return bool(self.applied or self.rejected)

    def try_suspect(self, row: InboxRow) -> None:
        """Apply ``row``, which a try never finished with, alone and carefully; or set it
        aside when its tries ended the worker process ``MAX_ATTEMPTS`` times."""
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
        assert self.tries is not None  # suspects are only found where tries are counted
        self.careful = True
        self.view.prefetch({row.conversation_id} if row.conversation_id else set())
        # Timers due before it fire first; a suspect one fires alone and ends this
        # transaction (paused): the row must not be counted for a try it did not get.
        self._fire_before(row)
        if self.paused:
            return
        self.tries.count_rows([row.seq])
        self.apply_rows([row])

    def uncount_unreached(self) -> None:
        """Rows this try counted and a pause left unreached were not tried: uncount them."""
        if self.tries is None:
            return
        reached = {*self.applied, *(seq for seq, _ in self.rejected)}
        reached |= {row.seq for rows in self.held.values() for row in rows}
        self.tries.uncount_rows([seq for seq in self.tries.rows if seq not in reached])

    def apply_rows(self, rows: Sequence[InboxRow]) -> None:
        """Apply ``rows`` in order. A row waiting for its conversation to start holds back
        that conversation's later rows; they apply right after the start, so the outcome is
        the same however the rows were split into batches (``chatroute replay`` relies on it)."""
        for row in rows:
            self._apply_or_hold(row)

    def _apply_or_hold(self, row: InboxRow) -> None:
        if self.paused:
            return  # left for the next transaction
        conversation = row.conversation_id or ""
        starts_it = row.type == "conversation.started"
        if conversation in self.held and not starts_it:
            self.held[conversation].append(row)
            return
        moment = self._fire_before(row)
        if self.paused:
            return
        if not self.apply_row(row, moment):
            self.held.setdefault(conversation, []).append(row)
            return
        self.fire_due(moment)
        if starts_it and conversation in self.held and not self.paused:
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
        self._fault(row.event_id)
        event = self._event(row)
        bound = {
            "tenant": row.tenant,
            "event_id": row.event_id,
            "type": row.type,
            "conversation": row.conversation_id,
        }
        try:
            with self._isolated():
                decisions = lifecycle.handle(self.view, to_command(event), moment)
        except _Bug as bug:
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

    def _fault(self, cause: str) -> None:
        if cause in self.rt.settings.fault_kill_on:
            os.kill(os.getpid(), signal.SIGKILL)  # injected fault: a worker dying mid-batch

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
        while not self.paused and (timers := self.view.due_timers(upto)):
            armed = [t for t in timers if t.state == TimerState.ARMED]
            clean = (
                armed
                if not self.counting
                else list(takewhile(lambda t: not attempts.tries(t), armed))
            )
            if self.tries is not None:
                counted = set(self.tries.timers)  # a batch cut short counted its rest already
                self.tries.count_timers([t.timer_id for t in clean if t.timer_id not in counted])
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
        self.paused = True  # the suspect goes alone, and ends its transaction
        if self.progressed or self.fired:
            return  # commit what is done first
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
            assert self.tries is not None
            self.tries.count_timers([timer.timer_id])
            self.careful = True
            self._fire(timer)

    def _fire(self, timer: Timer) -> None:
        if timer.state != TimerState.ARMED:
            # Cancelled by a timer fired before it from the same list: as if the list had been
            # read after that one fired (batches must not decide what their size is).
            return
        self._fault(f"timer:{timer.timer_id}")
        self.fired += 1
        settings = self.view.settings()
        moment = timing.timer_time(timer.due, settings.effective_at)
        try:
            with self._isolated():
                decisions = lifecycle.fire(self.view, timer, moment)
        except _Bug:
            timer.state = TimerState.FAILED
            log.error("timer_failed", timer=timer.timer_id, conversation=timer.conversation_id)
            return
        timer.state = TimerState.FIRED
        settings.effective_at = moment
        self.writer.add(self.view.tenant, f"timer:{timer.timer_id}", moment, decisions)

    @contextmanager
    def _isolated(self) -> Iterator[None]:
        """In careful mode, run in a savepoint and turn a bug into ``_Bug`` (rolled back)."""
        if not self.careful:
            yield
            return
        try:
            with self.work.savepoint():
                yield
        except (Rejected, DBAPIError):
            raise
        except Exception as error:
            log.error("event_or_timer_failed", error=repr(error), exc_info=True)
            self.view.forget()
            raise _Bug from error


class _Bug(Exception):
    """An unexpected exception while applying one event or timer (careful mode only)."""
