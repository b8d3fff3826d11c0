"""The one port the domain reads and changes a tenant's state through.

The store implements it on SQLAlchemy (one transaction, one tenant); ``memory`` implements it
with dicts for tests. Objects returned are live: the domain mutates them in place, and the
implementation persists those mutations. ``add_*``/``remove_*`` create and delete rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from chatroute.domain.explain import Census
from chatroute.domain.model import (
    Contact,
    Conversation,
    Group,
    PendingHold,
    QueueEntry,
    Respondent,
    Rule,
    TenantSettings,
    Timer,
)


class TenantView(Protocol):
    tenant: str

    def settings(self) -> TenantSettings: ...

    def next_seq(self) -> int:
        """Increment and return the tenant's counter (orders queue entries and holds)."""
        ...

    # respondents
    def respondent(self, respondent_id: str) -> Respondent | None: ...
    def add_respondent(self, respondent: Respondent) -> None:
        """Store a new respondent, or note that a known one's groups may have changed."""
        ...

    def free_respondents(self, group: str) -> list[Respondent]:
        """Members of ``group`` who are available with ``load < slots``, in no given order.
        It may leave out members that no choice can show: never any of the five first by
        ``routing.candidate_key`` (a choice passes over two respondents at the most, and its
        explanation shows the three best of the others)."""
        ...

    def census(self, group: str) -> Census:
        """How many members ``group`` has, unavailable, full and free, as they are now,
        without walking the group (a view that has its members at hand may count them)."""
        ...

    def group_exists(self, group: str) -> bool:
        """True when a rule names ``group`` (as any target), some respondent's groups include
        it, or it was declared (``group.updated``)."""
        ...

    # groups' settings
    def group(self, group_id: str) -> Group | None:
        """The declared group, or None (undeclared: always open, unlimited queue)."""
        ...

    def add_group(self, group: Group) -> None: ...

    # rules
    def rules(self) -> list[Rule]: ...
    def rule(self, rule_id: str) -> Rule | None: ...
    def add_rule(self, rule: Rule) -> None: ...
    def remove_rule(self, rule: Rule) -> None: ...

    # conversations
    def conversation(self, conversation_id: str) -> Conversation | None: ...
    def add_conversation(self, conversation: Conversation) -> None: ...
    def held_by(self, respondent_id: str, state: str) -> list[Conversation]:
        """Open conversations in ``state`` whose ``respondent`` is ``respondent_id``."""
        ...

    def idle_candidates(self) -> list[Conversation]:
        """Open conversations that are not snoozed, by id: the ones idle close watches.
        Read only when the tenant's ``close_after_idle_s`` changes."""
        ...

    def last_answered_contact(self, visitor: str) -> Contact | None:
        """The visitor's most recent answered contact in the tenant: an open one (the latest
        started) before any ended one, else the one that ended last; ties by conversation
        id and number."""
        ...

    # group queues, in ``QueueEntry.order_key`` order (priority, joined_at, seq)
    def queue_entry(self, conversation_id: str) -> QueueEntry | None: ...
    def enqueue(self, entry: QueueEntry) -> None: ...
    def dequeue(self, entry: QueueEntry) -> None: ...
    def reprioritize(self, entry: QueueEntry, priority: int) -> None:
        """Give a queued entry a new priority (its place moves; it keeps its times)."""
        ...

    def queue_head(self, groups: Sequence[str], respondent_id: str) -> QueueEntry | None:
        """The first entry by ``order_key`` among ``groups``' queues that may be served to
        ``respondent_id`` (entries that exclude them are passed over)."""
        ...

    def queue_position(self, entry: QueueEntry) -> int:
        """1-based place of ``entry`` in its group's queue."""
        ...

    def queue_length(self, group: str, limit: int) -> int:
        """How many entries ``group``'s queue holds, counted up to ``limit`` at most."""
        ...

    # pending holds (oldest first by ``seq``)
    def hold(self, conversation_id: str) -> PendingHold | None: ...
    def add_hold(self, hold: PendingHold) -> None: ...
    def remove_hold(self, hold: PendingHold) -> None: ...
    def oldest_hold(self, respondent_id: str) -> PendingHold | None: ...

    # contacts
    def contacts(self, conversation_id: str) -> list[Contact]:
        """The conversation's contacts, by ``number``."""
        ...

    def add_contact(self, contact: Contact) -> None: ...

    # durable timers
    def arm_timer(self, timer: Timer) -> None: ...
    def armed_timers(self, conversation_id: str) -> list[Timer]: ...
    def due_timers(self, upto: datetime) -> list[Timer]:
        """Armed timers with ``due <= upto``, by (due, timer_id)."""
        ...

    def armed_timers_of_kind(self, kind: str) -> list[Timer]:
        """The tenant's armed timers of ``kind``, by timer id (a setting's change only)."""
        ...
