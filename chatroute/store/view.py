"""``SqlTenantView``: the domain's ``TenantView`` over one session and one tenant."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    Connection,
    bindparam,
    delete,
    func,
    insert,
    inspect,
    or_,
    select,
    tuple_,
)
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified

from chatroute.domain.explain import Census
from chatroute.domain.model import (
    AVAILABLE,
    Contact,
    Conversation,
    Group,
    PendingHold,
    QueueEntry,
    Respondent,
    Rule,
    State,
    TenantSettings,
    Timer,
    TimerState,
)
from chatroute.domain.routing import candidate_key
from chatroute.store import census, tables


class _Unknown:
    """Not looked up yet."""


UNKNOWN = _Unknown()


# The session.info key under which an applying transaction keeps its time.
NOW = "now"
# A group's queue order (QueueEntry.order_key), the order of its index.
_Q = tables.queue_entries.c
_QUEUE_ORDER = (_Q.priority.desc(), _Q.joined_at, _Q.seq)
# How many free members of a group a transaction reads, best first (see free_respondents).
RANKED = 64
MIN_UNCHANGED = 5
# How many members of a group a view keeps as looked at (see next_transaction).
LOOKED_AT = 2 * RANKED
# Up to how many pending holds a view reads all of them at once.
HOLDS_READ = 256


class _Ranking:
    """A group's best free members as read, and the choice key each had then."""

    def __init__(self, members: list[Respondent]) -> None:
        self.members = members
        self.keys = [candidate_key(r) for r in members]

    def holds(self) -> bool:
        """Whether at least ``MIN_UNCHANGED`` members are still free and as they were read
        (counted from the best: usually the first few tell, not all ``RANKED``)."""
        unchanged = 0
        for r, key in zip(self.members, self.keys, strict=True):
            if r.status == AVAILABLE and r.load < r.slots and candidate_key(r) == key:
                unchanged += 1
                if unchanged == MIN_UNCHANGED:
                    return True
        return False


class SqlTenantView:
    """Reads go through the session's identity map; changes flush with the transaction."""

    def __init__(self, session: Session, settings: TenantSettings, *, writes: bool = True) -> None:
        self.session = session
        self.tenant = settings.tenant
        self._settings = settings
        # False in a read-only transaction (``store.unit.looking``): nothing is flushed, so
        # queries see the database as it is, and the view's own changes only in memory.
        self._writes = writes
        self.forget()

    def forget(self) -> None:
        """Drop the caches, after a rollback to a savepoint made them stale."""
        # Caches of what this view read or wrote (it holds the tenant's lock, so nobody else
        # writes these rows meanwhile; store.unit.KeptViews keeps it for the tenant's next
        # transaction only while no other process wrote): they spare queries per event.
        self._rules: dict[str, Rule] | None = None
        self._groups: dict[str, Group | None] = {}  # None: looked up, not declared
        self._contacts: dict[str, list[Contact]] = {}
        self._timers: dict[str, list[Timer]] = {}
        # The earliest due time of the armed timers other than those last handed out as due.
        self._next_due: datetime | _Unknown | None = UNKNOWN
        self._handed_due: list[Timer] = []
        # Timers armed since the caller last emptied it: firing a batch of due timers must
        # notice one armed by a firing that falls due before the rest of the batch.
        self.lately_armed: list[Timer] = []
        self._rows: dict[type[QueueEntry | PendingHold], int] = {}
        self._holds: dict[str, PendingHold] | None = None  # all of them (_all_holds)
        # Members of each group looked at (free or not); conversations and respondents looked
        # up, None for those known not to exist. A pending (new) object is not in the session's
        # identity map: without these, looking at it again would flush and query.
        self._ranked: dict[str, _Ranking] = {}
        self._conversations: dict[str, Conversation | None] = {}
        self._respondents: dict[str, Respondent | None] = {}
        # The respondents looked up, by each group they were in when looked up or added (a
        # respondent's groups change only through add_respondent): the candidates a routing
        # must see besides the ranking, without a walk over every respondent of the batch.
        self._seen_in: dict[str, dict[str, Respondent]] = {}
        self._census: dict[str, tuple[int, Census]] = {}  # as flushed, by census.WRITES

    def next_transaction(self) -> None:
        """This view serves the tenant's next transaction (no other wrote in between): what it
        read stays true. A group's ranking and the members looked at since it was read go
        together (``free_respondents``): both are dropped, between transactions (no command
        holds a respondent then), once so many were looked at that each choice would walk
        them all."""
        for group in [g for g, seen in self._seen_in.items() if len(seen) > LOOKED_AT]:
            del self._seen_in[group]
            self._ranked.pop(group, None)
        self.lately_armed.clear()
        self._census.clear()  # kept by the session's count of writes, and this one is new

    def _count(self, kind: type[QueueEntry | PendingHold]) -> int:
        """The tenant's queue entries or holds: most serving finds none, and skips a query."""
        if kind not in self._rows:
            query = select(func.count()).select_from(kind).where(kind.tenant == self.tenant)
            self._rows[kind] = int(self._scalar(query, kind) or 0)
        return self._rows[kind]

    def settings(self) -> TenantSettings:
        return self._settings

    def _delete(self, row: object) -> None:
        # A row added in this transaction and not flushed yet is only forgotten: the session
        # refuses to delete what it has not written (found by the fuzz: a rule created and
        # deleted in one batch failed the batch).
        if inspect(row).pending:
            self.session.expunge(row)
        else:
            self.session.delete(row)

    def next_seq(self) -> int:
        self._settings.counter += 1
        return self._settings.counter

    # respondents
    def respondent(self, respondent_id: str) -> Respondent | None:
        if respondent_id not in self._respondents:
            with self.session.no_autoflush:  # as in conversation()
                found = self.session.get(Respondent, (self.tenant, respondent_id))
            self._respondents[respondent_id] = found
        found = self._respondents[respondent_id]
        # On every call: a respondent known from before a group's ranking was dropped
        # (next_transaction) is looked at again, and may change.
        self._seen(found)
        return found

    def _seen(self, respondent: Respondent | None) -> None:
        if respondent is not None:
            for group in respondent.groups:
                self._seen_in.setdefault(group, {})[respondent.respondent_id] = respondent

    def add_respondent(self, respondent: Respondent) -> None:
        self.session.add(respondent)
        self._respondents[respondent.respondent_id] = respondent
        self._seen(respondent)
        self._ranked.clear()  # a new respondent, or new groups: read the ranking again

    def free_respondents(self, group: str) -> list[Respondent]:
        """The free members that can be chosen, not all of them: every member this view
        looked at (live) since the group's ranking was first read, and the first ``RANKED`` of
        the group in choice order as the database had them. A member of neither was not
        changed since, and ranks below at least ``MIN_UNCHANGED`` of those still as they were
        read, or the ranking is read again: so the five best (the most any choice shows) are
        always here."""
        ranked = self._ranking(group)
        if len(ranked.members) == RANKED and not ranked.holds():
            del self._ranked[group]
            ranked = self._ranking(group)
        looked_at = self._seen_in.get(group, {})
        pool = {r.respondent_id: r for r in (*ranked.members, *looked_at.values())}
        return [
            r
            for r in pool.values()
            if r.status == AVAILABLE and r.load < r.slots and group in r.groups
        ]

    def census(self, group: str) -> Census:
        writes = self.session.info.get(census.WRITES, 0)
        known = self._census.get(group)
        if known is None or known[0] != writes:
            with self.session.no_autoflush:
                known = (writes, census.read(self.session.connection(), self.tenant, group))
            self._census[group] = known
        changes = census.unflushed(self.session).get((self.tenant, group))
        return census.with_changes(known[1], changes)

    def _ranking(self, group: str) -> _Ranking:
        if group not in self._ranked:
            m = tables.memberships.c
            last = Respondent.last_assigned_at
            rid = Respondent.respondent_id
            by_id = (
                rid.collate("C") if self.session.get_bind().dialect.name == "postgresql" else rid
            )
            query = (
                select(Respondent)
                .join(
                    tables.memberships, (m.tenant == Respondent.tenant) & (m.respondent_id == rid)
                )
                .where(
                    m.tenant == self.tenant,
                    m.group_id == group,
                    Respondent.status == AVAILABLE,
                    Respondent.load < Respondent.slots,
                )
                # routing.candidate_key: load, never assigned first, oldest assignment, id
                .order_by(Respondent.load, last.is_not(None), last, by_id)
                .limit(RANKED)
            )
            members = list(self.session.scalars(query))
            for respondent in members:
                if respondent.respondent_id not in self._respondents:
                    self._respondents[respondent.respondent_id] = respondent
                    self._seen(respondent)
            self._ranked[group] = _Ranking(members)
        return self._ranked[group]

    def group_exists(self, group: str) -> bool:
        # Rules' targets are JSON: looked at here, over the (cached, live) rules.
        if any(group == t["group"] for rule in self.rules() for t in rule.target_list()):
            return True
        if self._groups.get(group) is not None:
            return True
        self._flush()  # memberships are written by the flush
        m, g = tables.memberships.c, tables.groups.c
        member = select(m.group_id).where(m.tenant == self.tenant, m.group_id == group)
        declared = select(g.group_id).where(g.tenant == self.tenant, g.group_id == group)
        return self.session.execute(member.union_all(declared).limit(1)).first() is not None

    # groups' settings
    def group(self, group_id: str) -> Group | None:
        if group_id not in self._groups:
            with self.session.no_autoflush:  # as in conversation(): add_group caches
                self._groups[group_id] = self.session.get(Group, (self.tenant, group_id))
        return self._groups[group_id]

    def add_group(self, group: Group) -> None:
        # As the memory view's dict: a new object for a declared group replaces it (the flush
        # turns the delete and the insert of one key into an update).
        known = self.group(group.group_id)
        if known is not None and known is not group:
            self._delete(known)
        self.session.add(group)
        self._groups[group.group_id] = group

    # rules
    def rules(self) -> list[Rule]:
        return list(self._rules_by_id().values())

    def rule(self, rule_id: str) -> Rule | None:
        return self._rules_by_id().get(rule_id)

    def add_rule(self, rule: Rule) -> None:
        self.session.add(rule)
        self._rules_by_id()[rule.rule_id] = rule

    def remove_rule(self, rule: Rule) -> None:
        self._delete(rule)
        del self._rules_by_id()[rule.rule_id]

    def _rules_by_id(self) -> dict[str, Rule]:
        if self._rules is None:
            # No flush first: rules change only through this cache, once loaded.
            with self.session.no_autoflush:
                rules = self.session.scalars(select(Rule).where(Rule.tenant == self.tenant))
                self._rules = {rule.rule_id: rule for rule in rules}
        return self._rules

    # conversations
    def conversation(self, conversation_id: str) -> Conversation | None:
        if conversation_id not in self._conversations:
            # No flush first: one added in this transaction is in the cache, one changed is
            # in the identity map (no query), so the row read is what a flush would leave.
            # A flush per lookup cost a third of a replay's time.
            with self.session.no_autoflush:
                found = self.session.get(Conversation, (self.tenant, conversation_id))
            self._conversations[conversation_id] = found
        return self._conversations[conversation_id]

    def add_conversation(self, conversation: Conversation) -> None:
        self.session.add(conversation)
        self._conversations[conversation.conversation_id] = conversation

    def held_by(self, respondent_id: str, state: str) -> list[Conversation]:
        query = select(Conversation).where(
            Conversation.tenant == self.tenant,
            Conversation.respondent == respondent_id,
            Conversation.state == state,
        )
        return list(self.session.scalars(query.order_by(Conversation.conversation_id)))

    def idle_candidates(self) -> list[Conversation]:
        self._flush()
        query = select(Conversation).where(
            Conversation.tenant == self.tenant,
            Conversation.state.not_in([State.CLOSED, State.SNOOZED]),
        )
        found = list(self.session.scalars(query))
        for conversation in found:
            self._conversations[conversation.conversation_id] = conversation
        # Sorted here: Python's order of ids is the memory view's, whatever the collation.
        return sorted(found, key=lambda c: c.conversation_id)

    def last_answered_contact(self, visitor: str) -> Contact | None:
        # Contacts added or changed in this transaction count: written first.
        self._flush()
        c = tables.conversations.c
        ended = Contact.ended_at
        cid = Contact.conversation_id
        by_id = cid.collate("C") if self._postgresql() else cid
        query = (
            select(Contact)
            .join(
                tables.conversations,
                (c.tenant == Contact.tenant) & (c.conversation_id == Contact.conversation_id),
            )
            .where(
                c.tenant == self.tenant,
                c.visitor == visitor,
                Contact.tenant == self.tenant,
                Contact.answered.is_(True),
            )
            # memory.recency, greatest first: open ones, then by end (or start), start, id
            .order_by(
                ended.is_(None).desc(),
                func.coalesce(ended, Contact.started_at).desc(),
                Contact.started_at.desc(),
                by_id.desc(),
                Contact.number.desc(),
            )
            .limit(1)
        )
        return self.session.scalars(query).first()

    def _postgresql(self) -> bool:
        return self.session.get_bind().dialect.name == "postgresql"

    # group queues
    def queue_entry(self, conversation_id: str) -> QueueEntry | None:
        return self.session.get(QueueEntry, (self.tenant, conversation_id))

    def enqueue(self, entry: QueueEntry) -> None:
        # Counted before the change: the count's query flushes the session.
        self._rows[QueueEntry] = self._count(QueueEntry) + 1
        if entry.joined_at is None:  # the column is the order's: "None: queued_at" written out
            entry.joined_at = entry.queued_at
        self.session.add(entry)

    def dequeue(self, entry: QueueEntry) -> None:
        # Counted before the change: the count's query flushes the session.
        self._rows[QueueEntry] = self._count(QueueEntry) - 1
        self._delete(entry)

    def reprioritize(self, entry: QueueEntry, priority: int) -> None:
        entry.priority = priority
        # Written at once: the queue's queries flush only for entries added or removed, so
        # that no freed slot pays a walk over every object the batch changed.
        self._flush()

    @staticmethod
    @cache
    def _queue_head() -> Any:
        """A group's head, for a respondent it does not exclude. Built once (after the
        mapping): it runs for every freed slot, and building it cost as much as running it.
        Each group's by its own index range: an IN list over the groups would let a prepared
        (generic) plan walk the whole tenant's queue."""
        return (
            select(QueueEntry)
            .where(
                QueueEntry.tenant == bindparam("tenant"),
                QueueEntry.group == bindparam("group"),
                or_(QueueEntry.excluded.is_(None), QueueEntry.excluded != bindparam("who")),
            )
            .order_by(*_QUEUE_ORDER)
            .limit(1)
        )

    def queue_head(self, groups: Sequence[str], respondent_id: str) -> QueueEntry | None:
        if not groups or self._count(QueueEntry) == 0:
            return None
        heads = [
            self._first(
                self._queue_head(), QueueEntry, tenant=self.tenant, group=g, who=respondent_id
            )
            for g in dict.fromkeys(groups)
        ]
        return min((h for h in heads if h is not None), key=QueueEntry.order_key, default=None)

    def queue_position(self, entry: QueueEntry) -> int:
        """1 + the entries ahead: of a higher priority, or of its priority and earlier by
        (joined_at, seq). Two counts over ranges of the queue's index (an OR of the two in
        one WHERE would not be one range)."""
        joined = entry.joined_at or entry.queued_at
        where = (QueueEntry.tenant == self.tenant, QueueEntry.group == entry.group)
        higher = select(func.count()).where(*where, QueueEntry.priority > entry.priority)
        earlier = select(func.count()).where(
            *where,
            QueueEntry.priority == entry.priority,
            tuple_(QueueEntry.joined_at, QueueEntry.seq) < (joined, entry.seq),
        )
        query = select(higher.scalar_subquery() + earlier.scalar_subquery())
        return 1 + int(self._scalar(query, QueueEntry) or 0)

    def queue_length(self, group: str, limit: int) -> int:
        if limit <= 0:
            return min(limit, 0)  # as the memory view: min(limit, length)
        if self._count(QueueEntry) == 0:
            return 0
        # Bounded: a full queue's length is known after ``limit`` index entries. In the index's
        # order, so the plan walks the group's range of it: unordered, a (generic) plan may
        # take a LIMIT-ed seq scan, which reads the whole table when the group is small.
        rows = (
            select(QueueEntry.seq)
            .where(QueueEntry.tenant == self.tenant, QueueEntry.group == group)
            .order_by(*_QUEUE_ORDER)
            .limit(limit)
            .subquery()
        )
        return int(self._scalar(select(func.count()).select_from(rows), QueueEntry) or 0)

    # pending holds: few at any time (a hold waits for one respondent's next free slot), so
    # all of them are read at once, up to HOLDS_READ, and looked up in memory after that
    def hold(self, conversation_id: str) -> PendingHold | None:
        holds = self._all_holds()
        if holds is None:
            return self.session.get(PendingHold, (self.tenant, conversation_id))
        return holds.get(conversation_id)

    def add_hold(self, hold: PendingHold) -> None:
        # Counted before the change: the count's query flushes the session.
        self._rows[PendingHold] = self._count(PendingHold) + 1
        self.session.add(hold)
        if self._holds is not None:
            self._holds[hold.conversation_id] = hold

    def remove_hold(self, hold: PendingHold) -> None:
        # Counted before the change: the count's query flushes the session.
        self._rows[PendingHold] = self._count(PendingHold) - 1
        self._delete(hold)
        if self._holds is not None:
            del self._holds[hold.conversation_id]

    def oldest_hold(self, respondent_id: str) -> PendingHold | None:
        if self._count(PendingHold) == 0:
            return None
        holds = self._all_holds()
        if holds is not None:
            own = [h for h in holds.values() if h.respondent == respondent_id]
            return min(own, key=lambda h: h.seq, default=None)
        query = (
            select(PendingHold)
            .where(PendingHold.tenant == self.tenant, PendingHold.respondent == respondent_id)
            .order_by(PendingHold.seq)
            .limit(1)
        )
        return self._first(query, PendingHold)

    def _all_holds(self) -> dict[str, PendingHold] | None:
        """The tenant's holds by conversation, read once; None when there are too many."""
        if self._holds is None and self._count(PendingHold) <= HOLDS_READ:
            query = select(PendingHold).where(PendingHold.tenant == self.tenant)
            with self._flushed(PendingHold):
                self._holds = {h.conversation_id: h for h in self.session.scalars(query)}
        return self._holds

    def _first(self, query: Any, kind: type[QueueEntry | PendingHold], **params: Any) -> Any:
        """The query's first row, flushing first only when rows of ``kind`` were added or
        removed in this session (a changed priority is flushed by ``reprioritize``): a flush
        per event is what a busy batch would pay for every freed slot."""
        with self._flushed(kind):
            return self.session.scalars(query, params or None).first()

    def _scalar(self, query: Any, kind: type[QueueEntry | PendingHold]) -> Any:
        """As ``_first``, for a query of one value."""
        with self._flushed(kind):
            return self.session.scalar(query)

    @contextmanager
    def _flushed(self, kind: type[QueueEntry | PendingHold]) -> Iterator[None]:
        session = self.session
        if self._writes and any(isinstance(o, kind) for o in (*session.new, *session.deleted)):
            session.flush()
            yield
        else:
            with session.no_autoflush:
                yield

    def _flush(self) -> None:
        if self._writes:
            self.session.flush()

    # contacts
    def contacts(self, conversation_id: str) -> list[Contact]:
        if conversation_id not in self._contacts:
            query = select(Contact).where(
                Contact.tenant == self.tenant, Contact.conversation_id == conversation_id
            )
            self._contacts[conversation_id] = list(
                self.session.scalars(query.order_by(Contact.number))
            )
        return list(self._contacts[conversation_id])

    def add_contact(self, contact: Contact) -> None:
        self.session.add(contact)
        self.contacts(contact.conversation_id)
        known = self._contacts[contact.conversation_id]
        if contact not in known:
            known.append(contact)

    # durable timers
    def arm_timer(self, timer: Timer) -> None:
        self.session.add(timer)
        self.lately_armed.append(timer)
        floor = self._earliest_due()
        self._next_due = timer.due if floor is None else min(floor, timer.due)
        if timer.conversation_id in self._timers:
            self._timers[timer.conversation_id].append(timer)

    def armed_timers(self, conversation_id: str) -> list[Timer]:
        if conversation_id not in self._timers:
            self._load_timers([conversation_id])
        armed = [t for t in self._timers[conversation_id] if t.state == TimerState.ARMED]
        return sorted(armed, key=lambda t: (t.due, t.timer_id))

    def _load_timers(self, conversation_ids: Collection[str]) -> None:
        """Cache the armed timers of ``conversation_ids`` (later arming appends to it)."""
        for cid in conversation_ids:
            self._timers[cid] = []
        if self._earliest_due() is None:
            return
        query = select(Timer).where(
            Timer.tenant == self.tenant,
            Timer.conversation_id.in_(list(conversation_ids)),
            Timer.state == TimerState.ARMED,
        )
        for timer in self.session.scalars(query):
            self._timers[timer.conversation_id].append(timer)

    def prefetch(self, conversation_ids: Collection[str]) -> None:
        """Load these conversations, their contacts and timers in three queries, so applying
        their events finds them in memory (no query, hence no flush, per event)."""
        ids = [cid for cid in conversation_ids if cid not in self._contacts]
        if not ids:
            return
        query = select(Conversation).where(
            Conversation.tenant == self.tenant, Conversation.conversation_id.in_(ids)
        )
        found = {c.conversation_id: c for c in self.session.scalars(query)}
        for cid in ids:
            if self._conversations.get(cid) is None:
                self._conversations[cid] = found.get(cid)
        contacts = select(Contact).where(
            Contact.tenant == self.tenant, Contact.conversation_id.in_(ids)
        )
        grouped: dict[str, list[Contact]] = {cid: [] for cid in ids}
        for contact in self.session.scalars(contacts.order_by(Contact.number)):
            grouped[contact.conversation_id].append(contact)
        self._contacts.update(grouped)
        self._load_timers([cid for cid in ids if cid not in self._timers])

    def due_timers(self, upto: datetime) -> list[Timer]:
        floor = self._earliest_due()
        if floor is None or floor > upto:
            return []
        armed = (Timer.state == TimerState.ARMED, Timer.tenant == self.tenant)
        # With the due ones, when the next is due: no query for it after they fire.
        later = select(func.min(Timer.due)).where(*armed, Timer.due > upto).scalar_subquery()
        query = select(Timer, later).where(*armed, Timer.due <= upto)
        # Read afresh (after the autoflush): tries another process counted and never finished
        # (store.attempts) show even on timers this process kept from its last transaction.
        query = query.order_by(Timer.due, Timer.timer_id)
        rows = self.session.execute(query.execution_options(populate_existing=True)).all()
        due = [timer for timer, _ in rows]
        self.prefetch({timer.conversation_id for timer in due})
        # The caller fires these (or some of them): _earliest_due looks at what it left armed.
        self._next_due, self._handed_due = (rows[0][1], due) if rows else (UNKNOWN, [])
        return due

    def armed_timers_of_kind(self, kind: str) -> list[Timer]:
        if self._earliest_due() is None:
            return []
        self._flush()
        query = select(Timer.conversation_id).where(
            Timer.tenant == self.tenant, Timer.kind == kind, Timer.state == TimerState.ARMED
        )
        ids = set(self.session.scalars(query))
        # Through the per-conversation cache, so what is handed out is what armed_timers
        # hands out (and what arming appends to).
        self.prefetch(ids)
        self._load_timers([cid for cid in ids if cid not in self._timers])
        armed = [
            t
            for cid in ids
            for t in self._timers[cid]
            if t.kind == kind and t.state == TimerState.ARMED
        ]
        return sorted(armed, key=lambda t: t.timer_id)

    def _earliest_due(self) -> datetime | None:
        """The earliest due time of the tenant's armed timers (earlier is harmless: it only
        costs a query), or None when there is none."""
        if isinstance(self._next_due, _Unknown):
            query = select(func.min(Timer.due)).where(
                Timer.state == TimerState.ARMED, Timer.tenant == self.tenant
            )
            self._next_due, self._handed_due = self.session.scalar(query), []
        left = [t.due for t in self._handed_due if t.state == TimerState.ARMED]
        if self._next_due is not None:
            left.append(self._next_due)
        return min(left, default=None)


def stamp_stats_changes(session: Session, _context: object, _instances: object) -> None:
    """Before a flush: a conversation changed, or one of its contacts, takes the tenant's
    next stats counter value as its ``stats_seq``.

    The tenant's writers are serialised by its lock, so these values commit in increasing
    order: the stats worker folds what lies above its checkpoint and misses nothing. The
    session's ``info["now"]`` (set by the applying transaction) dates the change.
    """
    changed: set[tuple[str, str]] = set()
    pending: dict[tuple[str, str], Conversation] = {}  # session.get finds no pending object
    new = session.new  # built on each access: once, or a big flush is quadratic
    for obj in list(new) + list(session.dirty):
        if isinstance(obj, Conversation) and obj in new:
            pending[(obj.tenant, obj.conversation_id)] = obj
        if isinstance(obj, Conversation | Contact) and (obj in new or session.is_modified(obj)):
            changed.add((obj.tenant, obj.conversation_id))
    with session.no_autoflush:
        for key in sorted(changed):
            settings = session.get(TenantSettings, key[0])
            conversation = pending.get(key) or session.get(Conversation, key)
            if settings is not None and conversation is not None:
                stamp_stats_change(settings, conversation, session.info.get(NOW))


def stamp_stats_change(
    settings: TenantSettings, conversation: Conversation, at: datetime | None
) -> None:
    """``conversation`` changed at ``at``: it takes the tenant's next stats counter value."""
    # Columns of the store only: the domain's dataclasses do not declare them.
    seq = stats_counter(settings) + 1
    setattr(settings, "stats_counter", seq)  # noqa: B010
    setattr(conversation, "stats_seq", seq)  # noqa: B010
    setattr(conversation, "stats_changed_at", at)  # noqa: B010


def stats_counter(settings: TenantSettings) -> int:
    """The tenant's last stats counter value (0 for a tenant not flushed yet)."""
    return int(getattr(settings, "stats_counter", None) or 0)


def write_whole_rows(session: Session, _context: object, _instances: object) -> None:
    """Before a flush: a changed conversation, contact or respondent is written whole. Events
    change different columns of each, and the flush sends one UPDATE per row when the rows'
    columns differ; whole rows go in one statement per table (executemany)."""
    for obj in session.dirty:
        if isinstance(obj, WHOLE_ROWS) and session.is_modified(obj):
            loaded = inspect(obj).dict
            for key in _written(type(obj)):
                if key in loaded:
                    flag_modified(obj, key)


WHOLE_ROWS = (Conversation, Contact, Respondent)


@cache
def _written(kind: type) -> tuple[str, ...]:
    """The attributes a whole row's UPDATE sets: all but the key and the version (the ORM's)."""
    mapper = inspect(kind)
    fixed = {c.key for c in mapper.primary_key}
    if mapper.version_id_col is not None:
        fixed.add(mapper.version_id_col.key)
    return tuple(a.key for a in mapper.column_attrs if a.columns[0].key not in fixed)


def sync_memberships(session: Session, _context: object, _instances: object) -> None:
    """Before a flush: rewrite membership rows of respondents whose ``groups`` changed.

    The domain only edits ``Respondent.groups``; the membership table is its index for
    "free respondents of a group", kept here so it can never drift from the list.
    """
    for obj in list(session.new) + list(session.dirty):
        if isinstance(obj, Respondent) and inspect(obj).attrs.groups.history.has_changes():
            _write_memberships(session.connection(), obj)


def _write_memberships(connection: Connection, respondent: Respondent) -> None:
    m = tables.memberships
    connection.execute(
        delete(m).where(
            m.c.tenant == respondent.tenant, m.c.respondent_id == respondent.respondent_id
        )
    )
    rows = membership_rows(respondent)
    if rows:
        connection.execute(insert(m), rows)


def membership_rows(respondent: Respondent) -> list[dict[str, Any]]:
    """The rows of ``tables.memberships`` that index ``respondent.groups``."""
    return [
        {
            "tenant": respondent.tenant,
            "group_id": g,
            "respondent_id": respondent.respondent_id,
            "position": i,
        }
        for i, g in enumerate(dict.fromkeys(respondent.groups))
    ]
