"""``chatroute replay``: the engine's own intake, apply and stats steps, in this process, on a
virtual clock. No broker: a nudge is a call, made in the order the routing queue would deliver
it, so the decisions are the pipeline's (``tests/e2e/test_pipeline.py`` holds it to that).
No database round trip per step either: the steps run on the units of work of
``store.memory``, and the run is written to the database in large batches."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import IO

from chatroute import apply, bootstrap, intake
from chatroute.amqp import DECISIONS_EXCHANGE
from chatroute.bootstrap import Recast, Runtime
from chatroute.clock import VirtualClock
from chatroute.errors import InvalidEvent
from chatroute.settings import Settings
from chatroute.store.memory import MemoryUnits
from chatroute.store.outbox import OutgoingMessage
from schemas.events import Event, parse_event


@dataclass
class Summary:
    events: int = 0


def replay(
    settings: Settings,
    lines: Iterable[bytes | Stamped],
    out: IO[str],
    until: datetime | None = None,
    progress: IO[str] | None = None,
    recast: Recast | None = None,
) -> Summary:
    """Apply each line in order, firing timers on the virtual clock; decisions go to ``out``.

    A line is received at its event's ``time``, unless it comes stamped with the moment it
    was received (a pipeline's inbox replayed as the pipeline took it in). ``recast``: see
    ``bootstrap.Runtime`` (``chatroute whatif``'s change run)."""
    settings = settings.with_(amqp_url=None, redis_url=None)  # in-process: nothing shared
    clock = VirtualClock()
    rt = bootstrap.build(settings, clock, migrate=True, orm=False)
    try:
        units = MemoryUnits(rt.engine)
        run_rt = replace(rt, units=units, recast=recast)
        replayer = _Replayer(run_rt, units, clock, _StdoutSink(out))
        return _replay(replayer, lines, until, progress)
    finally:
        rt.engine.dispose()


def _replay(
    replayer: _Replayer,
    lines: Iterable[bytes | Stamped],
    until: datetime | None,
    progress: IO[str] | None,
) -> Summary:
    summary = Summary()
    for line in lines:
        body, received = (line, None) if isinstance(line, bytes) else line
        body = body.rstrip(b"\r\n")
        if not body.strip():
            continue
        summary.events += 1
        replayer.line(body, received)
        if progress is not None and summary.events % 5000 == 0:
            progress.write(f"\rreplay: {summary.events} events")
    replayer.finish(until)
    if progress is not None:
        progress.write(f"\rreplay: {summary.events} events, done\n")
    return summary


Stamped = tuple[bytes, datetime]  # a line and when it was received


def read_stamped(lines: Iterable[bytes]) -> Iterator[bytes | Stamped]:
    """Lines of ``chatroute replay --stamped``: ``{"body": "<the message as received>",
    "received_at": "<RFC 3339>" or null}`` each, as a pipeline received them (its inbox)."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            stamp = json.loads(line)
            body = stamp["body"].encode()
            received = stamp.get("received_at")
            yield body if received is None else (body, _aware(received))
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise InvalidStamp(f"line {number}: not a stamped line ({error!r})") from error


class InvalidStamp(ValueError):
    """A ``--stamped`` line without a body and a reception time."""


def _aware(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{value!r} has no UTC offset")
    return moment


@dataclass
class _Run:
    """Consecutive lines of one tenant, in time order, applied in one batch.

    The batch decides what one line at a time would (held events apply right after their
    conversation's start), provided nothing outside the run falls due within it: the run
    stops before another tenant's timer, before any waiting event's retry window ends, and
    within one retry window of its first line.
    """

    tenant: str
    first: datetime
    ends_before: datetime
    messages: list[intake.Incoming] = field(default_factory=list)

    def takes(self, event: Event, received: datetime, limit: int) -> bool:
        last = self.messages[-1].received_at if self.messages else self.first
        return (
            event.tenant == self.tenant
            and last is not None
            and last <= received < self.ends_before
            and len(self.messages) < limit
        )


class _Replayer:
    def __init__(self, rt: Runtime, units: MemoryUnits, clock: VirtualClock, sink: _StdoutSink):
        self.rt, self.units, self.clock, self.sink = rt, units, clock, sink
        self.swept = clock.now()
        self.run: _Run | None = None
        self.window = timedelta(seconds=rt.settings.unknown_retry_s)
        self.nudged: dict[str, bool] = {}  # tenants to apply next, in order: final or not
        self.parsed: dict[tuple[str, str], intake.Incoming] = {}  # lines of this settling

    def line(self, body: bytes, received: datetime | None = None) -> None:
        event = _valid(body)
        if event is not None and received is None:
            received = event.time
        if self.run is not None and (
            event is None or received is None or not self.run.takes(event, received, self._limit)
        ):
            self._flush()
        if event is None or received is None or received < self.clock.now():
            self._single(body, received)  # not an event, or out of order: exactly as it comes
            return
        if self.run is None:
            self.run = self._start(event.tenant, received)
        if self.run.takes(event, received, self._limit):
            message = intake.Incoming(body, None, received, event=event)
            self.parsed.setdefault((event.tenant, event.id), message)
            self.run.messages.append(message)
        else:
            self.run = None
            self._single(body, received)

    @property
    def _limit(self) -> int:
        return self.rt.settings.batch_size

    def _start(self, tenant: str, received: datetime) -> _Run:
        ends = min(d for d in (received + self.window, *self._due_elsewhere(tenant)) if d)
        return _Run(tenant, received, ends)

    def _due_elsewhere(self, tenant: str) -> tuple[datetime | None, datetime | None]:
        """The next timer of another tenant, and when the oldest waiting event stops waiting."""
        timer, waiting = self.units.next_due_elsewhere(tenant)
        return timer, None if waiting is None else waiting + self.window

    def _flush(self) -> None:
        run, self.run = self.run, None
        if run is None or not run.messages:
            return
        last = run.messages[-1].received_at
        assert last is not None
        self._apply(last, run.messages)

    def _single(self, body: bytes, received: datetime | None) -> None:
        """One line alone: not an event, or received before the clock's time (the clock does
        not go back, the line keeps its own reception time)."""
        self._apply(received or _event_time(body), [intake.Incoming(body, None, received)])

    def _apply(self, moment: datetime | None, messages: list[intake.Incoming]) -> None:
        if moment is not None:
            self.clock.advance_to(moment)
        for tenant in intake.ingest(self.rt, messages):
            self._nudge(tenant)
        if self.clock.now() > self.swept:
            # Only a moving clock makes timers due or waiting events expire.
            self.swept = self.clock.now()
            self._sweep()
        self._settle()

    def _sweep(self) -> None:
        """As the sweeper: nudge each tenant with work due now, in name order."""
        for tenant in sorted(self.units.due_tenants(self.clock.now())):
            self._nudge(tenant)

    def _nudge(self, tenant: str, final: bool = False) -> None:
        # Nudges of one settling coalesce: a tenant's apply reads all it has.
        self.nudged[tenant] = self.nudged.get(tenant, False) or final

    def _settle(self) -> None:
        """Apply the nudged tenants in the order they were nudged, then write the decisions."""
        while self.nudged:
            tenant = next(iter(self.nudged))
            final = self.nudged.pop(tenant)
            while apply.apply_tenant(self.rt, tenant, final=final, parsed=self.parsed):
                pass
        self.parsed.clear()
        self.units.relay(self.sink, self.rt.clock.now())

    def finish(self, until: datetime | None) -> None:
        self._flush()
        if until is not None:
            self.clock.advance_to(until)
        self._sweep()
        self._settle()
        for tenant in self.units.tenants_with_unapplied():
            self._nudge(tenant, final=True)
        self._settle()
        self.units.write()  # with the figures the stats worker would fold next


def _valid(body: bytes) -> Event | None:
    try:
        return parse_event(body)
    except InvalidEvent:
        return None


def _event_time(body: bytes) -> datetime | None:
    try:
        raw = json.loads(body)["time"]
        moment = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except (ValueError, KeyError, TypeError):
        return None
    return moment if moment.tzinfo is not None else None


class _StdoutSink:
    """Prints decisions as JSON lines; a rejected event's kept copy is not a decision."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def __call__(self, messages: list[OutgoingMessage]) -> None:
        for message in messages:
            if message.exchange != DECISIONS_EXCHANGE:
                continue
            self.out.write(message.body.decode() + "\n")
        self.out.flush()
