"""An in-memory ``TenantView``: the fake the unit and property tests run on, and the view
``chatroute replay`` applies a whole day on (``store.memory``).

Indexed, so that a day of 100,000 conversations does not scan every conversation on every
event, and journaled, so that a transaction or a savepoint of the unit of work can be rolled
back as the database would roll it back.

The domain changes the objects it is handed in place. An index over a field the domain may
change (who holds a conversation) is therefore only trusted for objects not handed out since
it was last brought up to date (``next_transaction``): lookups also check those handed out
since, by their current fields.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from chatroute.domain.explain import Census, census_of
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

T = TypeVar("T")
_ABSENT = object()


@dataclass
class _Frame:
    """One level of the journal: the fields of the objects handed out within it, as they were
    when first handed out, and the entries its own changes replaced in the view's dicts."""

    saved: dict[int, tuple[object, dict[str, Any]]] = field(default_factory=dict)
    replaced: list[tuple[dict[Any, Any], Any, Any]] = field(default_factory=list)


class InMemoryTenantView:
    """One tenant's state in dicts; objects handed out are live, as the port requires."""

    def __init__(self, tenant: str, settings: TenantSettings | None = None) -> None:
        self.tenant = tenant
        self._settings = settings or TenantSettings(tenant=tenant)
        self.respondents: dict[str, Respondent] = {}
        self.rules_by_id: dict[str, Rule] = {}
        self.groups: dict[str, Group] = {}
        self.conversations: dict[str, Conversation] = {}
        self.queue: dict[str, QueueEntry] = {}
        self.holds: dict[str, PendingHold] = {}
        self.contacts_by_conversation: dict[str, list[Contact]] = {}
        self.timers: dict[str, Timer] = {}
        # Timers armed since the caller last emptied it (as ``SqlTenantView.lately_armed``).
        self.lately_armed: list[Timer] = []
        self._journal: list[_Frame] = []
        self._index()

    def load(self, objects: Iterable[object]) -> None:
        """Take in the tenant's state as stored (its respondents, rules, conversations, ...)."""
        tables: dict[type, Callable[[Any], tuple[dict[Any, Any], Any]]] = {
            Respondent: lambda o: (self.respondents, o.respondent_id),
            Group: lambda o: (self.groups, o.group_id),
            Rule: lambda o: (self.rules_by_id, o.rule_id),
            Conversation: lambda o: (self.conversations, o.conversation_id),
            QueueEntry: lambda o: (self.queue, o.conversation_id),
            PendingHold: lambda o: (self.holds, o.conversation_id),
            Timer: lambda o: (self.timers, o.timer_id),
        }
        for obj in objects:
            if isinstance(obj, Contact):
                self.contacts_by_conversation.setdefault(obj.conversation_id, []).append(obj)
                continue
            table, key = tables[type(obj)](obj)
            table[key] = obj
        for contacts in self.contacts_by_conversation.values():
            contacts.sort(key=lambda c: c.number)
        self._index()

    def _index(self) -> None:
        """Build every index from the dicts above (at the start, and after a rollback)."""
        self._members: dict[str, dict[str, Respondent]] = {}
        self._member_of: dict[str, list[str]] = {}
        for respondent in self.respondents.values():
            self._join(respondent)
        self._of_visitor: dict[str, list[str]] = {}
        for conversation in self.conversations.values():
            self._of_visitor.setdefault(conversation.visitor, []).append(
                conversation.conversation_id
            )
        self._held: dict[str | None, set[str]] = {}
        self._held_as: dict[str, str | None] = {}
        self._touched: dict[str, Conversation] = dict(self.conversations)
        self._queues: dict[str, list[tuple[tuple[int, datetime, int], str]]] = {}
        self._queued_as: dict[str, tuple[str, tuple[int, datetime, int]]] = {}
        for entry in self.queue.values():
            self._line_up(entry)
        self._holds_of: dict[str, dict[str, PendingHold]] = {}
        for hold in self.holds.values():
            self._holds_of.setdefault(hold.respondent, {})[hold.conversation_id] = hold
        self._timers_of: dict[str, list[Timer]] = {}
        self._by_due: list[tuple[datetime, str, Timer]] = []
        for timer in self.timers.values():
            self._timers_of.setdefault(timer.conversation_id, []).append(timer)
            if timer.state == TimerState.ARMED:
                self._by_due.append((timer.due, timer.timer_id, timer))
        heapq.heapify(self._by_due)

    # the journal: the unit of work's transaction and savepoints
    def begin(self) -> None:
        """Start a transaction, or a savepoint within one."""
        frame = _Frame()
        if self._journal:
            # Objects handed out earlier in the transaction may be changed within the savepoint
            # without being handed out again.
            for obj, _ in (s for outer in self._journal for s in outer.saved.values()):
                frame.saved[id(obj)] = (obj, dict(vars(obj)))
        frame.saved[id(self._settings)] = (self._settings, dict(vars(self._settings)))
        self._journal.append(frame)

    def commit(self) -> list[object]:
        """End the innermost transaction or savepoint, keeping its changes. The end of a
        transaction returns the objects it added or changed; the conversations among them in
        the order they were last handed out (a stand-in for the order of their changes)."""
        frame = self._journal.pop()
        if self._journal:
            outer = self._journal[-1]
            for key, saved in frame.saved.items():
                outer.saved.setdefault(key, saved)
            outer.replaced.extend(frame.replaced)
            return []
        changed = {id(obj): obj for obj, fields in frame.saved.values() if vars(obj) != fields}
        for table, key, _ in frame.replaced:
            added = table.get(key)
            for obj in added if isinstance(added, list) else [added]:
                if obj is not None:
                    changed[id(obj)] = obj
        last = {cid: n for n, cid in enumerate(self._touched)}
        return sorted(changed.values(), key=lambda o: last.get(_conversation_of(o), -1))

    def rollback(self) -> None:
        """Undo the innermost transaction or savepoint: every object handed out within it and
        every entry it added or removed are as they were when it began."""
        frame = self._journal.pop()
        for table, key, previous in reversed(frame.replaced):
            if previous is _ABSENT:
                table.pop(key, None)
            else:
                table[key] = previous
        for obj, fields in frame.saved.values():
            for name, value in fields.items():
                if not name.startswith("_sa_") and getattr(obj, name, _ABSENT) is not value:
                    setattr(obj, name, value)
        self.lately_armed.clear()
        self._index()

    def _handed(self, obj: T) -> T:
        if self._journal and obj is not None:
            saved = self._journal[-1].saved
            if id(obj) not in saved:
                saved[id(obj)] = (obj, dict(vars(obj)))
        return obj

    def _handed_all(self, objects: Iterable[T]) -> list[T]:
        return [self._handed(obj) for obj in objects]

    def _put(self, table: dict[Any, Any], key: Any, value: Any) -> None:
        if self._journal:
            self._journal[-1].replaced.append((table, key, table.get(key, _ABSENT)))
        table[key] = value

    def _pop(self, table: dict[Any, Any], key: Any) -> None:
        if self._journal:
            self._journal[-1].replaced.append((table, key, table[key]))
        del table[key]

    def next_transaction(self) -> None:
        """No command holds an object now: the conversations handed out since the last call
        are indexed by their current holder."""
        for conversation in self._touched.values():
            cid = conversation.conversation_id
            before = self._held_as.get(cid, _ABSENT)
            if before is not _ABSENT:
                self._held.get(before, set()).discard(cid)  # type: ignore[arg-type]
            self._held.setdefault(conversation.respondent, set()).add(cid)
            self._held_as[cid] = conversation.respondent
        self._touched = {}
        self.lately_armed.clear()

    def prefetch(self, conversation_ids: Iterable[str]) -> None:
        """Nothing to read ahead: all is in memory."""

    def forget(self) -> None:
        """Nothing cached beside the state: a rollback already put the indexes right."""

    def settings(self) -> TenantSettings:
        return self._settings

    def next_seq(self) -> int:
        self._settings.counter += 1
        return self._settings.counter

    # respondents
    def respondent(self, respondent_id: str) -> Respondent | None:
        found = self.respondents.get(respondent_id)
        return None if found is None else self._handed(found)

    def add_respondent(self, respondent: Respondent) -> None:
        rid = respondent.respondent_id
        if self.respondents.get(rid) is not respondent:
            self._put(self.respondents, rid, respondent)
        for group in self._member_of.pop(rid, []):
            self._members[group].pop(rid, None)
        self._join(respondent)

    def _join(self, respondent: Respondent) -> None:
        groups = list(dict.fromkeys(respondent.groups))
        self._member_of[respondent.respondent_id] = groups
        for group in groups:
            self._members.setdefault(group, {})[respondent.respondent_id] = respondent

    def free_respondents(self, group: str) -> list[Respondent]:
        return self._handed_all(
            r
            for r in self._members.get(group, {}).values()
            if r.status == AVAILABLE and r.load < r.slots
        )

    def census(self, group: str) -> Census:
        return census_of(self._members.get(group, {}).values())

    def group_exists(self, group: str) -> bool:
        named_by_rule = any(
            group == target["group"]
            for rule in self.rules_by_id.values()
            for target in rule.target_list()
        )
        return named_by_rule or bool(self._members.get(group)) or group in self.groups

    # groups' settings
    def group(self, group_id: str) -> Group | None:
        found = self.groups.get(group_id)
        return None if found is None else self._handed(found)

    def add_group(self, group: Group) -> None:
        self._put(self.groups, group.group_id, group)

    # rules
    def rules(self) -> list[Rule]:
        return self._handed_all(self.rules_by_id.values())

    def rule(self, rule_id: str) -> Rule | None:
        found = self.rules_by_id.get(rule_id)
        return None if found is None else self._handed(found)

    def add_rule(self, rule: Rule) -> None:
        self._put(self.rules_by_id, rule.rule_id, rule)

    def remove_rule(self, rule: Rule) -> None:
        self._pop(self.rules_by_id, rule.rule_id)

    # conversations
    def conversation(self, conversation_id: str) -> Conversation | None:
        found = self.conversations.get(conversation_id)
        if found is not None:
            self._touched.pop(conversation_id, None)  # last handed out last
            self._touched[conversation_id] = self._handed(found)
        return found

    def add_conversation(self, conversation: Conversation) -> None:
        cid = conversation.conversation_id
        self._put(self.conversations, cid, conversation)
        self._of_visitor.setdefault(conversation.visitor, []).append(cid)
        self._touched[cid] = conversation

    def held_by(self, respondent_id: str, state: str) -> list[Conversation]:
        ids = self._held.get(respondent_id, set()) | self._touched.keys()
        found = [self.conversations.get(cid) for cid in sorted(ids)]
        return [
            self.conversation(c.conversation_id)  # type: ignore[misc]
            for c in found
            if c is not None and c.respondent == respondent_id and c.state == state
        ]

    def idle_candidates(self) -> list[Conversation]:
        watched = [
            c for c in self.conversations.values() if c.state not in (State.CLOSED, State.SNOOZED)
        ]
        ordered = sorted(watched, key=lambda c: c.conversation_id)
        return [self.conversation(c.conversation_id) for c in ordered]  # type: ignore[misc]

    def last_answered_contact(self, visitor: str) -> Contact | None:
        answered = [
            contact
            for cid in self._of_visitor.get(visitor, [])
            for contact in self.contacts_by_conversation.get(cid, [])
            if contact.answered
        ]
        found = max(answered, key=recency, default=None)
        return None if found is None else self._handed(found)

    # group queues
    def queue_entry(self, conversation_id: str) -> QueueEntry | None:
        found = self.queue.get(conversation_id)
        return None if found is None else self._handed(found)

    def enqueue(self, entry: QueueEntry) -> None:
        if entry.joined_at is None:  # as the store writes it: "None: queued_at" spelled out
            entry.joined_at = entry.queued_at
        self._put(self.queue, entry.conversation_id, entry)
        self._line_up(entry)

    def dequeue(self, entry: QueueEntry) -> None:
        self._pop(self.queue, entry.conversation_id)
        self._step_out(entry.conversation_id)

    def reprioritize(self, entry: QueueEntry, priority: int) -> None:
        self._step_out(entry.conversation_id)
        entry.priority = priority
        self._line_up(entry)

    def _line_up(self, entry: QueueEntry) -> None:
        key = entry.order_key()
        bisect.insort(self._queues.setdefault(entry.group, []), (key, entry.conversation_id))
        self._queued_as[entry.conversation_id] = (entry.group, key)

    def _step_out(self, conversation_id: str) -> None:
        group, key = self._queued_as.pop(conversation_id)
        line = self._queues[group]
        del line[bisect.bisect_left(line, (key, conversation_id))]

    def queue_head(self, groups: Sequence[str], respondent_id: str) -> QueueEntry | None:
        heads = []
        for group in dict.fromkeys(groups):
            for _, cid in self._queues.get(group, []):
                entry = self.queue[cid]
                if entry.excluded != respondent_id:
                    heads.append(entry)
                    break
        found = min(heads, key=QueueEntry.order_key, default=None)
        return None if found is None else self._handed(found)

    def queue_position(self, entry: QueueEntry) -> int:
        line = self._queues.get(entry.group, [])
        return bisect.bisect_left(line, (entry.order_key(), entry.conversation_id)) + 1

    def queue_length(self, group: str, limit: int) -> int:
        return min(limit, len(self._queues.get(group, [])))

    # pending holds
    def hold(self, conversation_id: str) -> PendingHold | None:
        found = self.holds.get(conversation_id)
        return None if found is None else self._handed(found)

    def add_hold(self, hold: PendingHold) -> None:
        self._put(self.holds, hold.conversation_id, hold)
        self._holds_of.setdefault(hold.respondent, {})[hold.conversation_id] = hold

    def remove_hold(self, hold: PendingHold) -> None:
        self._pop(self.holds, hold.conversation_id)
        self._holds_of[hold.respondent].pop(hold.conversation_id)

    def oldest_hold(self, respondent_id: str) -> PendingHold | None:
        own = self._holds_of.get(respondent_id, {}).values()
        found = min(own, key=lambda h: h.seq, default=None)
        return None if found is None else self._handed(found)

    # contacts
    def contacts(self, conversation_id: str) -> list[Contact]:
        return self._handed_all(self.contacts_by_conversation.get(conversation_id, []))

    def add_contact(self, contact: Contact) -> None:
        own = [*self.contacts_by_conversation.get(contact.conversation_id, []), contact]
        own.sort(key=lambda c: c.number)
        self._put(self.contacts_by_conversation, contact.conversation_id, own)

    # durable timers
    # Indexed by conversation and by due time (a heap), so a simulated day of 100,000
    # conversations does not scan every timer on every event.
    def arm_timer(self, timer: Timer) -> None:
        self._put(self.timers, timer.timer_id, timer)
        self._timers_of.setdefault(timer.conversation_id, []).append(timer)
        heapq.heappush(self._by_due, (timer.due, timer.timer_id, timer))
        self.lately_armed.append(timer)

    def armed_timers(self, conversation_id: str) -> list[Timer]:
        own = self._timers_of.get(conversation_id, [])
        return self._handed_all(t for t in own if t.state == TimerState.ARMED)

    def due_timers(self, upto: datetime) -> list[Timer]:
        taken = []
        while self._by_due and self._by_due[0][0] <= upto:
            taken.append(heapq.heappop(self._by_due))
        due = [entry for entry in taken if entry[2].state == TimerState.ARMED]
        for entry in due:
            heapq.heappush(self._by_due, entry)  # the caller fires them; cancelled ones go
        return self._handed_all(timer for _, _, timer in due)

    def earliest_due(self) -> datetime | None:
        """When the earliest armed timer is due; None when none is armed."""
        while self._by_due and self._by_due[0][2].state != TimerState.ARMED:
            heapq.heappop(self._by_due)
        return self._by_due[0][0] if self._by_due else None

    def armed_timers_of_kind(self, kind: str) -> list[Timer]:
        armed = [t for t in self.timers.values() if t.kind == kind and t.state == TimerState.ARMED]
        return self._handed_all(sorted(armed, key=lambda t: t.timer_id))


def _conversation_of(obj: object) -> str:
    return getattr(obj, "conversation_id", "")


def recency(contact: Contact) -> tuple[bool, datetime, datetime, str, int]:
    """Sort key of ``last_answered_contact``: the greatest is the most recent contact."""
    ended = contact.ended_at
    return (
        ended is None,
        ended or contact.started_at,
        contact.started_at,
        contact.conversation_id,
        contact.number,
    )
