"""The conversation state machine: ``handle`` applies a command, ``fire`` a due timer.

Each handler checks everything first and raises ``Rejected`` before any change, then
mutates through the ``TenantView`` and returns the decisions in the order taken.
The section comments follow docs/semantics.md.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from chatroute.domain import explain, hours, policy, routing
from chatroute.domain.commands import (
    KEEP,
    Command,
    ConversationClosed,
    ConversationPrioritized,
    ConversationRated,
    ConversationSale,
    ConversationSnoozed,
    ConversationStarted,
    ConversationTransferred,
    GroupUpdated,
    MessagePosted,
    RespondentStatus,
    RespondentUpdated,
    RuleDeleted,
    RuleUpdated,
    TenantUpdated,
    VisitorPresence,
)
from chatroute.domain.explain import NOT_BY_RULE
from chatroute.domain.model import (
    AVAILABLE,
    UNAVAILABLE,
    Conversation,
    Decision,
    Group,
    Respondent,
    Rule,
    State,
    Timer,
    TimerKind,
    TimerState,
)
from chatroute.domain.ports import TenantView
from chatroute.errors import Rejected, UnknownConversation

Handler = Callable[[TenantView, Any, datetime], list[Decision]]

COMMISSION_MODES = ("percent", "per_contact")
AUTHORS = ("visitor", "respondent")
IDLE = "idle"
NO_ANSWER = "no_answer"
PRIORITIES = range(-100, 101)


def handle(view: TenantView, command: Command, now: datetime) -> list[Decision]:
    """Apply ``command`` at ``now``; raises ``Rejected`` (state untouched) when refused."""
    return _HANDLERS[type(command)](view, command, now)


def fire(view: TenantView, timer: Timer, now: datetime) -> list[Decision]:
    """Fire an armed ``timer`` at ``now``, its effective time (its due time, or the tenant's
    last effective time if later: see ``timing``); a stale one only gets marked fired."""
    if timer.state != TimerState.ARMED:
        return []
    timer.state = TimerState.FIRED
    conversation = view.conversation(timer.conversation_id)
    if conversation is None:
        return []
    return _TIMERS[timer.kind](view, conversation, timer, now)


def fire_due(view: TenantView, upto: datetime) -> list[Decision]:
    """Fire every timer due at or before ``upto`` in (due, timer id) order, each at its due."""
    decisions: list[Decision] = []
    while timers := view.due_timers(upto):
        decisions += fire(view, timers[0], timers[0].due)
    return decisions


# lookups and checks (they raise before any change)


def _conversation(view: TenantView, conversation_id: str) -> Conversation:
    conversation = view.conversation(conversation_id)
    if conversation is None:
        raise UnknownConversation(conversation_id)
    return conversation


def _open_conversation(view: TenantView, conversation_id: str) -> Conversation:
    conversation = _conversation(view, conversation_id)
    if conversation.state == State.CLOSED:
        raise Rejected(f"conversation {conversation_id!r} is closed")
    return conversation


def _respondent(view: TenantView, respondent_id: str) -> Respondent:
    respondent = view.respondent(respondent_id)
    if respondent is None:
        raise Rejected(f"unknown respondent {respondent_id!r}")
    return respondent


def _check_holder(conversation: Conversation, respondent_id: str, states: tuple[str, ...]) -> None:
    if conversation.state not in states or conversation.respondent != respondent_id:
        cid = conversation.conversation_id
        raise Rejected(f"respondent {respondent_id!r} does not hold conversation {cid!r}")


def _check_choice(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise Rejected(f"unknown {what} {value!r}")


def _group(conversation: Conversation) -> str:
    # Only unrouted conversations lack a group, and they are never held, queued or snoozed.
    assert conversation.group is not None, conversation.conversation_id
    return conversation.group


# configuration events


def _respondent_updated(view: TenantView, cmd: RespondentUpdated, now: datetime) -> list[Decision]:
    respondent = view.respondent(cmd.respondent) or Respondent(view.tenant, cmd.respondent, [], 0)
    respondent.groups = list(cmd.groups)
    respondent.slots = cmd.slots
    respondent.name = cmd.name
    view.add_respondent(respondent)  # new, or with new groups
    return routing.serve(view, cmd.respondent, now)


def _respondent_status(view: TenantView, cmd: RespondentStatus, now: datetime) -> list[Decision]:
    respondent = _respondent(view, cmd.respondent)
    _check_choice(cmd.status, (AVAILABLE, UNAVAILABLE), "status")
    if respondent.status == cmd.status:
        return []
    respondent.status = cmd.status
    if cmd.status == AVAILABLE:
        return _came_back(view, respondent, now)
    _arm_reassignments(view, respondent, now)
    return []


def _came_back(view: TenantView, respondent: Respondent, now: datetime) -> list[Decision]:
    for conversation in view.held_by(respondent.respondent_id, State.ASSIGNED):
        routing.cancel_timers(view, conversation.conversation_id, TimerKind.REASSIGN)
    return routing.serve(view, respondent.respondent_id, now)


def _arm_reassignments(view: TenantView, respondent: Respondent, now: datetime) -> None:
    due = now + timedelta(seconds=view.settings().reassign_after_s)
    held = view.held_by(respondent.respondent_id, State.ASSIGNED)
    for conversation in sorted(held, key=lambda c: c.conversation_id):
        cid = conversation.conversation_id
        routing.arm_timer(view, TimerKind.REASSIGN, cid, respondent.respondent_id, due)


def _rule_updated(view: TenantView, cmd: RuleUpdated, now: datetime) -> list[Decision]:
    targets = _targets(cmd)
    rule = view.rule(cmd.rule)
    if rule is None:
        rule = Rule(view.tenant, cmd.rule, targets[0]["group"], cmd.priority)
        view.add_rule(rule)
    rule.group = targets[0]["group"]
    rule.priority, rule.conditions = cmd.priority, list(cmd.conditions)
    # The v1 form stays as it was stored: a v1 rule reads back the same.
    rule.targets = targets if cmd.targets is not None else None
    return []


def _targets(cmd: RuleUpdated) -> list[dict[str, Any]]:
    if (cmd.group is None) == (cmd.targets is None):
        raise Rejected("exactly one of group and targets is required")
    if cmd.targets is None:
        return [{"group": cmd.group, "wait_s": None}]
    if not cmd.targets:
        raise Rejected("targets must not be empty")
    targets = [{"group": t["group"], "wait_s": t.get("wait_s")} for t in cmd.targets]
    if any(t["wait_s"] is not None and t["wait_s"] <= 0 for t in targets):
        raise Rejected("a target's wait_s must be greater than 0")
    return targets


def _group_updated(view: TenantView, cmd: GroupUpdated, now: datetime) -> list[Decision]:
    parsed = None if cmd.hours is KEEP else hours.parse(cmd.hours)  # raises InvalidHours
    if cmd.max_queue is not KEEP and cmd.max_queue is not None and cmd.max_queue < 0:
        raise Rejected("max_queue must be 0 or more")
    group = view.group(cmd.group)
    if group is None:
        group = Group(view.tenant, cmd.group)
        view.add_group(group)
    if cmd.hours is not KEEP:
        group.hours = None if parsed is None else parsed.to_json()
    if cmd.max_queue is not KEEP:
        group.max_queue = cmd.max_queue
    return []


def _rule_deleted(view: TenantView, cmd: RuleDeleted, now: datetime) -> list[Decision]:
    rule = view.rule(cmd.rule)
    if rule is None:
        raise Rejected(f"unknown rule {cmd.rule!r}")
    view.remove_rule(rule)
    return []


def _tenant_updated(view: TenantView, cmd: TenantUpdated, now: datetime) -> list[Decision]:
    commission = cmd.commission or {}
    if "mode" in commission:
        _check_choice(commission["mode"], COMMISSION_MODES, "commission mode")
    _check_policy(cmd)
    settings = view.settings()
    if cmd.reassign_after_s is not None:
        settings.reassign_after_s = cmd.reassign_after_s
    if cmd.clock_skew_s is not None:
        settings.clock_skew_s = cmd.clock_skew_s
    settings.commission_mode = commission.get("mode", settings.commission_mode)
    settings.commission_rate = commission.get("rate", settings.commission_rate)
    settings.commission_amount = commission.get("amount", settings.commission_amount)
    if cmd.sticky_within_s is not None:
        settings.sticky_within_s = cmd.sticky_within_s
    if cmd.pause_on_no_answer is not None:
        settings.pause_on_no_answer = cmd.pause_on_no_answer
    _set_answer_within(view, cmd.answer_within_s)
    _set_close_after_idle(view, cmd.close_after_idle_s, now)
    return []


def _check_policy(cmd: TenantUpdated) -> None:
    for name in ("answer_within_s", "close_after_idle_s"):
        value = getattr(cmd, name)
        if value is not KEEP and value is not None and value <= 0:
            raise Rejected(f"{name} must be greater than 0, or null (off)")
    if cmd.sticky_within_s is not None and cmd.sticky_within_s < 0:
        raise Rejected("sticky_within_s must be 0 or more")


def _set_answer_within(view: TenantView, value: int | object | None) -> None:
    """A deadline already running keeps its time; turned off, none fires any more."""
    settings = view.settings()
    if value is KEEP or value == settings.answer_within_s:
        return
    settings.answer_within_s = value  # type: ignore[assignment]
    if value is None:
        for timer in view.armed_timers_of_kind(TimerKind.ANSWER):
            timer.state = TimerState.CANCELLED


def _set_close_after_idle(view: TenantView, value: int | object | None, now: datetime) -> None:
    """Idleness counts from this change at the earliest: every watched conversation gets a
    timer at its new time (a rare event; the only place that reads them all)."""
    settings = view.settings()
    if value is KEEP or value == settings.close_after_idle_s:
        return
    settings.close_after_idle_s = value  # type: ignore[assignment]
    settings.idle_since = now
    for timer in view.armed_timers_of_kind(TimerKind.IDLE):
        timer.state = TimerState.CANCELLED
    for conversation in view.idle_candidates():
        _watch_idle(view, conversation)


def _watch_idle(view: TenantView, conversation: Conversation) -> None:
    """Arm the idle close of a conversation that is open and awake, when the setting is on."""
    settings = view.settings()
    if settings.close_after_idle_s is None:
        return
    cid = conversation.conversation_id
    routing.arm_timer(view, TimerKind.IDLE, cid, None, _idle_due(view, conversation))


def _idle_due(view: TenantView, conversation: Conversation) -> datetime:
    settings = view.settings()
    since = [conversation.started_at, conversation.active_at, settings.idle_since]
    latest = max(moment for moment in since if moment is not None)
    return latest + timedelta(seconds=settings.close_after_idle_s or 0)


# conversations


def _started(view: TenantView, cmd: ConversationStarted, now: datetime) -> list[Decision]:
    if view.conversation(cmd.conversation) is not None:
        raise Rejected(f"conversation {cmd.conversation!r} already exists")
    _check_priority(cmd.priority)
    conversation = Conversation(
        view.tenant, cmd.conversation, cmd.visitor, dict(cmd.attributes), started_at=now
    )
    conversation.priority = cmd.priority
    view.add_conversation(conversation)
    _watch_idle(view, conversation)
    return policy.route_new(view, conversation, now)


def _check_priority(priority: int) -> None:
    if priority not in PRIORITIES:
        raise Rejected(f"priority {priority!r} is not between -100 and 100")


def _prioritized(view: TenantView, cmd: ConversationPrioritized, now: datetime) -> list[Decision]:
    conversation = _open_conversation(view, cmd.conversation)
    _check_priority(cmd.priority)
    conversation.priority = cmd.priority
    entry = view.queue_entry(cmd.conversation) if conversation.state == State.QUEUED else None
    if entry is None:
        return []
    view.reprioritize(entry, cmd.priority)
    return [routing.queued(view, entry, explain.no_choice(NOT_BY_RULE))]


def _message(view: TenantView, cmd: MessagePosted, now: datetime) -> list[Decision]:
    conversation = _open_conversation(view, cmd.conversation)
    _check_choice(cmd.author, AUTHORS, "author")
    if view.settings().close_after_idle_s is not None:
        conversation.active_at = now  # its idle timer, when it fires, moves to the new time
    if cmd.author == "respondent":
        return _respondent_message(view, conversation, cmd.respondent, now)
    if conversation.state == State.SNOOZED:
        return _wake(view, conversation, now, "visitor_reply")
    return []


def _respondent_message(
    view: TenantView, conversation: Conversation, respondent_id: str | None, now: datetime
) -> list[Decision]:
    contact = routing.open_contact(view, conversation.conversation_id)
    if contact is not None and contact.respondent == respondent_id and not contact.answered:
        contact.answered = True
        contact.first_response_at = now
        routing.cancel_timers(view, conversation.conversation_id, TimerKind.ANSWER)
    if conversation.visitor_online:
        return []
    conversation.unread += 1
    notify = {"conversation": conversation.conversation_id, "unread": conversation.unread}
    return [Decision("visitor.notify", notify)]


def _presence(view: TenantView, cmd: VisitorPresence, now: datetime) -> list[Decision]:
    conversation = _conversation(view, cmd.conversation)
    conversation.visitor_online = cmd.online
    if cmd.online:
        conversation.unread = 0
    return []


def _rated(view: TenantView, cmd: ConversationRated, now: datetime) -> list[Decision]:
    conversation = _conversation(view, cmd.conversation)
    if not 1 <= cmd.score <= 5:
        raise Rejected(f"score {cmd.score!r} is not between 1 and 5")
    conversation.rating = cmd.score
    return []


def _sale(view: TenantView, cmd: ConversationSale, now: datetime) -> list[Decision]:
    conversation = _conversation(view, cmd.conversation)
    if cmd.amount < 0:
        raise Rejected(f"sale amount {cmd.amount!r} is negative")
    conversation.sales += cmd.amount
    return []


# transfer


def _transferred(view: TenantView, cmd: ConversationTransferred, now: datetime) -> list[Decision]:
    conversation = _open_conversation(view, cmd.conversation)
    _check_holder(conversation, cmd.respondent, (State.ASSIGNED,))
    holder = _respondent(view, cmd.respondent)
    target = _transfer_target(view, cmd)
    _release(view, conversation, holder, now, routing.TRANSFER)
    if isinstance(target, Respondent):
        return _to_respondent(view, conversation, cmd, target, now)
    return _to_group(view, conversation, cmd, target, now)


def _transfer_target(view: TenantView, cmd: ConversationTransferred) -> Respondent | str:
    if (cmd.to_respondent is None) == (cmd.to_group is None):
        raise Rejected("exactly one of to_respondent and to_group is required")
    if cmd.to_group is not None:
        if not view.group_exists(cmd.to_group):
            raise Rejected(f"unknown group {cmd.to_group!r}")
        return cmd.to_group
    target = _respondent(view, cmd.to_respondent or "")
    if target.respondent_id == cmd.respondent:
        raise Rejected("cannot transfer to oneself")
    return target


def _release(
    view: TenantView, conversation: Conversation, holder: Respondent, now: datetime, reason: str
) -> None:
    """The holder lets an assigned conversation go: their contact ends, their slot frees."""
    holder.load -= 1
    routing.cancel_timers(view, conversation.conversation_id, *routing.PLACEMENT)
    routing.end_contact(view, conversation, now, reason)


def _to_respondent(
    view: TenantView,
    conversation: Conversation,
    cmd: ConversationTransferred,
    target: Respondent,
    now: datetime,
) -> list[Decision]:
    group = _group(conversation)
    if group not in target.groups and target.groups:
        group = target.groups[0]
    placed = routing.assign_or_hold(
        view, conversation, target, group, now, routing.TRANSFER, **_note(cmd)
    )
    return [placed, *routing.serve(view, cmd.respondent, now)]


def _to_group(
    view: TenantView,
    conversation: Conversation,
    cmd: ConversationTransferred,
    group: str,
    now: datetime,
) -> list[Decision]:
    # The holder's slot is served first so that older queued conversations go first.
    served = routing.serve(view, cmd.respondent, now)
    routed = routing.route_in_group(
        view, conversation, group, now, routing.TRANSFER, cmd.respondent, **_note(cmd)
    )
    return served + routed


def _note(cmd: ConversationTransferred) -> dict[str, str | None]:
    """What the recipient of a transfer is shown."""
    return {"comment": cmd.comment, "from_respondent": cmd.respondent}


# snooze and wake


def _snoozed(view: TenantView, cmd: ConversationSnoozed, now: datetime) -> list[Decision]:
    conversation = _open_conversation(view, cmd.conversation)
    _check_holder(conversation, cmd.respondent, (State.ASSIGNED, State.SNOOZED))
    holder = _slot_holder(view, conversation)
    if holder is not None:
        holder.load -= 1
    cid = conversation.conversation_id
    routing.cancel_timers(view, cid)  # its reassignment and any earlier wake
    conversation.state = State.SNOOZED
    conversation.snooze_until, conversation.snooze_keep = cmd.until, cmd.keep
    contact = routing.open_contact(view, cid)
    if contact is not None:
        contact.snoozes += 1
    data = {"conversation": cid, "respondent": cmd.respondent, "until": cmd.until}
    decision = Decision("conversation.snoozed", data | {"keep": cmd.keep})
    if cmd.until is not None:
        routing.arm_timer(view, TimerKind.WAKE, cid, cmd.respondent, cmd.until)
    return [decision, *routing.serve(view, cmd.respondent, now)]


def _wake(
    view: TenantView, conversation: Conversation, now: datetime, cause: str
) -> list[Decision]:
    """Wake a snoozed conversation, then serve the snoozer in case it moved away."""
    snoozer = _respondent(view, conversation.respondent or "")
    routing.cancel_timers(view, conversation.conversation_id, TimerKind.WAKE)
    conversation.snooze_until = None
    if view.settings().close_after_idle_s is not None:
        conversation.active_at = now
    _watch_idle(view, conversation)
    data = {"conversation": conversation.conversation_id, "cause": cause}
    placed = _place_woken(view, conversation, snoozer, now)
    return [
        Decision("conversation.woken", data),
        *placed,
        *routing.serve(view, snoozer.respondent_id, now),
    ]


def _place_woken(
    view: TenantView, conversation: Conversation, snoozer: Respondent, now: datetime
) -> list[Decision]:
    """With keep: back to the snoozer (or pending for them); else routed, others first."""
    group = _group(conversation)
    if conversation.snooze_keep:
        return [routing.assign_or_hold(view, conversation, snoozer, group, now, "wake")]
    prefer_not = snoozer.respondent_id
    return routing.route_in_group(view, conversation, group, now, "wake", prefer_not)


# close


def _closed(view: TenantView, cmd: ConversationClosed, now: datetime) -> list[Decision]:
    conversation = _conversation(view, cmd.conversation)
    if conversation.close_cause == IDLE:
        return []  # the engine closed it first: the frontend's close is not an error
    _open_conversation(view, cmd.conversation)
    return _close(view, conversation, now, "close")


def _close(
    view: TenantView, conversation: Conversation, now: datetime, reason: str
) -> list[Decision]:
    """Close it: out of its queue, hold and timers, its contact ended, its slot served."""
    holder = _slot_holder(view, conversation)
    _unplace(view, conversation)
    routing.end_contact(view, conversation, now, reason)
    conversation.state, conversation.respondent = State.CLOSED, None
    conversation.snooze_until, conversation.closed_at = None, now
    conversation.target = None
    if holder is None:
        return []
    holder.load -= 1
    return routing.serve(view, holder.respondent_id, now)


def _slot_holder(view: TenantView, conversation: Conversation) -> Respondent | None:
    """The respondent whose slot the conversation occupies, if it is assigned."""
    if conversation.state != State.ASSIGNED or conversation.respondent is None:
        return None
    return _respondent(view, conversation.respondent)


def _unplace(view: TenantView, conversation: Conversation) -> None:
    """Remove the conversation's queue entry, pending hold and timers."""
    cid = conversation.conversation_id
    # Its state says where it is (exactly one place), so only that place is looked up.
    entry = view.queue_entry(cid) if conversation.state == State.QUEUED else None
    if entry is not None:
        view.dequeue(entry)
    hold = view.hold(cid) if conversation.state == State.PENDING else None
    if hold is not None:
        view.remove_hold(hold)
    routing.cancel_timers(view, cid)


# timers


def _fire_wake(
    view: TenantView, conversation: Conversation, timer: Timer, now: datetime
) -> list[Decision]:
    sleeping = conversation.state == State.SNOOZED
    if not sleeping or conversation.respondent != timer.respondent:
        return []
    return _wake(view, conversation, now, "timer")


def _fire_reassign(
    view: TenantView, conversation: Conversation, timer: Timer, now: datetime
) -> list[Decision]:
    old = timer.respondent or ""
    hold = view.hold(conversation.conversation_id)
    if conversation.state == State.PENDING and hold is not None and hold.respondent == old:
        view.remove_hold(hold)
    elif _held_while_away(view, conversation, old):
        _respondent(view, old).load -= 1
    else:
        return []
    group = _group(conversation)
    moved = routing.route_in_group(view, conversation, group, now, "reassign", exclude=old)
    return moved + routing.serve(view, old, now)


def _held_while_away(view: TenantView, conversation: Conversation, respondent_id: str) -> bool:
    respondent = view.respondent(respondent_id)
    assigned = conversation.state == State.ASSIGNED and conversation.respondent == respondent_id
    return assigned and respondent is not None and respondent.status == UNAVAILABLE


def _fire_answer(
    view: TenantView, conversation: Conversation, timer: Timer, now: datetime
) -> list[Decision]:
    """Its respondent did not answer in time: the contact ends and it moves on without them."""
    old = timer.respondent or ""
    contact = routing.open_contact(view, conversation.conversation_id)
    assigned = conversation.state == State.ASSIGNED and conversation.respondent == old
    if not assigned or contact is None or contact.answered:
        return []
    holder = _respondent(view, old)
    _release(view, conversation, holder, now, NO_ANSWER)
    conversation.excluded = old
    moved = routing.route_in_group(view, conversation, _group(conversation), now, NO_ANSWER)
    paused = _pause(view, holder, conversation, now) if view.settings().pause_on_no_answer else []
    return moved + paused + routing.serve(view, old, now)


def _pause(
    view: TenantView, respondent: Respondent, missed: Conversation, now: datetime
) -> list[Decision]:
    """Make an available respondent unavailable, as their own status event would; the
    decision names the conversation they missed."""
    if respondent.status != AVAILABLE:
        return []
    respondent.status = UNAVAILABLE
    _arm_reassignments(view, respondent, now)
    data = {"respondent": respondent.respondent_id, "reason": NO_ANSWER}
    return [Decision("respondent.paused", data | {"conversation": missed.conversation_id})]


def _fire_idle(
    view: TenantView, conversation: Conversation, timer: Timer, now: datetime
) -> list[Decision]:
    """Close it when it has been idle long enough; after a message, wait on from it."""
    watched = conversation.state not in (State.CLOSED, State.SNOOZED)
    if view.settings().close_after_idle_s is None or not watched:
        return []
    if _idle_due(view, conversation) > now:
        _watch_idle(view, conversation)
        return []
    conversation.close_cause = IDLE
    closed = Decision("conversation.closed", {"conversation": conversation.conversation_id})
    return [
        Decision(closed.type, closed.data | {"cause": IDLE}),
        *_close(view, conversation, now, IDLE),
    ]


_HANDLERS: dict[type, Handler] = {
    RespondentUpdated: _respondent_updated,
    RespondentStatus: _respondent_status,
    RuleUpdated: _rule_updated,
    RuleDeleted: _rule_deleted,
    TenantUpdated: _tenant_updated,
    GroupUpdated: _group_updated,
    ConversationStarted: _started,
    ConversationPrioritized: _prioritized,
    MessagePosted: _message,
    VisitorPresence: _presence,
    ConversationTransferred: _transferred,
    ConversationSnoozed: _snoozed,
    ConversationClosed: _closed,
    ConversationRated: _rated,
    ConversationSale: _sale,
}

_TIMERS: dict[str, Callable[[TenantView, Conversation, Timer, datetime], list[Decision]]] = {
    TimerKind.WAKE: _fire_wake,
    TimerKind.REASSIGN: _fire_reassign,
    TimerKind.OVERFLOW: policy.overflow,
    TimerKind.ANSWER: _fire_answer,
    TimerKind.IDLE: _fire_idle,
}
