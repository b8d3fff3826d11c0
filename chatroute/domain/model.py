"""Entities of one tenant. Plain dataclasses: the store maps them, the domain mutates them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

AVAILABLE = "available"
UNAVAILABLE = "unavailable"


class State:
    """Where an open conversation is; ``closed`` ends it."""

    UNROUTED = "unrouted"
    QUEUED = "queued"
    ASSIGNED = "assigned"
    PENDING = "pending"
    SNOOZED = "snoozed"
    CLOSED = "closed"


class TimerKind:
    WAKE = "wake"
    REASSIGN = "reassign"
    OVERFLOW = "overflow"  # a rule's queue waited ``wait_s``: try the rule's later targets
    ANSWER = "answer"  # the answer deadline of an assigned, unanswered contact
    IDLE = "idle"  # close a conversation without messages for ``close_after_idle_s``


class TimerState:
    ARMED = "armed"
    FIRED = "fired"
    CANCELLED = "cancelled"
    FAILED = "failed"  # its firing raised an unexpected error; set aside, logged


@dataclass
class TenantSettings:
    tenant: str
    reassign_after_s: int = 86400
    commission_mode: str = "percent"
    commission_rate: float = 0.0
    commission_amount: float = 0.0
    # Monotonic per tenant: orders queue entries and pending holds by arrival.
    counter: int = 0
    # How far an event's own time is trusted from when it was received (see ``timing``).
    clock_skew_s: int = 5
    # The effective time of the tenant's last applied event or fired timer.
    effective_at: datetime | None = None
    # Events whose effective time differed from their time: a sender's clock to look at.
    adjusted_events: int = 0
    # Routing policy v2 (docs/semantics.md): all off by default, so v1 tenants see no change.
    sticky_within_s: int = 0
    answer_within_s: int | None = None
    pause_on_no_answer: bool = False
    close_after_idle_s: int | None = None
    # When ``close_after_idle_s`` last changed: idleness is counted from then at the earliest.
    idle_since: datetime | None = None


@dataclass
class Respondent:
    tenant: str
    respondent_id: str
    groups: list[str]
    slots: int
    status: str = UNAVAILABLE
    name: str | None = None
    load: int = 0
    last_assigned_at: datetime | None = None


@dataclass
class Group:
    """A group's settings; a group need not be declared to be used (then: always open,
    unlimited queue)."""

    tenant: str
    group_id: str
    hours: dict[str, Any] | None = None  # ``hours.Hours.to_json()``; None: always open
    max_queue: int | None = None  # None: unlimited


@dataclass
class Rule:
    tenant: str
    rule_id: str
    group: str  # the first target's group
    priority: int
    conditions: list[dict[str, Any]] = field(default_factory=list)
    # ``[{"group": g, "wait_s": n | None}, ...]``; None: the v1 form, ``[{"group": group}]``.
    targets: list[dict[str, Any]] | None = None

    def target_list(self) -> list[dict[str, Any]]:
        return list(self.targets) if self.targets else [{"group": self.group, "wait_s": None}]


@dataclass
class Conversation:
    tenant: str
    conversation_id: str
    visitor: str
    attributes: dict[str, str]
    started_at: datetime
    state: str = State.UNROUTED
    group: str | None = None
    # The assigned, pending or snoozing respondent; None when queued, unrouted or closed.
    respondent: str | None = None
    visitor_online: bool = True
    unread: int = 0
    snooze_until: datetime | None = None
    snooze_keep: bool = True
    rating: int | None = None
    sales: float = 0.0
    contacts: int = 0
    closed_at: datetime | None = None
    queued_at: datetime | None = None  # when it first joined a group's queue
    priority: int = 0  # higher first in every queue it joins
    # The targets of the rule that routed it, as they were then, when one of them has a
    # wait (overflow follows them), and the index of the one whose queue it waits in (None:
    # not queued by such a rule).
    rule_targets: list[dict[str, Any]] | None = None
    target: int | None = None
    # The rule that routed it when it started (None: no rule matched): an overflow names it.
    rule_id: str | None = None
    # The respondent who missed its answer deadline: not chosen again until someone else
    # has held it.
    excluded: str | None = None
    # Its last message or wake while idle close is on (idleness counts from the latest of
    # its start, this, and the setting's change).
    active_at: datetime | None = None
    unrouted_code: str | None = None  # no_rule | closed | queue_full | wait_timeout
    close_cause: str | None = None  # "idle" when the engine closed it
    # Overflow moves, for the statistics: ``[[from_group, to_group or None], ...]``; None: none.
    overflows: list[list[str | None]] | None = None


@dataclass
class QueueEntry:
    """A place in a group's queue. Order: ``priority`` (highest first), ``joined_at`` (the
    time it joined the queue, kept by an overflow move), then ``seq`` (order of joining)."""

    tenant: str
    conversation_id: str
    group: str
    seq: int
    queued_at: datetime  # when it joined this queue (an overflow's wait counts from it)
    priority: int = 0
    joined_at: datetime | None = None  # None: ``queued_at``
    cause: str = "new"  # why it joined: the cause of its conversation.queued
    excluded: str | None = None  # never served to this respondent (missed its deadline)

    def order_key(self) -> tuple[int, datetime, int]:
        return (-self.priority, self.joined_at or self.queued_at, self.seq)


@dataclass
class PendingHold:
    tenant: str
    conversation_id: str
    respondent: str
    group: str
    seq: int
    since: datetime
    reassign_at: datetime
    cause: str  # the assignment cause when delivered: "transfer" or "wake"
    comment: str | None = None
    from_respondent: str | None = None


@dataclass
class Contact:
    tenant: str
    conversation_id: str
    number: int  # 1 for the conversation's first contact, then 2, 3, ...
    respondent: str
    group: str | None
    started_at: datetime
    ended_at: datetime | None = None
    end_reason: str | None = None  # transfer | reassign | close | wake | no_answer | idle | ...
    answered: bool = False
    first_response_at: datetime | None = None
    snoozes: int = 0


@dataclass
class Timer:
    tenant: str
    timer_id: str
    kind: str
    conversation_id: str
    due: datetime
    respondent: str | None = None
    state: str = TimerState.ARMED


@dataclass(frozen=True)
class Decision:
    """An outgoing decision before it gets its envelope: ``type`` and ``data`` of the contract."""

    type: str
    data: dict[str, Any]
