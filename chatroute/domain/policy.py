"""Routing by rule (contract v2): a rule's targets in order, gated by business hours and
queue caps; sticky respondents for returning visitors; overflow after a target's wait.

Only routing by rule passes these gates (a new conversation, an overflow move). A transfer,
a wake, a reassignment and a no-answer move route in one group with ``routing.route_in_group``.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from chatroute.domain import explain, hours, routing
from chatroute.domain.explain import NOT_BY_RULE, Skip, Way
from chatroute.domain.model import (
    Conversation,
    Decision,
    Respondent,
    State,
    Timer,
    TimerKind,
)
from chatroute.domain.ports import TenantView

NEW = "new"
OVERFLOW = "overflow"
CLOSED = "closed"
QUEUE_FULL = "queue_full"
NO_RULE = "no_rule"
WAIT_TIMEOUT = "wait_timeout"
REASONS = {
    NO_RULE: "no rule matched",
    CLOSED: "every target of its rule is closed",
    QUEUE_FULL: "no target of its rule is open with a free respondent or room in its queue",
    WAIT_TIMEOUT: "it waited at every target of its rule that could take it",
}


def route_new(view: TenantView, conversation: Conversation, now: datetime) -> list[Decision]:
    """Route a new conversation by the first matching rule, along its targets."""
    rule = routing.first_rule(view.rules(), conversation.attributes)
    if rule is None:
        return [_unrouted(conversation, NO_RULE, NOT_BY_RULE)]
    targets = rule.target_list()
    conversation.rule_id = rule.rule_id
    if any(target.get("wait_s") for target in targets):
        conversation.rule_targets = targets  # an overflow follows them as they are now
    return _along(view, conversation, targets, 0, now, NEW, None)


def overflow(
    view: TenantView, conversation: Conversation, timer: Timer, now: datetime
) -> list[Decision]:
    """Its wait at a target is over: leave that queue and try the rule's later targets."""
    entry = view.queue_entry(conversation.conversation_id)
    index, targets = conversation.target, conversation.rule_targets
    if conversation.state != State.QUEUED or entry is None or index is None or targets is None:
        return []  # it left the queue (its timer would have been cancelled): nothing to do
    view.dequeue(entry)
    decisions = _along(view, conversation, targets, index + 1, now, OVERFLOW, entry.joined_at)
    moved_to = conversation.group if conversation.state != State.UNROUTED else None
    conversation.overflows = [*(conversation.overflows or []), [entry.group, moved_to]]
    return decisions


def _along(
    view: TenantView,
    conversation: Conversation,
    targets: list[dict[str, Any]],
    start: int,
    now: datetime,
    cause: str,
    joined_at: datetime | None,
) -> list[Decision]:
    """The first target from ``start`` not skipped takes it; else it is unrouted."""
    skipped: list[Skip] = []
    for index in range(start, len(targets)):
        group = targets[index]["group"]
        if not is_open(view, group, now):
            skipped.append(Skip(group, CLOSED))
            continue
        way = Way(conversation.rule_id, index, tuple(skipped))
        placed = _take(view, conversation, targets[index], way, now, cause, joined_at)
        if placed is not None:
            return [placed]
        skipped.append(Skip(group, QUEUE_FULL))
    if cause == OVERFLOW:
        code = WAIT_TIMEOUT
    else:
        code = CLOSED if all(skip.why == CLOSED for skip in skipped) else QUEUE_FULL
        conversation.group = targets[0]["group"]  # where its rule would have sent it
    return [_unrouted(conversation, code, Way(conversation.rule_id, None, tuple(skipped)))]


def _take(
    view: TenantView,
    conversation: Conversation,
    target: dict[str, Any],
    way: Way,
    now: datetime,
    cause: str,
    joined_at: datetime | None,
) -> Decision | None:
    """``target`` (the one ``way`` came to) takes it (a free respondent, else its queue), or
    None when it must be skipped: nobody free and its queue already full."""
    group = target["group"]
    sticky = _sticky(view, conversation, group, now) if cause == NEW else None
    if sticky is not None:
        why = explain.no_choice(way, sticky)
        return routing.assign(view, conversation, sticky, group, now, cause, sticky=True, why=why)
    eligible = routing.ranked(view.free_respondents(group))
    if not eligible and queue_full(view, group):
        return None
    why = explain.choice(view, group, way, eligible, ())
    if eligible:
        return routing.assign(view, conversation, eligible[0], group, now, cause, why=why)
    # The target it waits at matters only to an overflow (a rule with waits).
    waits_at = None if conversation.rule_targets is None else way.target
    decision = routing.enqueue(
        view, conversation, group, now, cause, joined_at=joined_at, target=waits_at, why=why
    )
    if wait_s := target.get("wait_s"):
        due = now + timedelta(seconds=wait_s)
        routing.arm_timer(view, TimerKind.OVERFLOW, conversation.conversation_id, None, due)
    return decision


def _unrouted(conversation: Conversation, code: str, way: Way) -> Decision:
    conversation.state, conversation.respondent = State.UNROUTED, None
    conversation.target, conversation.unrouted_code = None, code
    data = {"conversation": conversation.conversation_id, "reason": REASONS[code], "code": code}
    return Decision("conversation.unrouted", data | {"explain": explain.no_choice(way)})


# gates


def is_open(view: TenantView, group: str, at: datetime) -> bool:
    """Whether ``group`` is within its hours at ``at`` (an undeclared group always is)."""
    declared = view.group(group)
    return declared is None or hours_open(declared.hours, at)


def hours_open(raw: dict[str, Any] | None, at: datetime) -> bool:
    """Whether hours in their stored JSON form (None: always open) are open at ``at``."""
    return hours.is_open(_hours(raw), at)


def queue_full(view: TenantView, group: str) -> bool:
    """Whether ``group``'s queue already holds its ``max_queue``."""
    declared = view.group(group)
    cap = None if declared is None else declared.max_queue
    return cap is not None and view.queue_length(group, cap) >= cap


def _hours(raw: dict[str, Any] | None) -> hours.Hours | None:
    return None if raw is None else _parsed(json.dumps(raw, sort_keys=True))


@lru_cache(maxsize=1024)
def _parsed(raw: str) -> hours.Hours | None:
    # Stored hours were valid when stored: parsing them again cannot fail.
    return hours.parse(json.loads(raw))


# sticky


def _sticky(
    view: TenantView, conversation: Conversation, group: str, now: datetime
) -> Respondent | None:
    """The visitor's last answered contact's respondent, when the window allows, they are a
    member of ``group`` and free; else None (it never waits for them)."""
    within = view.settings().sticky_within_s
    if within <= 0:
        return None
    contact = view.last_answered_contact(conversation.visitor)
    if contact is None or contact.conversation_id == conversation.conversation_id:
        return None
    if contact.ended_at is not None and now - contact.ended_at > timedelta(seconds=within):
        return None
    respondent = view.respondent(contact.respondent)
    if respondent is None or group not in respondent.groups or not routing.is_free(respondent):
        return None
    return respondent
