"""The one port the domain reads and changes a tenant's state through.

The store implements it on SQLAlchemy (one transaction, one tenant); ``memory`` implements it
with dicts for tests. Objects returned are live: the domain mutates them in place, and the
implementation persists those mutations. ``add_*``/``remove_*`` create and delete rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from chatroute.domain.model import (
    Contact,
    Conversation,
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
        It may leave out members that no choice can pick: never any of the three first by
        ``routing.candidate_key`` (a choice excludes two respondents at the most)."""
        ...

    def group_exists(self, group: str) -> bool:
        """True when a rule names ``group`` or some respondent's groups include it."""
        ...

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

    # group queues (FIFO by ``seq``)
    def queue_entry(self, conversation_id: str) -> QueueEntry | None: ...
    def enqueue(self, entry: QueueEntry) -> None: ...
    def dequeue(self, entry: QueueEntry) -> None: ...
    def queue_head(self, groups: Sequence[str]) -> QueueEntry | None:
        """The entry with the lowest ``seq`` among ``groups``' queues."""
        ...

    def queue_position(self, entry: QueueEntry) -> int:
        """1-based place of ``entry`` in its group's queue."""
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
