"""Taking events in: each message validated once and recorded in the inbox, accepted or
rejected, in one transaction with the rejections' decisions (the gateway's step; ``chatroute
replay`` takes its lines the same way)."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import InterfaceError, OperationalError

from chatroute import logs
from chatroute.bootstrap import Runtime
from chatroute.decisions import UNKNOWN_TENANT, DecisionWriter
from chatroute.errors import InvalidEvent
from chatroute.store import inbox, outbox, unit
from chatroute.store.kept import KeptBody, keep
from schemas.events import Event, best_effort_identity, canonical_json, parse_event

log = logs.get("chatroute.intake")

ACCEPTED_CONTENT_TYPES = {"application/cloudevents+json", "application/json"}
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
    verdicts = _publishers_checked(rt, [_verdict(message, now) for message in messages])

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
        reason, origin = verdict.reason, verdict.origin
        writer.reject(*verdict.identity, verdict.body, reason, now, verdict.cause, origin)
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
    # False: refused before the tenant's id was taken (see ``_refused_for_publisher``).
    recorded: bool = True
    cause: str | None = None  # its rejection's, when not the event's id

    @property
    def key(self) -> tuple[str, str] | None:
        tenant, event_id, _ = self.identity
        if not self.recorded or tenant == UNKNOWN_TENANT or event_id is None:
            return None
        return tenant, event_id

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


def _publishers_checked(rt: Runtime, verdicts: list[_Verdict]) -> list[_Verdict]:
    """``verdicts``, each message that came through the broker naming a tenant refused
    unless its publisher (``store.publishers``) may publish for that tenant, valid or not: a
    body refused for its content would take its id. No publisher mapped: all taken."""
    checked = [v.origin is not None and v.identity[0] != UNKNOWN_TENANT for v in verdicts]
    if not any(checked):
        return verdicts
    names = {name for v in verdicts if (name := _publisher(v)) is not None}
    mapping = rt.units.publishers(names)
    if mapping is None:
        return verdicts
    return [
        _refused_for_publisher(v) if check and not mapping.may(_publisher(v), v.identity[0]) else v
        for v, check in zip(verdicts, checked, strict=True)
    ]


def _publisher(verdict: _Verdict) -> str | None:
    return verdict.origin.user_id if verdict.origin is not None else None


def _refused_for_publisher(verdict: _Verdict) -> _Verdict:
    """A message its publisher may not send. It is not recorded under its (tenant, id),
    which stay free for the tenant's own event, and its rejection is known by the message's
    publisher and bytes, so no decision of that event can share its id."""
    tenant, publisher = verdict.identity[0], _publisher(verdict)
    if publisher is None:
        reason = (
            "no publisher: the message has no user_id property, and this deployment maps "
            "publishers to the tenants they may publish for"
        )
    else:
        reason = f"publisher {publisher!r} may not publish events for tenant {tenant!r}"
    digest = hashlib.sha256(f"{publisher}\n".encode() + verdict.body).hexdigest()
    cause = f"publisher:{digest}"
    return dataclasses.replace(verdict, reason=reason, recorded=False, cause=cause)


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
