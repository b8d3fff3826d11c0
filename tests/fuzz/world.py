"""A checked world for the hostile-input fuzz (#6).

The gateway's intake and the workers run on a database holding a victim tenant, which must
never change, and on a twin database without it, which must decide exactly the same for every
other tenant (one tenant's state is never read for another's). One virtual clock drives both;
after each batch it passes the retry window of unknown conversations, so every accepted event
ends applied or rejected. Each message is checked against the contract's account of it
(``expect``) and counted in a ``Census``.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck
from sqlalchemy import func, select

from chatroute import apply, bootstrap, intake
from chatroute.clock import VirtualClock
from chatroute.errors import InvalidEvent, reason_kind
from chatroute.settings import Settings
from chatroute.store import inbox, tables
from chatroute.store.kept import KEPT_BYTES
from schemas.decisions import decision_id
from schemas.events import best_effort_identity, canonical_json, parse_event
from tests.builders import START
from tests.conftest import fresh_pg_database
from tests.fuzz.messages import VICTIM, VICTIM_EVENTS, Message

RETRY_S = 30.0
HANG_S = 10.0  # a batch that takes longer counts as a hang
# Batches are slow to draw and bodies large, by design.
RELAXED = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]
STATE = tables.ROUTING_STATE
Key = tuple[str, str]


# ---------------------------------------------------------------- the contract's account


@dataclass(frozen=True)
class Expected:
    """What becomes of one message at intake, by the contract and docs/semantics.md."""

    outcome: str  # accepted | rejected | conflict | repeat
    key: Key | None
    reason: str | None = None  # of a rejection at intake
    decision: str | None = None  # the id of its event.rejected
    event_id: str | None = None  # the id its event.rejected names


def intake_reason(message: Message) -> str | None:
    content_type = message.content_type
    base = (content_type or "").split(";")[0].strip().lower()
    if content_type is not None and base not in intake.ACCEPTED_CONTENT_TYPES:
        return (
            f"content type {content_type!r} is not application/cloudevents+json or application/json"
        )
    try:
        parse_event(message.body)
    except InvalidEvent as error:
        return error.reason
    return None


def identity(body: bytes) -> tuple[str, str | None, Key | None]:
    """The tenant a rejection goes out under, the id it names, and the (tenant, id) the
    inbox knows the message by."""
    try:
        event = parse_event(body)
        return event.tenant, event.id, (event.tenant, event.id)
    except InvalidEvent:
        tenant, event_id, _ = best_effort_identity(body)
    if event_id is not None and not 0 < len(event_id) <= intake.MAX_ID:
        event_id = None
    if tenant is None or not intake.TENANT.fullmatch(tenant):
        return intake.UNKNOWN_TENANT, event_id, None
    return tenant, event_id, None if event_id is None else (tenant, event_id)


def expect(message: Message, known: dict[Key, inbox.StoredBody]) -> Expected:
    """``message``'s outcome; ``known`` maps the keys recorded so far to their bodies."""
    reason = intake_reason(message)
    tenant, event_id, key = identity(message.body)
    if key is not None and key in known:
        text = message.body.decode()
        if _same_event(known[key], message.body):
            return Expected("repeat", key)
        digest = hashlib.sha256(canonical_json(text).encode()).hexdigest()
        reason = reason or f"id {key[1]!r} was already used by a different event"
        return Expected("conflict", key, reason, decision_id(tenant, "body:" + digest, 0), key[1])
    if key is not None:
        cut = len(message.body) > KEPT_BYTES
        known[key] = inbox.StoredBody(message.body.decode(), sha256(message.body) if cut else None)
    if reason is None:
        return Expected("accepted", key)
    cause = key[1] if key else "body:" + sha256(message.body)
    return Expected("rejected", key, reason, decision_id(tenant, cause, 0), event_id)


def _same_event(stored: inbox.StoredBody, body: bytes) -> bool:
    """The same JSON value, or, when only the first 64 KiB of the stored one were kept, the
    same bytes."""
    if stored.sha256 is not None:
        return stored.sha256 == sha256(body)
    return canonical_json(stored.text) == canonical_json(body.decode())


def sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def check_copy(kept: bytes, headers: dict[str, Any], body: bytes) -> None:
    """The copy of a rejected ``body``: it whole, or its first 64 KiB (whole characters),
    with the whole body's size and digest in its headers."""
    if len(body) <= KEPT_BYTES:
        assert kept == body and headers["x-body-truncated"] is False
    else:
        assert body.startswith(kept) and KEPT_BYTES - 4 < len(kept) <= KEPT_BYTES
        assert headers["x-body-truncated"] is True
    assert (headers["x-body-size"], headers["x-body-sha256"]) == (len(body), sha256(body))


def domain_reasons(body: bytes) -> set[str]:
    """The reasons the domain may give an event: each names ids the event names."""
    data = parse_event(body).data.model_dump()
    ids = {value for value in data.values() if isinstance(value, str)}
    reasons = {"cannot transfer to oneself"}
    for one in ids:
        reasons |= {f"unknown {kind} {one!r}" for kind in ("conversation", "respondent", "group")}
        reasons |= {f"unknown rule {one!r}", f"conversation {one!r} is closed"}
        reasons.add(f"conversation {one!r} already exists")
        reasons |= {f"respondent {one!r} does not hold conversation {c!r}" for c in ids}
    return reasons


# ---------------------------------------------------------------- the census


@dataclass
class Census:
    """Inputs tried and their outcomes, for ``python -m tests.fuzz``."""

    inputs: int = 0
    batches: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    slowest_s: float = 0.0
    failures: list[str] = field(default_factory=list)

    def report(self) -> str:
        lines = [f"inputs tried: {self.inputs} in {self.batches} batches"]
        lines.append("generated as: " + ", ".join(f"{k} {n}" for k, n in self.kinds.most_common()))
        lines += [f"  {n:7d}  {outcome}" for outcome, n in sorted(self.outcomes.items())]
        lines.append(f"slowest batch: {self.slowest_s:.2f} s (a hang is {HANG_S:.0f} s)")
        lines.append(f"failures (crash, hang or a broken check): {len(self.failures)}")
        return "\n".join(lines + [f"  {failure}" for failure in self.failures])


# ---------------------------------------------------------------- the world


def take(rt: bootstrap.Runtime, messages: Iterable[Message]) -> set[str]:
    incoming = [intake.Incoming(m.body, m.content_type) for m in messages]
    return intake.ingest(rt, incoming) if incoming else set()


def drain(rt: bootstrap.Runtime, tenants: Iterable[str]) -> None:
    """Apply each tenant's events as the workers would, until none is left to do."""
    for tenant in sorted(tenants):
        for _ in range(10_000):
            if not apply.apply_tenant(rt, tenant):
                break
        else:
            raise AssertionError(f"apply_tenant({tenant!r}) never ran out of work")


def waiting(rt: bootstrap.Runtime) -> set[str]:
    c = tables.inbox.c
    with rt.engine.connect() as connection:
        return set(connection.scalars(select(c.tenant).where(c.state == inbox.NEW).distinct()))


@contextmanager
def opened(db: str) -> Iterator[World]:
    """A world on two fresh SQLite files or PostgreSQL databases, dropped afterwards."""
    if db == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            built = World(f"sqlite:///{folder}/main.db", f"sqlite:///{folder}/twin.db")
            yield built
            built.close()
        return
    with fresh_pg_database() as url, fresh_pg_database() as twin_url:
        built = World(url, twin_url)
        yield built
        built.close()


class World:
    """The intake and the workers on ``url`` (with the victim) and ``twin_url`` (without)."""

    def __init__(self, url: str, twin_url: str) -> None:
        self.clock = VirtualClock(START)
        self.rt = self._runtime(url)
        self.twin = self._runtime(twin_url)
        self.census = Census()
        self.careful_tries = 0
        self._unspy = _spy_on_careful_tries(self)
        try:
            victim = [Message(json.dumps(e).encode()) for e in VICTIM_EVENTS]
            drain(self.rt, take(self.rt, victim))
            self.victim = snapshot(self.rt, VICTIM, victim=True)
        except BaseException:
            self.close()  # the spy must not outlive a world that failed to start
            raise

    def _runtime(self, url: str) -> bootstrap.Runtime:
        settings = Settings(database_url=url, unknown_retry_s=RETRY_S)
        return bootstrap.build(settings, self.clock, migrate=True)

    def close(self) -> None:
        self._unspy()
        self.rt.engine.dispose()
        self.twin.engine.dispose()

    def run(self, batch: Sequence[Message]) -> None:
        """Take ``batch`` in on both databases, let the workers and the retry window pass,
        then check every message's outcome, the victim and the twin."""
        expected = self._expect(batch)
        marks = (last_seq(self.rt), last_seq(self.twin))
        started = time.monotonic()
        self._take(batch)
        elapsed = time.monotonic() - started
        self.census.batches += 1
        self.census.inputs += len(batch)
        self.census.slowest_s = max(self.census.slowest_s, elapsed)
        self.census.kinds.update(m.kind for m in batch)
        assert elapsed < HANG_S, f"a batch of {len(batch)} took {elapsed:.1f} s"
        assert not waiting(self.rt), "events left unapplied"
        assert not self.careful_tries, "a batch hit a bug and was applied again event by event"
        for message, outcome in zip(batch, expected, strict=True):
            self.census.outcomes[self._verify(message, outcome)] += 1
        self._nothing_else(batch, expected, marks[0])
        assert snapshot(self.rt, VICTIM, victim=True) == self.victim, "the victim changed"
        self._same_as_twin(batch, marks)

    def _expect(self, batch: Sequence[Message]) -> list[Expected]:
        self.careful_tries = 0
        keys = [key for m in batch if (key := identity(m.body)[2]) is not None]
        with self.rt.sessions.begin() as session:
            known = inbox.bodies(session, keys)
        expected = [expect(message, known) for message in batch]
        decided = existing_decisions(self.rt, [e.decision for e in expected if e.decision])
        return unless_decided(expected, decided)

    def _take(self, batch: Sequence[Message]) -> None:
        mark = last_seq(self.rt)
        drain(self.rt, take(self.rt, batch))
        drain(self.twin, take(self.twin, [m for m in batch if identity(m.body)[0] != VICTIM]))
        early = [r for r in new_reasons(self.rt, mark) if r.startswith("unknown conversation")]
        assert not early, f"rejected before the retry window ended: {early}"
        self.clock.advance_to(self.clock.now() + timedelta(seconds=RETRY_S + 1))
        drain(self.rt, waiting(self.rt))
        drain(self.twin, waiting(self.twin))

    def _verify(self, message: Message, expected: Expected) -> str:
        if expected.outcome == "repeat" and expected.decision is None:
            return "repeat"
        if expected.outcome == "repeat":
            assert expected.decision in existing_decisions(self.rt, [expected.decision])
            return "repeat of a rejected body"
        if expected.outcome != "accepted":
            assert expected.reason is not None and expected.decision is not None
            did, reason = expected.decision, expected.reason
            check_rejection(self.rt, did, reason, expected.event_id, message.body)
            return f"{expected.outcome}: {reason_kind(expected.reason)}"
        assert expected.key is not None
        return self._verify_accepted(message, expected.key)

    def _verify_accepted(self, message: Message, key: Key) -> str:
        state, body, reason = inbox_row(self.rt, key)
        assert body == message.body.decode(), "the inbox holds another body"
        if state == inbox.APPLIED:
            return "applied"
        assert state == inbox.REJECTED and reason in domain_reasons(message.body), reason
        check_rejection(self.rt, decision_id(*key, 0), reason, key[1], message.body)
        return f"applied, then rejected: {reason_kind(reason)}"

    def _nothing_else(self, batch: Sequence[Message], expected: list[Expected], mark: int) -> None:
        """Every decision the batch added has a cause in it: repeats added none."""
        accepted = {e.key for e in expected if e.outcome == "accepted"}
        rejections = {e.decision for e in expected if e.decision and e.outcome != "repeat"}
        rejections |= {decision_id(*key, 0) for key in accepted if key}
        for did, tenant, kind, cause in new_decisions(self.rt, mark):
            if kind == "event.rejected":
                assert did in rejections, f"an unexplained rejection {did} ({cause})"
            else:
                assert (tenant, cause) in accepted or cause.startswith("timer:"), cause

    def _same_as_twin(self, batch: Sequence[Message], marks: tuple[int, int]) -> None:
        tenants = {identity(m.body)[0] for m in batch} - {VICTIM, intake.UNKNOWN_TENANT}
        for tenant in sorted(tenants):
            main = snapshot(self.rt, tenant), decisions_since(self.rt, tenant, marks[0])
            twin = snapshot(self.twin, tenant), decisions_since(self.twin, tenant, marks[1])
            assert main == twin, f"tenant {tenant!r} decided otherwise beside the victim"


def _spy_on_careful_tries(world: World) -> Callable[[], None]:
    """Count the batches applied again carefully: each means a bug raised on some event,
    which careful mode then hides (its outcome may be right, the traceback is logged)."""
    real = apply._apply_batch

    def spy(*args: Any, careful: bool, **kwargs: Any) -> apply.Tried:
        world.careful_tries += careful
        return real(*args, careful=careful, **kwargs)

    apply._apply_batch = spy  # type: ignore[assignment]

    def undo() -> None:
        apply._apply_batch = real  # type: ignore[assignment]

    return undo


def unless_decided(expected: list[Expected], decided: set[str]) -> list[Expected]:
    """A rejection decided before (``decided``: the same bytes without a usable id, or the
    same conflicting value) is a repeat; so is its second copy within the batch."""
    settled = []
    for one in expected:
        if one.decision is not None and one.decision in decided:
            one = Expected("repeat", one.key, None, one.decision)
        elif one.decision is not None:
            decided.add(one.decision)
        settled.append(one)
    return settled


# ---------------------------------------------------------------- reading the store


def last_seq(rt: bootstrap.Runtime) -> int:
    with rt.engine.connect() as connection:
        return int(connection.scalar(select(func.max(tables.outbox.c.seq))) or 0)


def existing_decisions(rt: bootstrap.Runtime, ids: list[str]) -> set[str]:
    o = tables.outbox.c
    with rt.engine.connect() as connection:
        return set(connection.scalars(select(o.decision_id).where(o.decision_id.in_(ids))))


def inbox_row(rt: bootstrap.Runtime, key: Key) -> tuple[str, str, str | None]:
    c = tables.inbox.c
    query = select(c.state, c.body, c.reason).where(c.tenant == key[0], c.event_id == key[1])
    with rt.engine.connect() as connection:
        row = connection.execute(query).one()
    return row.state, row.body, row.reason


def check_rejection(
    rt: bootstrap.Runtime, did: str, reason: str, event_id: str | None, body: bytes
) -> None:
    """The event.rejected decision ``did`` says ``reason``; the body is kept with it."""
    o = tables.outbox.c
    query = select(o.decision_id, o.body, o.headers).where(o.decision_id.in_([did, "copy:" + did]))
    with rt.engine.connect() as connection:
        rows = {row.decision_id: row for row in connection.execute(query)}
    assert did in rows and "copy:" + did in rows, f"rejection {did} missing ({reason})"
    data = json.loads(rows[did].body)["data"]
    assert (data["reason"], data["event_id"]) == (reason, event_id), data
    copy = rows["copy:" + did]
    assert copy.headers["x-reject-reason"] == reason
    check_copy(copy.body, copy.headers, body)


def new_decisions(rt: bootstrap.Runtime, mark: int) -> list[tuple[str, str, str, str]]:
    """(decision id, tenant, type, cause) of each decision after ``mark``."""
    o = tables.outbox.c
    query = select(o.decision_id, o.body).where(o.seq > mark, o.exchange != "")
    with rt.engine.connect() as connection:
        rows = connection.execute(query).all()
    decisions = [(row.decision_id, json.loads(row.body)) for row in rows]
    return [(did, d["tenant"], d["type"], d["causationid"]) for did, d in decisions]


def new_reasons(rt: bootstrap.Runtime, mark: int) -> list[str]:
    """The reasons of the rejections decided after ``mark``."""
    o = tables.outbox.c
    query = select(o.headers).where(o.seq > mark, o.exchange == "")
    with rt.engine.connect() as connection:
        return [headers["x-reject-reason"] for headers in connection.scalars(query)]


def decisions_since(rt: bootstrap.Runtime, tenant: str, mark: int) -> list[tuple[str, bytes]]:
    o = tables.outbox.c
    query = select(o.decision_id, o.body).where(o.tenant == tenant, o.seq > mark).order_by(o.seq)
    with rt.engine.connect() as connection:
        return [tuple(row) for row in connection.execute(query)]


def snapshot(rt: bootstrap.Runtime, tenant: str, *, victim: bool = False) -> dict[str, Any]:
    """``tenant``'s state; for the victim, also its inbox and every decision but
    rejections (a conflicting body under a victim's id is rejected, under the victim)."""
    with rt.engine.connect() as connection:
        state = {
            table.name: sorted(
                map(repr, connection.execute(select(table).where(table.c.tenant == tenant)))
            )
            for table in STATE
        }
        if victim:
            c, o = tables.inbox.c, tables.outbox.c
            inbox_rows = select(c.event_id, c.body, c.state, c.reason).where(c.tenant == tenant)
            state["inbox"] = sorted(map(repr, connection.execute(inbox_rows)))
            kept = select(o.decision_id, o.body).where(
                o.tenant == tenant, o.exchange != "", ~o.routing_key.like("%.event.rejected")
            )
            state["decisions"] = sorted(map(repr, connection.execute(kept)))
    return state
