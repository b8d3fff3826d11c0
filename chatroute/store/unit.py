"""The store's units of work: every transaction the engine's steps open is opened here.

- ``intake``: one batch of messages recorded (inbox rows, new tenants, rejections' decisions);
- ``tenant_work``: one applying transaction of a tenant, under its lock: its view, its
  unapplied inbox rows, savepoints for careful mode, and at the end the rows' marks and the
  decisions (the outbox), committed together;
- ``decisions_alone``: decisions that record no event (a message set aside at intake).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from chatroute.domain.model import TenantSettings
from chatroute.store import attempts, inbox, outbox, tenants
from chatroute.store.inbox import InboxRow, StoredBody
from chatroute.store.view import NOW, SqlTenantView

Rows = list[dict[str, Any]]


def intake(
    sessions: sessionmaker[Session],
    keys: Collection[tuple[str, str]],
    take: Callable[[dict[tuple[str, str], StoredBody]], tuple[Rows, Rows]],
) -> set[str]:
    """Record a batch in one transaction: ``take`` gets the stored bodies of ``keys`` already
    in the inbox and returns the inbox rows to add and the decisions to queue. Returns the
    tenants with new events."""
    with sessions.begin() as session:
        rows, decisions = take(inbox.bodies(session, keys))
        inbox.record(session, rows)
        accepted = {str(r["tenant"]) for r in rows if r["state"] == inbox.NEW}
        tenants.ensure(session, accepted)
        outbox.add(session, decisions)
    return accepted


def decisions_alone(sessions: sessionmaker[Session], decisions: Rows) -> None:
    with sessions.begin() as session:
        outbox.add(session, decisions)


@dataclass
class TenantWork:
    """One applying transaction of ``tenant``, which holds the tenant's lock."""

    session: Session
    view: SqlTenantView

    @property
    def tenant(self) -> str:
        return self.view.tenant

    @property
    def counts_tries(self) -> bool:
        """Whether tries are counted (``store.attempts``): PostgreSQL only."""
        return attempts.counted(self.session)

    def unapplied(self, limit: int, after: int) -> list[InboxRow]:
        return inbox.unapplied(self.session, self.tenant, limit, after)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        with self.session.begin_nested():
            yield

    def finish(
        self,
        applied: Sequence[int],
        rejected: Sequence[tuple[int, str]],
        moved: Mapping[int, datetime],
        forgiven: Sequence[int],
        decisions: Rows,
        now: datetime,
    ) -> None:
        """Mark the rows this transaction applied or rejected (``moved``: the effective times
        that are not the rows' own), forgive rows that only waited, queue the decisions."""
        attempts.forgive(self.session, forgiven)
        inbox.mark_applied(self.session, list(applied), now, moved)
        for seq, reason in rejected:
            inbox.mark(self.session, seq, inbox.REJECTED, now, reason, moved.get(seq))
        outbox.add(self.session, decisions)


@contextmanager
def tenant_work(
    sessions: sessionmaker[Session], tenant: str, now: datetime
) -> Iterator[TenantWork | None]:
    """A transaction that holds ``tenant``'s lock; None when the tenant is unknown or another
    worker holds the lock (it re-checks for new events after committing). Commits on exit."""
    with sessions.begin() as session:
        session.info[NOW] = now  # dates the changes the stats worker must count
        settings = _lock(session, tenant)
        yield None if settings is None else TenantWork(session, SqlTenantView(session, settings))


def _lock(session: Session, tenant: str) -> TenantSettings | None:
    query = select(TenantSettings).where(TenantSettings.tenant == tenant)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return session.scalars(query).first()


def has_newer(sessions: sessionmaker[Session], tenant: str, seq: int) -> bool:
    """Whether ``tenant`` has an unapplied event that arrived after ``seq`` (asked after the
    applying transaction committed: a nudge sent meanwhile found the lock held)."""
    with sessions.begin() as session:
        return inbox.has_newer(session, tenant, seq)
