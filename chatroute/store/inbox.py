"""The inbox: every accepted event, once per (tenant, id), in arrival order."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, Table, bindparam, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from chatroute.store import tables

NEW = "new"
APPLIED = "applied"
REJECTED = "rejected"


@dataclass(frozen=True)
class InboxRow:
    seq: int
    tenant: str
    event_id: str
    type: str
    conversation_id: str | None
    event_time: datetime
    received_at: datetime
    body: str
    attempts: int = 0  # tries that never finished (see ``store.attempts``)


def insert_ignoring_duplicates(
    connection: Connection, table: Table, rows: Sequence[Mapping[str, Any]]
) -> int:
    """Insert ``rows``, skipping those whose unique keys exist; returns how many went in."""
    if not rows:
        return 0
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    result = connection.execute(dialect.insert(table).on_conflict_do_nothing(), list(rows))
    return max(result.rowcount, 0)


def record(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert inbox rows in the given order (their ``seq`` is the arrival order)."""
    # Rows differ in their optional columns; insert them in one shape.
    shaped = [{**_OPTIONAL, **row} for row in rows]
    insert_ignoring_duplicates(session.connection(), tables.inbox, shaped)


_OPTIONAL: dict[str, Any] = {
    "reason": None,
    "applied_at": None,
    "body_size": None,
    "body_sha256": None,
}


class StoredBody(NamedTuple):
    text: str  # the body, or its head when it was cut (store.kept)
    sha256: str | None  # of the whole body when it was cut, else None


def bodies(session: Session, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], StoredBody]:
    """The stored body of each of ``keys`` (tenant, event id) the inbox holds already."""
    _plan_for_these_ids(session)
    c = tables.inbox.c
    by_tenant: dict[str, list[str]] = {}
    for tenant, event_id in keys:
        by_tenant.setdefault(tenant, []).append(event_id)
    found: dict[tuple[str, str], StoredBody] = {}
    for tenant, ids in by_tenant.items():
        query = select(c.event_id, c.body, c.body_sha256).where(
            c.tenant == tenant, c.event_id.in_(ids)
        )
        found.update(
            ((tenant, row.event_id), StoredBody(row.body, row.body_sha256))
            for row in session.execute(query)
        )
    return found


def _plan_for_these_ids(session: Session) -> None:
    """Have PostgreSQL plan the rest of this transaction for its parameters' values.

    psycopg prepares a statement once it ran five times, and PostgreSQL may then keep a
    generic plan made while the inbox was small, until the table is analyzed again: one that
    reads every index entry of the tenant and filters the ids. The intake then costs as much
    as the busiest tenant's history (50 ms a batch once it has 30,000 events), and every
    tenant waits behind it in ``chat.gateway``.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))


def unapplied(session: Session, tenant: str, limit: int, after: int = 0) -> list[InboxRow]:
    """``tenant``'s oldest unapplied rows that arrived after ``after``, in arrival order."""
    c = tables.inbox.c
    query = (
        select(
            c.seq,
            c.tenant,
            c.event_id,
            c.type,
            c.conversation_id,
            c.event_time,
            c.received_at,
            c.body,
            c.attempts,
        )
        .where(c.state == NEW, c.tenant == tenant, c.seq > after)
        .order_by(c.seq)
        .limit(limit)
    )
    return [InboxRow(*row) for row in session.execute(query)]


def has_newer(connection: Connection, tenant: str, seq: int) -> bool:
    """Whether ``tenant`` has an unapplied event that arrived after ``seq``."""
    return connection.execute(_NEWER, {"tenant": tenant, "seq": seq}).first() is not None


_NEWER = (
    select(tables.inbox.c.seq)
    .where(
        tables.inbox.c.state == NEW,
        tables.inbox.c.tenant == bindparam("tenant"),
        tables.inbox.c.seq > bindparam("seq"),
    )
    .limit(1)
)


def mark(
    session: Session,
    seq: int,
    state: str,
    at: datetime,
    reason: str | None = None,
    effective_at: datetime | None = None,
) -> None:
    """``effective_at``: kept when it differs from the event's own time (``chatroute history``)."""
    c = tables.inbox.c
    values: dict[str, Any] = {"state": state, "reason": reason, "applied_at": at}
    if effective_at is not None:
        values["effective_at"] = effective_at
    session.execute(update(tables.inbox).where(c.seq == seq).values(**values))


def mark_applied(
    session: Session, seqs: list[int], at: datetime, moved: Mapping[int, datetime]
) -> None:
    """Mark ``seqs`` applied, and keep the effective times of those ``moved`` to another time
    than their own (for ``chatroute history``). Two statements whatever the values: literal
    times in one statement made a new statement, compiled again, for every batch."""
    if not seqs:
        return
    c = tables.inbox.c
    values = {"state": APPLIED, "applied_at": at}
    session.execute(update(tables.inbox).where(c.seq.in_(seqs)).values(**values))
    kept = [{"moved_seq": seq, "moved_at": moved[seq]} for seq in seqs if seq in moved]
    if kept:
        times = update(tables.inbox).where(c.seq == bindparam("moved_seq"))
        session.connection().execute(times.values(effective_at=bindparam("moved_at")), kept)


def tenants_waiting(
    connection: Connection | Session, older_than: datetime | None = None
) -> list[str]:
    """Tenants with an event still unapplied (received before ``older_than``, when given)."""
    c = tables.inbox.c
    query = select(c.tenant).where(c.state == NEW).distinct()
    if older_than is not None:
        query = query.where(c.received_at <= older_than)
    return list(connection.scalars(query))


def oldest_unapplied(connection: Connection | Session) -> datetime | None:
    """When the oldest event still unapplied was received (None: there is none)."""
    c = tables.inbox.c
    return connection.scalar(select(func.min(c.received_at)).where(c.state == NEW))
