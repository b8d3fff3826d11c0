"""The units of work on state kept in this process's memory, for ``chatroute replay``.

A replay has one writer: nothing else reads or changes its database while it runs. So the
tenants' state lives in ``InMemoryTenantView``s, the inbox and the outbox in lists, and the
engine's steps (``chatroute.intake``, ``chatroute.apply``) run on them exactly as on the
database. What a pipeline would have written goes to the database in large batches, in one
transaction that commits at the end (``write``): a replay's database holds a whole run or
none of it.

A database that holds events already (an earlier replay) is read first, and the replay goes
on from its state, as the pipeline would.

No ORM: the state is read and written with SQLAlchemy Core, so that a process which never
maps the domain's classes (``chatroute replay``) applies events on plain dataclasses, without
the ORM's instrumentation on every attribute the domain reads or sets.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import datetime
from itertools import islice
from typing import Any, TypeVar

from sqlalchemy import Engine, Table, delete, func, insert, select, text

from chatroute.domain.memory import InMemoryTenantView
from chatroute.domain.model import (
    Contact,
    Conversation,
    TenantSettings,
)
from chatroute.store import census, figures, inbox, outbox, tables
from chatroute.store.due import WAITING_AFTER
from chatroute.store.inbox import InboxRow, StoredBody
from chatroute.store.mapping import COLUMN_OF, TABLE_OF
from chatroute.store.outbox import OutgoingMessage
from chatroute.store.unit import Outcome, Rows, Take, Work
from chatroute.store.view import membership_rows, stamp_stats_change

WRITE_EVERY = 20_000  # inbox and outbox rows held before they are written
T = TypeVar("T")


@dataclass
class MemoryWork:
    """One applying transaction of a tenant on its view in memory (``unit.Work``)."""

    view: InMemoryTenantView
    units: MemoryUnits
    keepable: bool = True

    def tries(self) -> None:
        """Not counted: a try that ends this process ends the replay."""

    def unapplied(self, limit: int, after: int) -> list[InboxRow]:
        waiting = self.units.waiting.get(self.view.tenant, {})
        return list(islice((row for seq, row in waiting.items() if seq > after), limit))

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        self.view.begin()
        try:
            yield
        except BaseException:
            self.view.rollback()
            raise
        self.view.commit()

    def finish(self, outcome: Outcome) -> None:
        marks = [(seq, inbox.APPLIED, None) for seq in outcome.applied]
        marks += [(seq, inbox.REJECTED, reason) for seq, reason in outcome.rejected]
        for seq, state, reason in marks:
            moved = outcome.moved.get(seq)
            self.units.mark(self.view.tenant, seq, state, reason, outcome.now, moved)
        self.units.queue(outcome.decisions)


class MemoryUnits:
    """``unit.Units`` in memory, and what ``chatroute replay`` asks of the whole store:
    what is due across tenants, and the decisions to relay."""

    def __init__(self, engine: Engine) -> None:
        # One transaction for the whole run: its rows go in batches, it commits in ``write``.
        self.connection = engine.connect()
        self.connection.begin()
        self.views: dict[str, InMemoryTenantView] = {}
        self.known: dict[tuple[str, str], StoredBody] = {}  # every (tenant, event id) taken in
        self.waiting: dict[str, dict[int, InboxRow]] = {}  # unapplied rows by tenant, by seq
        self.rows: dict[int, dict[str, Any]] = {}  # inbox rows to write, by seq
        self.seq = 0  # the inbox's last seq
        self.unsent: list[dict[str, Any]] = []  # decisions to relay
        self.sent: list[dict[str, Any]] = []  # relayed, to write
        self.decision_ids: set[str] = set()
        self._stored_unsent: list[OutgoingMessage] = []  # an earlier run's, not relayed
        self._rewritten: list[int] = []  # seqs of stored rows written again
        self._marks: list[tuple[str, InboxRow]] = []  # rows marked in the open transaction
        self._dues = _Dues()
        self._load()

    # ------------------------------------------------------------ unit.Units
    def intake(self, keys: Collection[tuple[str, str]], take: Take) -> set[str]:
        rows, decisions = take(self.known)
        accepted: set[str] = set()
        for row in rows:
            self.seq += 1
            self.rows[self.seq] = {**_INBOX_DEFAULTS, **row, "seq": self.seq}
            if row["state"] == inbox.NEW:
                tenant = str(row["tenant"])
                accepted.add(tenant)
                self.waiting.setdefault(tenant, {})[self.seq] = _inbox_row(self.seq, row)
        for tenant in accepted - self.views.keys():
            self.views[tenant] = InMemoryTenantView(tenant)
        self.queue(decisions)
        return accepted

    def publishers(self, names: Collection[str]) -> None:
        """A replay takes lines of a file, published by nobody: no publisher to check."""

    def decisions_alone(self, decisions: Rows) -> None:
        self.queue(decisions)

    @contextmanager
    def tenant_work(self, tenant: str, now: datetime) -> Iterator[Work | None]:
        view = self.views.get(tenant)
        if view is None:
            yield None
            return
        view.next_transaction()
        view.begin()
        marked, queued = len(self._marks), len(self.unsent)
        try:
            yield MemoryWork(view, self)
        except BaseException:
            view.rollback()
            self._unmark(marked)
            del self.unsent[queued:]
            raise
        finally:
            self._dues.note(tenant, view.earliest_due())
        self._stamp(view, view.commit(), now)
        self._marks.clear()

    @staticmethod
    def _stamp(view: InMemoryTenantView, changed: list[object], now: datetime) -> None:
        """As a flush of the transaction would: each conversation changed, or one of its
        contacts, takes the tenant's next stats counter value (``view.stamp_stats_changes``)."""
        ids = [obj.conversation_id for obj in changed if isinstance(obj, Conversation | Contact)]
        for cid in dict.fromkeys(ids):
            stamp_stats_change(view.settings(), view.conversations[cid], now)

    def has_newer(self, tenant: str, seq: int) -> bool:
        return any(s > seq for s in self.waiting.get(tenant, {}))

    def settle_tries(self) -> None:
        """No try is counted: a try that ends this process ends the replay."""

    # ------------------------------------------------------------ rows and decisions
    def mark(
        self,
        tenant: str,
        seq: int,
        state: str,
        reason: str | None,
        at: datetime,
        effective_at: datetime | None,
    ) -> None:
        row = self.waiting[tenant].pop(seq)
        self._marks.append((tenant, row))
        written = self.rows[seq]
        written.update(state=state, reason=reason, applied_at=at)
        if effective_at is not None:
            written["effective_at"] = effective_at

    def _unmark(self, marked: int) -> None:
        for tenant, row in reversed(self._marks[marked:]):
            self.waiting[tenant][row.seq] = row
            self.rows[row.seq].update(state=inbox.NEW, reason=None, applied_at=None)
            self.rows[row.seq].pop("effective_at", None)
        del self._marks[marked:]
        for tenant, rows in self.waiting.items():
            self.waiting[tenant] = dict(sorted(rows.items()))

    def queue(self, decisions: Rows) -> None:
        """Queue decisions for the relay; one whose id was queued before is left out, as the
        outbox leaves it."""
        for decision in decisions:
            if decision["decision_id"] not in self.decision_ids:
                self.decision_ids.add(decision["decision_id"])
                self.unsent.append(decision)

    def relay(self, publish: Callable[[list[OutgoingMessage]], None], now: datetime) -> None:
        """Publish the decisions queued, in order, and keep them to write as sent at ``now``."""
        if self._stored_unsent:
            publish(self._stored_unsent)
            outbox.mark_sent(self.connection, [m.seq for m in self._stored_unsent], now)
            self._stored_unsent = []
        if not self.unsent:
            return
        publish([_outgoing(row) for row in self.unsent])
        self.sent += [{**row, "sent_at": now} for row in self.unsent]
        self.unsent = []
        if len(self.sent) + len(self.rows) >= WRITE_EVERY:
            self._write_rows(final=False)

    # ------------------------------------------------------------ what is due
    def next_due_elsewhere(self, tenant: str) -> tuple[datetime | None, datetime | None]:
        """As ``due.next_due_elsewhere``: another tenant's earliest armed timer, and when the
        oldest unapplied event (any tenant's) was received."""
        return self._dues.first_except(tenant), self._oldest_waiting()

    def _oldest_waiting(self, tenant: str | None = None) -> datetime | None:
        tenants = self.waiting if tenant is None else {tenant: self.waiting.get(tenant, {})}
        received = [row.received_at for rows in tenants.values() for row in rows.values()]
        return min(received, default=None)

    def due_tenants(self, now: datetime) -> list[str]:
        """As ``due.due_tenants`` with no lookahead: tenants with a timer due by ``now`` or
        an event waiting since a while."""
        waited = [
            t for t in self.waiting if (self._oldest_waiting(t) or now) <= now - WAITING_AFTER
        ]
        return list(dict.fromkeys([*self._dues.upto(now), *waited]))

    def tenants_with_unapplied(self) -> list[str]:
        return [tenant for tenant, rows in self.waiting.items() if rows]

    # ------------------------------------------------------------ the database
    def write(self) -> None:
        """Write what is left, the tenants' state and their figures (as the stats worker would
        fold them), and commit: the run is in the database."""
        self._write_rows(final=True)
        tenants = list(self.views)
        for table in tables.ROUTING_STATE:  # an earlier run's state, read in at the start
            self.connection.execute(delete(table).where(table.c.tenant.in_(tenants)))
        for table in (*figures.FIGURES, tables.stats_checkpoints):  # folded again below
            self.connection.execute(delete(table).where(table.c.tenant.in_(tenants)))
        state: dict[Table, list[dict[str, Any]]] = {}
        for view in self.views.values():
            for obj in _state_of(view):
                table = TABLE_OF[type(obj)]
                state.setdefault(table, []).append(_record(obj, table))
            for respondent in view.respondents.values():
                state.setdefault(tables.memberships, []).extend(membership_rows(respondent))
            state.setdefault(tables.group_census, []).extend(
                census.census_rows(view.respondents.values())
            )
            for table, rows in _figures(view).items():
                state.setdefault(table, []).extend(rows)
        for table, rows in state.items():
            if rows:
                self.connection.execute(insert(table), rows)
        self.connection.commit()
        self.connection.close()

    def _write_rows(self, final: bool) -> None:
        if self._rewritten:
            i = tables.inbox.c
            self.connection.execute(delete(tables.inbox).where(i.seq.in_(self._rewritten)))
            self._rewritten = []
        # An unapplied row may still change: it is written last, as it is then.
        done = {s: r for s, r in self.rows.items() if final or r["state"] != inbox.NEW}
        if done:
            self.connection.execute(insert(tables.inbox), list(done.values()))
        self.rows = {s: r for s, r in self.rows.items() if s not in done}
        if self.sent:
            self.connection.execute(insert(tables.outbox), self.sent)
            self.sent = []
        if final and self.connection.dialect.name == "postgresql":
            self.connection.execute(text(_RESTART_INBOX_SEQ))

    def _load(self) -> None:
        """Read an earlier run's state, events and decisions, if the database holds any."""
        if not self.connection.scalar(select(func.count()).select_from(tables.tenants)):
            return
        by_tenant: dict[str, list[object]] = {}
        for kind, table in TABLE_OF.items():
            for row in self.connection.execute(select(table)).mappings():
                by_tenant.setdefault(row["tenant"], []).append(_restored(kind, row))
        for tenant, objects in by_tenant.items():
            settings = objects.pop(0)  # the tenants' rows come first
            assert isinstance(settings, TenantSettings)
            self.views[tenant] = InMemoryTenantView(tenant, settings)
            self.views[tenant].load(objects)
            self._dues.note(tenant, self.views[tenant].earliest_due())
        i = tables.inbox.c
        query = select(i.tenant, i.event_id, i.body, i.body_sha256, i.seq)
        for tenant, event_id, body, sha256, seq in self.connection.execute(query):
            self.known[(tenant, event_id)] = StoredBody(body, sha256)
            self.seq = max(self.seq, seq)
        self._load_waiting()
        o = tables.outbox.c
        self.decision_ids = set(self.connection.scalars(select(o.decision_id)))
        self._stored_unsent = outbox.unsent(self.connection, len(self.decision_ids))

    def _load_waiting(self) -> None:
        i = tables.inbox.c
        stored = select(tables.inbox).where(i.state == inbox.NEW).order_by(i.seq)
        for row in self.connection.execute(stored).mappings():
            written = dict(row)
            self.rows[written["seq"]] = written
            self._rewritten.append(written["seq"])
            tenant = written["tenant"]
            self.waiting.setdefault(tenant, {})[written["seq"]] = _inbox_row(
                written["seq"], written
            )


class _Dues:
    """Each tenant's earliest armed timer, in a heap: a replay asks what is due across tenants
    on every line, and must not walk every tenant to answer."""

    def __init__(self) -> None:
        self.of: dict[str, datetime] = {}
        self.heap: list[tuple[datetime, str]] = []  # entries no longer in ``of`` are stale

    def note(self, tenant: str, due: datetime | None) -> None:
        if due is None:
            self.of.pop(tenant, None)
        elif self.of.get(tenant) != due:
            self.of[tenant] = due
            heapq.heappush(self.heap, (due, tenant))

    def _valid_top(self) -> tuple[datetime, str] | None:
        while self.heap and self.of.get(self.heap[0][1]) != self.heap[0][0]:
            heapq.heappop(self.heap)
        return self.heap[0] if self.heap else None

    def upto(self, moment: datetime) -> list[str]:
        """The tenants with a timer due by ``moment``."""
        taken = []
        while (top := self._valid_top()) is not None and top[0] <= moment:
            taken.append(heapq.heappop(self.heap))
        for entry in taken:
            heapq.heappush(self.heap, entry)
        return list(dict.fromkeys(tenant for _, tenant in taken))

    def first_except(self, tenant: str) -> datetime | None:
        """The earliest timer of another tenant than ``tenant``."""
        own = []
        while (top := self._valid_top()) is not None and top[1] == tenant:
            own.append(heapq.heappop(self.heap))
        for entry in own:
            heapq.heappush(self.heap, entry)
        return None if top is None else top[0]


_INBOX_DEFAULTS: dict[str, Any] = {
    "reason": None,
    "applied_at": None,
    "body_size": None,
    "body_sha256": None,
    "effective_at": None,
    "attempts": 0,
}

# Rows went in with their seqs: the next one the database gives must follow them.
_RESTART_INBOX_SEQ = (
    "SELECT setval(pg_get_serial_sequence('inbox', 'seq'), (SELECT max(seq) FROM inbox))"
)


def _inbox_row(seq: int, row: Mapping[str, Any]) -> InboxRow:
    return InboxRow(
        seq,
        row["tenant"],
        row["event_id"],
        row["type"],
        row["conversation_id"],
        row["event_time"],
        row["received_at"],
        row["body"],
    )


def _outgoing(row: Mapping[str, Any]) -> OutgoingMessage:
    return OutgoingMessage(
        0, row["decision_id"], row["exchange"], row["routing_key"], row["body"], row["headers"]
    )


def _state_of(view: InMemoryTenantView) -> list[object]:
    return [
        view.settings(),
        *view.respondents.values(),
        *view.groups.values(),
        *view.rules_by_id.values(),
        *view.conversations.values(),
        *view.queue.values(),
        *view.holds.values(),
        *(c for contacts in view.contacts_by_conversation.values() for c in contacts),
        *view.timers.values(),
    ]


def _figures(view: InMemoryTenantView) -> dict[Table, list[dict[str, Any]]]:
    """What the stats worker would fold of the tenant: every conversation's figures, and a
    checkpoint past them all."""
    conversations = view.conversations.values()
    rows = figures.figure_rows(
        view.tenant, conversations, view.contacts_by_conversation, view.settings()
    )
    return rows | {tables.stats_checkpoints: [figures.checkpoint_row(view.settings())]}


def _record(obj: object, table: Table) -> dict[str, Any]:
    """``obj``'s row of ``table``: its fields, and the store's own columns it carries (set by
    ``stamp_stats_change`` or read in by ``_restored``); a column it lacks takes its default."""
    values = vars(obj)
    record = {}
    for column in table.columns:
        name = column.name if column.name in values else _FIELD_OF.get(column.name, "")
        if name in values:
            record[column.name] = values[name]
        elif column.default is not None and column.default.is_scalar:
            record[column.name] = column.default.arg
        else:  # every row of an executemany has every column
            record[column.name] = _FIRST.get(column.name)
    return record


def _restored(kind: type[T], row: Mapping[str, Any]) -> T:
    """The object of ``kind`` a row holds; the store's own columns ride along as attributes."""
    names = {f.name for f in fields(kind)}  # type: ignore[arg-type]
    obj = kind(**{name: row[COLUMN_OF.get(name, name)] for name in names})
    for column, value in row.items():
        if column not in names and _FIELD_OF.get(column) not in names:
            setattr(obj, column, value)
    return obj


_FIELD_OF = {column: name for name, column in COLUMN_OF.items()}
_FIRST = {"version": 1}  # a respondent's first version, as the ORM would write it
