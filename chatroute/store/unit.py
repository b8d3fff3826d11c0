"""The store's units of work: every transaction the engine's steps open is opened here.

- ``intake``: one batch of messages recorded (inbox rows, new tenants, rejections' decisions);
- ``tenant_work``: one applying transaction of a tenant, under its lock: its view, its
  unapplied inbox rows, savepoints for careful mode, and at the end the rows' marks and the
  decisions (the outbox), committed together;
- ``decisions_alone``: decisions that record no event (a message set aside at intake);
- ``looking``: a read-only transaction in which the domain may change a tenant's view in
  memory to see what it would decide (``chatroute route``); the database refuses any write.

``SqlUnits`` offers them to the engine's steps (``Units``); ``store.memory`` offers the same
units on state kept in memory, for ``chatroute replay``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Engine, Select, select
from sqlalchemy.orm import Session, sessionmaker

from chatroute.domain.model import TenantSettings, Timer
from chatroute.domain.ports import TenantView
from chatroute.store import attempts, inbox, outbox, publishers, tables, tenants
from chatroute.store.inbox import InboxRow, StoredBody
from chatroute.store.publishers import Publishers
from chatroute.store.view import NOW, SqlTenantView

Rows = list[dict[str, Any]]
Take = Callable[[dict[tuple[str, str], StoredBody]], tuple[Rows, Rows]]


class WorkView(TenantView, Protocol):
    """The tenant's view as an applying transaction uses it, beyond the domain's port."""

    # Timers armed since the caller last emptied it: firing a batch of due timers must
    # notice one armed by a firing that falls due before the rest of the batch.
    lately_armed: list[Timer]

    def prefetch(self, conversation_ids: Collection[str]) -> None:
        """A hint: these conversations are about to be looked at."""
        ...

    def forget(self) -> None:
        """Drop what the view cached, after a rollback to a savepoint."""
        ...


class Work(Protocol):
    """One applying transaction of a tenant (``TenantWork`` on the database)."""

    view: WorkView
    keepable: bool

    def tries(self) -> attempts.Tries | None:
        """This transaction's crash accounting; None where tries are not counted."""
        ...

    def unapplied(self, limit: int, after: int) -> list[InboxRow]: ...
    def savepoint(self) -> AbstractContextManager[None]: ...
    def finish(self, outcome: Outcome) -> None: ...


@dataclass(frozen=True)
class Outcome:
    """What an applying transaction did: the rows it applied and rejected (``moved``: their
    effective times that are not their own), the rows that only waited (their tries are
    forgiven), and the decisions, made at ``now``."""

    applied: Sequence[int]
    rejected: Sequence[tuple[int, str]]
    moved: Mapping[int, datetime]
    forgiven: Sequence[int]
    decisions: Rows
    now: datetime


class Units(Protocol):
    """The units of work the engine's steps (``chatroute.intake``, ``chatroute.apply``) run in."""

    def intake(self, keys: Collection[tuple[str, str]], take: Take) -> set[str]: ...
    def publishers(self, names: Collection[str]) -> Publishers | None:
        """Which tenants ``names`` may publish for (``store.publishers``); None: no
        publisher is mapped, every event is taken."""
        ...

    def decisions_alone(self, decisions: Rows) -> None: ...
    def tenant_work(self, tenant: str, now: datetime) -> AbstractContextManager[Work | None]: ...
    def has_newer(self, tenant: str, seq: int) -> bool: ...
    def settle_tries(self) -> None:
        """Take back the counts of earlier tries that ended nothing (``store.attempts``)."""
        ...


@dataclass(frozen=True)
class SqlUnits:
    """The units of work on the database: what every process of a deployment runs."""

    engine: Engine
    sessions: sessionmaker[Session]
    kept: KeptViews
    lone: Engine  # db.lone_engine: statements that are transactions of their own

    def intake(self, keys: Collection[tuple[str, str]], take: Take) -> set[str]:
        return intake(self.sessions, keys, take)

    def publishers(self, names: Collection[str]) -> Publishers | None:
        with self.lone.connect() as connection:
            return publishers.of(connection, names)

    def decisions_alone(self, decisions: Rows) -> None:
        decisions_alone(self.sessions, decisions)

    def tenant_work(self, tenant: str, now: datetime) -> AbstractContextManager[Work | None]:
        return tenant_work(self.sessions, tenant, now, self.kept, self.lone)

    def has_newer(self, tenant: str, seq: int) -> bool:
        with self.lone.begin() as connection:
            return inbox.has_newer(connection, tenant, seq)

    def settle_tries(self) -> None:
        attempts.settle(self.lone)


def intake(
    sessions: sessionmaker[Session], keys: Collection[tuple[str, str]], take: Take
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
    lone: Engine  # where tries are counted: outside this transaction
    # Whether the view may be kept for the tenant's next transaction in this process: not
    # after a rollback to a savepoint, nor when tries were counted and left for later.
    keepable: bool = True
    _stamped: bool = False

    @property
    def tenant(self) -> str:
        return self.view.tenant

    def tries(self) -> attempts.Tries | None:
        """Tries are counted (``store.attempts``) on PostgreSQL only."""
        return attempts.Tries(self.lone, self.tenant) if attempts.counted(self.session) else None

    def unapplied(self, limit: int, after: int) -> list[InboxRow]:
        return inbox.unapplied(self.session, self.tenant, limit, after)

    def stamp_version(self) -> None:
        """Tell other processes' kept views that this transaction applied the tenant: once,
        late, so that it rides in the UPDATE the tenant's row gets anyway (its effective
        time, counters) instead of a statement of its own."""
        if not self._stamped:
            self._stamped = True
            setattr(self.view.settings(), "version", _version(self.view) + 1)  # noqa: B010

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        try:
            with self.session.begin_nested():
                yield
        except BaseException:
            self.keepable = False
            raise

    def finish(self, outcome: Outcome) -> None:
        """Mark the rows this transaction applied or rejected, forgive rows that only waited,
        queue the decisions."""
        self.stamp_version()  # before the statements below flush the tenant's row
        now, moved = outcome.now, outcome.moved
        attempts.forgive(self.session, outcome.forgiven)
        inbox.mark_applied(self.session, list(outcome.applied), now, moved)
        for seq, reason in outcome.rejected:
            inbox.mark(self.session, seq, inbox.REJECTED, now, reason, moved.get(seq))
        outbox.add(self.session, outcome.decisions)


@dataclass
class KeptView:
    session: Session
    view: SqlTenantView  # at the tenant's version this process wrote last


class KeptViews:
    """Tenants' views (their sessions, identity maps and caches: rules, rankings, the
    conversations looked at) kept by this process from one applying transaction of a tenant
    to the next. The tenant's ``version``, read under its lock, fences them: a view is used
    again only when no other process applied the tenant since, else it is read afresh.

    Bounded: ``objects`` rows in all the views kept, ``tenants`` views (the least recently
    used go first). Thread-safe: a view is taken out while in use."""

    def __init__(self, objects: int = 100_000, tenants: int = 256) -> None:
        self.objects, self.tenants = objects, tenants
        self._kept: OrderedDict[str, tuple[KeptView, int]] = OrderedDict()
        self._held = 0  # rows in the views kept
        self._lock = threading.Lock()

    def take(self, tenant: str) -> KeptView | None:
        with self._lock:
            kept, size = self._kept.pop(tenant, (None, 0))
            self._held -= size
            return kept

    def keep(self, tenant: str, kept: KeptView) -> None:
        size = len(kept.session.identity_map)
        dropped = [kept] if size > self.objects else []
        with self._lock:
            if not dropped:
                self._kept[tenant] = (kept, size)
                self._held += size
            while self._kept and (self._held > self.objects or len(self._kept) > self.tenants):
                oldest, oldest_size = self._kept.popitem(last=False)[1]
                self._held -= oldest_size
                dropped.append(oldest)
        for view in dropped:
            view.session.close()


@contextmanager
def tenant_work(
    sessions: sessionmaker[Session],
    tenant: str,
    now: datetime,
    kept: KeptViews | None = None,
    lone: Engine | None = None,
) -> Iterator[TenantWork | None]:
    """A transaction that holds ``tenant``'s lock; None when the tenant is unknown or another
    worker holds the lock (it re-checks for new events after committing). Commits on exit.
    With ``kept``, the view of this process's previous transaction of the tenant is used
    again when the tenant is still at the version it wrote."""
    previous = kept.take(tenant) if kept is not None else None
    session = previous.session if previous is not None else sessions()
    work: TenantWork | None = None
    try:
        with session.begin():
            session.info[NOW] = now  # dates the changes the stats worker must count
            view = _locked_view(session, tenant, previous)
            work = None if view is None else TenantWork(session, view, lone or session.get_bind())
            yield work
            if work is not None:
                work.stamp_version()
    except BaseException:
        session.close()
        raise
    if kept is not None and work is not None and work.keepable:
        kept.keep(tenant, KeptView(session, work.view))
    else:
        session.close()


@contextmanager
def looking(sessions: sessionmaker[Session], tenant: str) -> Iterator[SqlTenantView | None]:
    """A read-only transaction over ``tenant``'s state (None: no such tenant). The view never
    flushes, the database is told to refuse writes, and it all rolls back: the tenant's lock
    is not taken, and workers go on meanwhile."""
    with sessions() as session, session.no_autoflush:
        connection = session.connection()
        sqlite = connection.dialect.name == "sqlite"
        connection.exec_driver_sql("PRAGMA query_only = ON" if sqlite else READ_ONLY)
        try:
            settings = session.get(TenantSettings, tenant)
            yield None if settings is None else SqlTenantView(session, settings, writes=False)
        finally:
            if sqlite:  # a setting of the pooled connection, not of the transaction
                connection.exec_driver_sql("PRAGMA query_only = OFF")
            session.rollback()


READ_ONLY = "SET TRANSACTION READ ONLY"


def _locked_view(session: Session, tenant: str, previous: KeptView | None) -> SqlTenantView | None:
    """Lock the tenant's row; its view (``previous`` when the tenant is at the version it
    wrote), or None when the tenant is unknown or another worker holds its lock."""
    if previous is None:
        settings = session.scalars(_locking(session, select(TenantSettings), tenant)).first()
        return None if settings is None else SqlTenantView(session, settings)
    query = _locking(session, select(tables.tenants.c.version), tenant)
    version = session.scalar(query)
    if version is None:
        return None
    if version == _version(previous.view):
        previous.view.next_transaction()
        return previous.view
    session.expire_all()  # another process applied the tenant since: all it holds may be stale
    settings = session.get(TenantSettings, tenant)
    assert settings is not None  # its row is locked
    return SqlTenantView(session, settings)


def _locking(session: Session, query: Select[Any], tenant: str) -> Select[Any]:
    query = query.where(tables.tenants.c.tenant == tenant)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return query


def _version(view: SqlTenantView) -> int:
    """The tenant's version as the view has it (a column of the store, not of the domain)."""
    return int(getattr(view.settings(), "version", None) or 0)
