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
class Rule:
    tenant: str
    rule_id: str
    group: str
    priority: int
    conditions: list[dict[str, Any]] = field(default_factory=list)


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


@dataclass
class QueueEntry:
    tenant: str
    conversation_id: str
    group: str
    seq: int
    queued_at: datetime


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
    end_reason: str | None = None  # transfer | reassign | close | wake
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
