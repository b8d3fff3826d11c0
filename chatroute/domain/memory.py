"""An in-memory ``TenantView`` on plain dicts: the fake the unit and property tests run on."""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from datetime import datetime

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
        self._timers_of: dict[str, list[Timer]] = {}
        self._by_due: list[tuple[datetime, str, Timer]] = []

    def settings(self) -> TenantSettings:
        return self._settings

    def next_seq(self) -> int:
        self._settings.counter += 1
        return self._settings.counter

    # respondents
    def respondent(self, respondent_id: str) -> Respondent | None:
        return self.respondents.get(respondent_id)

    def add_respondent(self, respondent: Respondent) -> None:
        self.respondents[respondent.respondent_id] = respondent

    def free_respondents(self, group: str) -> list[Respondent]:
        return [
            r
            for r in self.respondents.values()
            if group in r.groups and r.status == AVAILABLE and r.load < r.slots
        ]

    def group_exists(self, group: str) -> bool:
        named_by_rule = any(
            group == target["group"]
            for rule in self.rules_by_id.values()
            for target in rule.target_list()
        )
        member = any(group in r.groups for r in self.respondents.values())
        return named_by_rule or member or group in self.groups

    # groups' settings
    def group(self, group_id: str) -> Group | None:
        return self.groups.get(group_id)

    def add_group(self, group: Group) -> None:
        self.groups[group.group_id] = group

    # rules
    def rules(self) -> list[Rule]:
        return list(self.rules_by_id.values())

    def rule(self, rule_id: str) -> Rule | None:
        return self.rules_by_id.get(rule_id)

    def add_rule(self, rule: Rule) -> None:
        self.rules_by_id[rule.rule_id] = rule

    def remove_rule(self, rule: Rule) -> None:
        del self.rules_by_id[rule.rule_id]

    # conversations
    def conversation(self, conversation_id: str) -> Conversation | None:
        return self.conversations.get(conversation_id)

    def add_conversation(self, conversation: Conversation) -> None:
        self.conversations[conversation.conversation_id] = conversation

    def held_by(self, respondent_id: str, state: str) -> list[Conversation]:
        return [
            c
            for c in self.conversations.values()
            if c.respondent == respondent_id and c.state == state
        ]

    def idle_candidates(self) -> list[Conversation]:
        watched = [
            c for c in self.conversations.values() if c.state not in (State.CLOSED, State.SNOOZED)
        ]
        return sorted(watched, key=lambda c: c.conversation_id)

    def last_answered_contact(self, visitor: str) -> Contact | None:
        answered = [
            contact
            for conversation in self.conversations.values()
            if conversation.visitor == visitor
            for contact in self.contacts_by_conversation.get(conversation.conversation_id, [])
            if contact.answered
        ]
        return max(answered, key=recency, default=None)

    # group queues
    def queue_entry(self, conversation_id: str) -> QueueEntry | None:
        return self.queue.get(conversation_id)

    def enqueue(self, entry: QueueEntry) -> None:
        self.queue[entry.conversation_id] = entry

    def dequeue(self, entry: QueueEntry) -> None:
        del self.queue[entry.conversation_id]

    def reprioritize(self, entry: QueueEntry, priority: int) -> None:
        entry.priority = priority

    def queue_head(self, groups: Sequence[str], respondent_id: str) -> QueueEntry | None:
        entries = [
            e for e in self.queue.values() if e.group in groups and e.excluded != respondent_id
        ]
        return min(entries, key=QueueEntry.order_key, default=None)

    def queue_position(self, entry: QueueEntry) -> int:
        key = entry.order_key()
        ahead = [e for e in self.queue.values() if e.group == entry.group and e.order_key() < key]
        return len(ahead) + 1

    def queue_length(self, group: str, limit: int) -> int:
        return min(limit, sum(1 for e in self.queue.values() if e.group == group))

    # pending holds
    def hold(self, conversation_id: str) -> PendingHold | None:
        return self.holds.get(conversation_id)

    def add_hold(self, hold: PendingHold) -> None:
        self.holds[hold.conversation_id] = hold

    def remove_hold(self, hold: PendingHold) -> None:
        del self.holds[hold.conversation_id]

    def oldest_hold(self, respondent_id: str) -> PendingHold | None:
        own = [h for h in self.holds.values() if h.respondent == respondent_id]
        return min(own, key=lambda h: h.seq, default=None)

    # contacts
    def contacts(self, conversation_id: str) -> list[Contact]:
        return list(self.contacts_by_conversation.get(conversation_id, []))

    def add_contact(self, contact: Contact) -> None:
        own = self.contacts_by_conversation.setdefault(contact.conversation_id, [])
        own.append(contact)
        own.sort(key=lambda c: c.number)

    # durable timers
    # Indexed by conversation and by due time (a heap), so a simulated day of 100,000
    # conversations does not scan every timer on every event.
    def arm_timer(self, timer: Timer) -> None:
        self.timers[timer.timer_id] = timer
        self._timers_of.setdefault(timer.conversation_id, []).append(timer)
        heapq.heappush(self._by_due, (timer.due, timer.timer_id, timer))

    def armed_timers(self, conversation_id: str) -> list[Timer]:
        own = self._timers_of.get(conversation_id, [])
        return [t for t in own if t.state == TimerState.ARMED]

    def due_timers(self, upto: datetime) -> list[Timer]:
        taken = []
        while self._by_due and self._by_due[0][0] <= upto:
            taken.append(heapq.heappop(self._by_due))
        due = [entry for entry in taken if entry[2].state == TimerState.ARMED]
        for entry in due:
            heapq.heappush(self._by_due, entry)  # the caller fires them; cancelled ones go
        return [timer for _, _, timer in due]

    def armed_timers_of_kind(self, kind: str) -> list[Timer]:
        armed = [t for t in self.timers.values() if t.kind == kind and t.state == TimerState.ARMED]
        return sorted(armed, key=lambda t: t.timer_id)


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
