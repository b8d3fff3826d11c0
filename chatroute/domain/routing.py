"""Rule matching, respondent choice and slot service (docs/semantics.md).

Everything here reads and changes state through a ``TenantView``; ties are broken
explicitly so two implementations of the port decide the same thing.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from chatroute.domain import explain
from chatroute.domain.explain import NOT_BY_RULE
from chatroute.domain.model import (
    AVAILABLE,
    Contact,
    Conversation,
    Decision,
    PendingHold,
    QueueEntry,
    Respondent,
    Rule,
    State,
    Timer,
    TimerKind,
    TimerState,
)
from chatroute.domain.ports import TenantView

TRANSFER = "transfer"
# Timers that belong to where a conversation is (a hold, an assignment, a rule's queue):
# every move cancels them, and the new place arms its own.
PLACEMENT = (TimerKind.REASSIGN, TimerKind.ANSWER, TimerKind.OVERFLOW)

_OPS: dict[str, Callable[[str, Any], bool]] = {
    "eq": lambda attribute, value: attribute == value,
    "in": lambda attribute, value: isinstance(value, list | tuple) and attribute in value,
    "prefix": lambda attribute, value: isinstance(value, str) and attribute.startswith(value),
    "contains": lambda attribute, value: isinstance(value, str) and value in attribute,
}


# rules


def _condition_holds(condition: Mapping[str, Any], attributes: Mapping[str, str]) -> bool:
    attribute = attributes.get(condition.get("attribute", ""))
    op = _OPS.get(condition.get("op", ""))
    return attribute is not None and op is not None and op(attribute, condition.get("value"))


def matches(rule: Rule, attributes: Mapping[str, str]) -> bool:
    """True when every condition of ``rule`` holds (an empty list matches everything)."""
    return all(_condition_holds(condition, attributes) for condition in rule.conditions)


def first_rule(rules: Iterable[Rule], attributes: Mapping[str, str]) -> Rule | None:
    """The first matching rule by (priority, rule id), or None."""
    for rule in sorted(rules, key=lambda rule: (rule.priority, rule.rule_id)):
        if matches(rule, attributes):
            return rule
    return None


def route_group(rules: Iterable[Rule], attributes: Mapping[str, str]) -> str | None:
    """The group of the first matching rule's first target, or None."""
    rule = first_rule(rules, attributes)
    return None if rule is None else rule.group


# choosing a respondent


def is_free(respondent: Respondent) -> bool:
    """Available with a free slot."""
    return respondent.status == AVAILABLE and respondent.load < respondent.slots


def candidate_key(respondent: Respondent) -> tuple[int, tuple[Any, ...], str]:
    """Sort key: lowest load, never assigned first, oldest last assignment, respondent id."""
    last = respondent.last_assigned_at
    recency: tuple[Any, ...] = (0,) if last is None else (1, last)
    return (respondent.load, recency, respondent.respondent_id)


def ranked(candidates: Iterable[Respondent], count: int = explain.SHOWN) -> list[Respondent]:
    """The ``count`` best candidates, best first (the first is the one a choice takes)."""
    return heapq.nsmallest(count, candidates, key=candidate_key)


# contacts


def open_contact(view: TenantView, conversation_id: str) -> Contact | None:
    """The conversation's contact that has not ended, if any."""
    contacts = view.contacts(conversation_id)
    if contacts and contacts[-1].ended_at is None:
        return contacts[-1]
    return None


def end_contact(view: TenantView, conversation: Conversation, now: datetime, reason: str) -> None:
    """End the open contact (if any) with ``reason``."""
    contact = open_contact(view, conversation.conversation_id)
    if contact is not None:
        contact.ended_at = now
        contact.end_reason = reason


def _take_over(
    view: TenantView, conversation: Conversation, respondent_id: str, now: datetime, reason: str
) -> None:
    """Continue the respondent's open contact, or end the open one and start theirs."""
    contact = open_contact(view, conversation.conversation_id)
    if contact is not None and contact.respondent == respondent_id:
        return
    end_contact(view, conversation, now, reason)
    conversation.contacts += 1
    view.add_contact(
        Contact(
            tenant=view.tenant,
            conversation_id=conversation.conversation_id,
            number=conversation.contacts,
            respondent=respondent_id,
            group=conversation.group,
            started_at=now,
        )
    )


# timers


def arm_timer(
    view: TenantView, kind: str, conversation_id: str, respondent: str | None, due: datetime
) -> Timer:
    """Arm a durable timer; its id is unique per arming and deterministic."""
    timer = Timer(
        tenant=view.tenant,
        timer_id=f"{kind}:{conversation_id}:{view.next_seq()}",
        kind=kind,
        conversation_id=conversation_id,
        due=due,
        respondent=respondent,
    )
    view.arm_timer(timer)
    return timer


def cancel_timers(view: TenantView, conversation_id: str, *kinds: str) -> None:
    """Cancel the conversation's armed timers (of ``kinds`` only, when given)."""
    for timer in view.armed_timers(conversation_id):
        if not kinds or timer.kind in kinds:
            timer.state = TimerState.CANCELLED


def _arm_answer_deadline(view: TenantView, conversation: Conversation, now: datetime) -> None:
    """The answer deadline of a contact its respondent has not answered yet, from now."""
    within = view.settings().answer_within_s
    if within is None:
        return  # off (the default): not even the contact is looked at
    contact = open_contact(view, conversation.conversation_id)
    if contact is None or contact.answered:
        return
    due = now + timedelta(seconds=within)
    arm_timer(view, TimerKind.ANSWER, conversation.conversation_id, contact.respondent, due)


def _held_by_someone_else(conversation: Conversation, respondent_id: str) -> None:
    """Whoever missed its answer deadline may be chosen for it again once another held it."""
    if conversation.excluded != respondent_id:
        conversation.excluded = None


# placing a conversation


def assign(
    view: TenantView,
    conversation: Conversation,
    respondent: Respondent,
    group: str,
    now: datetime,
    cause: str,
    *,
    comment: str | None = None,
    from_respondent: str | None = None,
    sticky: bool = False,
    why: dict[str, Any],
) -> Decision:
    """Give ``conversation`` to ``respondent`` (who must be free): ``conversation.assigned``;
    ``why`` is its explanation (``explain``), made before anything changed."""
    cancel_timers(view, conversation.conversation_id, *PLACEMENT)
    conversation.group = group
    conversation.target = None
    _held_by_someone_else(conversation, respondent.respondent_id)
    _take_over(view, conversation, respondent.respondent_id, now, cause)
    respondent.load += 1
    respondent.last_assigned_at = now
    conversation.state = State.ASSIGNED
    conversation.respondent = respondent.respondent_id
    _arm_answer_deadline(view, conversation, now)
    data: dict[str, Any] = {
        "conversation": conversation.conversation_id,
        "respondent": respondent.respondent_id,
        "group": group,
        "cause": cause,
    }
    if cause == TRANSFER:
        data |= {"comment": comment, "from_respondent": from_respondent}
    if sticky:
        data["sticky"] = True
    return Decision("conversation.assigned", data | {"explain": why})


def hold_for(
    view: TenantView,
    conversation: Conversation,
    respondent_id: str,
    group: str,
    now: datetime,
    cause: str,
    *,
    comment: str | None = None,
    from_respondent: str | None = None,
) -> Decision:
    """Keep ``conversation`` pending for a respondent, with a reassignment timer."""
    cancel_timers(view, conversation.conversation_id, *PLACEMENT)
    conversation.target = None
    _held_by_someone_else(conversation, respondent_id)
    reassign_at = now + timedelta(seconds=view.settings().reassign_after_s)
    hold = PendingHold(
        tenant=view.tenant,
        conversation_id=conversation.conversation_id,
        respondent=respondent_id,
        group=group,
        seq=view.next_seq(),
        since=now,
        reassign_at=reassign_at,
        cause=cause,
        comment=comment,
        from_respondent=from_respondent,
    )
    view.add_hold(hold)
    arm_timer(view, TimerKind.REASSIGN, conversation.conversation_id, respondent_id, reassign_at)
    conversation.state = State.PENDING
    conversation.respondent = respondent_id
    conversation.group = group
    data = {"conversation": conversation.conversation_id, "respondent": respondent_id}
    return Decision("conversation.pending", data | {"group": group, "reassign_at": reassign_at})


def assign_or_hold(
    view: TenantView,
    conversation: Conversation,
    respondent: Respondent,
    group: str,
    now: datetime,
    cause: str,
    *,
    comment: str | None = None,
    from_respondent: str | None = None,
) -> Decision:
    """Assign to ``respondent`` when free, else keep it pending for them."""
    note = {"comment": comment, "from_respondent": from_respondent}
    if is_free(respondent):
        why = explain.no_choice(NOT_BY_RULE, respondent)
        return assign(view, conversation, respondent, group, now, cause, **note, why=why)
    return hold_for(view, conversation, respondent.respondent_id, group, now, cause, **note)


def enqueue(
    view: TenantView,
    conversation: Conversation,
    group: str,
    now: datetime,
    cause: str,
    *,
    joined_at: datetime | None = None,
    target: int | None = None,
    why: dict[str, Any],
) -> Decision:
    """Put ``conversation`` in ``group``'s queue, in its order (``QueueEntry.order_key``); an
    open contact ends (``cause``). ``joined_at``: the time it keeps from the queue it left
    (an overflow); ``target``: the index of its rule's target this queue is; ``why``: the
    explanation of ``conversation.queued``."""
    end_contact(view, conversation, now, cause)
    cancel_timers(view, conversation.conversation_id, *PLACEMENT)
    entry = QueueEntry(
        view.tenant,
        conversation.conversation_id,
        group,
        view.next_seq(),
        queued_at=now,
        priority=conversation.priority,
        joined_at=joined_at or now,
        cause=cause,
        excluded=conversation.excluded,
    )
    view.enqueue(entry)
    conversation.state = State.QUEUED
    conversation.respondent = None
    conversation.group = group
    conversation.target = target
    if conversation.queued_at is None:
        conversation.queued_at = now
    return queued(view, entry, why)


def queued(view: TenantView, entry: QueueEntry, why: dict[str, Any]) -> Decision:
    """``conversation.queued`` for ``entry`` at its place now."""
    data = {"conversation": entry.conversation_id, "group": entry.group}
    place = {"position": view.queue_position(entry), "cause": entry.cause, "explain": why}
    return Decision("conversation.queued", data | place)


def route_in_group(
    view: TenantView,
    conversation: Conversation,
    group: str,
    now: datetime,
    cause: str,
    prefer_not: str | None = None,
    *,
    exclude: str | None = None,
    comment: str | None = None,
    from_respondent: str | None = None,
) -> list[Decision]:
    """Assign to the best free member of ``group``, else queue it there.

    ``prefer_not`` is chosen only when nobody else is free; ``exclude`` never is, nor the
    respondent who missed the conversation's answer deadline.
    """
    excluded = {r for r in (exclude, conversation.excluded) if r is not None}
    allowed = (r for r in view.free_respondents(group) if r.respondent_id not in excluded)
    best = ranked(allowed, explain.SHOWN + 1)
    others = [r for r in best if r.respondent_id != prefer_not]
    if others and len(others) < len(best):  # passed over while someone else is free
        excluded.add(prefer_not or "")
    eligible = (others or best)[: explain.SHOWN]
    why = explain.choice(view, group, NOT_BY_RULE, eligible, excluded)
    if not eligible:
        return [enqueue(view, conversation, group, now, cause, why=why)]
    note = {"comment": comment, "from_respondent": from_respondent}
    return [assign(view, conversation, eligible[0], group, now, cause, **note, why=why)]


# serving a free slot


def serve(view: TenantView, respondent_id: str, now: datetime) -> list[Decision]:
    """Fill the respondent's free slots: their oldest holds first, then the oldest queue entry."""
    respondent = view.respondent(respondent_id)
    decisions: list[Decision] = []
    while respondent is not None and is_free(respondent):
        decision = _serve_one(view, respondent, now)
        if decision is None:
            break
        decisions.append(decision)
    return decisions


def _serve_one(view: TenantView, respondent: Respondent, now: datetime) -> Decision | None:
    hold = view.oldest_hold(respondent.respondent_id)
    if hold is not None:
        return _deliver_hold(view, hold, respondent, now)
    entry = view.queue_head(respondent.groups, respondent.respondent_id)
    if entry is not None:
        return _deliver_entry(view, entry, respondent, now)
    return None


def _deliver_hold(
    view: TenantView, hold: PendingHold, respondent: Respondent, now: datetime
) -> Decision:
    view.remove_hold(hold)
    conversation = _existing(view, hold.conversation_id)
    note = {"comment": hold.comment, "from_respondent": hold.from_respondent}
    why = explain.no_choice(NOT_BY_RULE, respondent)
    return assign(view, conversation, respondent, hold.group, now, hold.cause, **note, why=why)


def _deliver_entry(
    view: TenantView, entry: QueueEntry, respondent: Respondent, now: datetime
) -> Decision:
    view.dequeue(entry)
    conversation = _existing(view, entry.conversation_id)
    why = explain.no_choice(NOT_BY_RULE, respondent)
    return assign(view, conversation, respondent, entry.group, now, "queue", why=why)


def _existing(view: TenantView, conversation_id: str) -> Conversation:
    """A conversation that queue entries, holds and timers guarantee to exist."""
    conversation = view.conversation(conversation_id)
    assert conversation is not None, conversation_id
    return conversation
