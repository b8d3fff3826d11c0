"""One command per inbound event type; field names are the wire contract's ``data`` fields."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final


class _Keep:
    """A field the event left out: the setting keeps its value (``None`` is a value: off)."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP: Final = _Keep()


@dataclass(frozen=True)
class RespondentUpdated:
    respondent: str
    groups: list[str]
    slots: int
    name: str | None = None


@dataclass(frozen=True)
class RespondentStatus:
    respondent: str
    status: str


@dataclass(frozen=True)
class RuleUpdated:
    rule: str
    group: str | None = None  # exactly one of group (v1) and targets
    priority: int = 0
    conditions: list[dict[str, Any]] = field(default_factory=list)
    targets: list[dict[str, Any]] | None = None  # [{"group": g, "wait_s": n | None}, ...]


@dataclass(frozen=True)
class RuleDeleted:
    rule: str


@dataclass(frozen=True)
class TenantUpdated:
    reassign_after_s: int | None = None
    commission: dict[str, Any] | None = None
    clock_skew_s: int | None = None
    sticky_within_s: int | None = None
    # None turns these two off: left out, they keep their value.
    answer_within_s: int | _Keep | None = KEEP
    pause_on_no_answer: bool | None = None
    close_after_idle_s: int | _Keep | None = KEEP


@dataclass(frozen=True)
class GroupUpdated:
    group: str
    hours: dict[str, Any] | _Keep | None = KEEP  # None: always open
    max_queue: int | _Keep | None = KEEP  # None: unlimited


@dataclass(frozen=True)
class ConversationStarted:
    conversation: str
    visitor: str
    attributes: dict[str, str] = field(default_factory=dict)
    priority: int = 0


@dataclass(frozen=True)
class ConversationPrioritized:
    conversation: str
    priority: int


@dataclass(frozen=True)
class MessagePosted:
    conversation: str
    author: str
    respondent: str | None = None


@dataclass(frozen=True)
class VisitorPresence:
    conversation: str
    online: bool


@dataclass(frozen=True)
class ConversationTransferred:
    conversation: str
    respondent: str
    to_respondent: str | None = None
    to_group: str | None = None
    comment: str | None = None


@dataclass(frozen=True)
class ConversationSnoozed:
    conversation: str
    respondent: str
    until: datetime | None = None
    keep: bool = True


@dataclass(frozen=True)
class ConversationClosed:
    conversation: str
    by: str | None = None


@dataclass(frozen=True)
class ConversationRated:
    conversation: str
    score: int


@dataclass(frozen=True)
class ConversationSale:
    conversation: str
    amount: float
    currency: str | None = None


Command = (
    RespondentUpdated
    | RespondentStatus
    | RuleUpdated
    | RuleDeleted
    | TenantUpdated
    | GroupUpdated
    | ConversationStarted
    | ConversationPrioritized
    | MessagePosted
    | VisitorPresence
    | ConversationTransferred
    | ConversationSnoozed
    | ConversationClosed
    | ConversationRated
    | ConversationSale
)

COMMANDS: dict[str, type[Command]] = {
    "respondent.updated": RespondentUpdated,
    "respondent.status": RespondentStatus,
    "rule.updated": RuleUpdated,
    "rule.deleted": RuleDeleted,
    "tenant.updated": TenantUpdated,
    "group.updated": GroupUpdated,
    "conversation.started": ConversationStarted,
    "conversation.prioritized": ConversationPrioritized,
    "message.posted": MessagePosted,
    "visitor.presence": VisitorPresence,
    "conversation.transferred": ConversationTransferred,
    "conversation.snoozed": ConversationSnoozed,
    "conversation.closed": ConversationClosed,
    "conversation.rated": ConversationRated,
    "conversation.sale": ConversationSale,
}
