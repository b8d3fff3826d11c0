"""The chaos run's checks catch what they are for, and only that (fast, no services)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.chaos import checks

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def entry(
    seq: int, type_: str, at_s: float, state: str = "applied", **data: Any
) -> checks.InboxEntry:
    time = T0 + timedelta(seconds=at_s)
    body = json.dumps({"type": type_, "data": data})
    return checks.InboxEntry(seq, "t", f"e{seq}", type_, state, None, body, time, time)


def decision(
    causation: str, type_: str, n: int = 0, at_s: float = 0.0, /, **data: Any
) -> dict[str, Any]:
    time = (T0 + timedelta(seconds=at_s)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "id": f"{causation}/{n}",
        "tenant": "t",
        "causationid": causation,
        "type": type_,
        "time": time,
        "data": data,
    }


def assigned(
    cause: str,
    conversation: str,
    at_s: float = 0.0,
    n: int = 0,
    respondent: str = "r",
    why: str = "new",
) -> dict[str, Any]:
    return decision(
        cause,
        "conversation.assigned",
        n,
        at_s,
        conversation=conversation,
        respondent=respondent,
        group="g",
        cause=why,
    )


def queued(cause: str, conversation: str, why: str, n: int = 0, at_s: float = 0.0) -> dict:
    data = {"conversation": conversation, "group": "g", "position": 1, "cause": why}
    return decision(cause, "conversation.queued", n, at_s, **data)


SETUP = [entry(1, "respondent.updated", 0, respondent="r", slots=1)]


def test_an_assignment_beyond_slots_is_overbooking_and_one_after_a_close_is_not() -> None:
    events = [
        *SETUP,
        entry(2, "conversation.started", 1, conversation="c1"),
        entry(3, "conversation.started", 2, conversation="c2"),
    ]
    both = [assigned("e2", "c1"), assigned("e3", "c2")]
    assert len(checks.overbooking(events, both).overbooked) == 1

    closed = [
        *events[:2],
        entry(3, "conversation.closed", 2, conversation="c1"),
        entry(4, "conversation.started", 3, conversation="c2"),
    ]
    assert checks.overbooking(closed, [assigned("e2", "c1"), assigned("e4", "c2")]).overbooked == []


def test_a_timer_fires_after_the_earlier_events_and_before_one_that_arrived_late() -> None:
    # c1 is held; a close of c1 at 5 s and a reassignment to r due at 6 s
    start = [*SETUP, entry(2, "conversation.started", 1, conversation="c1")]
    in_time = [
        *start,
        entry(3, "conversation.closed", 5, conversation="c1"),
        entry(4, "message.posted", 7, conversation="c9"),
    ]
    timer = [assigned("e2", "c1"), assigned("timer:x", "c2", at_s=6, why="reassign")]
    assert checks.overbooking(in_time, timer).overbooked == []
    # When the close arrived after an event of 7 s, the timer fired before it: overbooked
    late = [
        *start,
        entry(3, "message.posted", 7, conversation="c9"),
        entry(4, "conversation.closed", 5, conversation="c1"),
    ]
    later = [*timer, decision("e3", "visitor.notify", conversation="c9")]
    assert len(checks.overbooking(late, later).overbooked) == 1


def test_a_late_rejection_of_a_waiting_event_does_not_reorder_the_replay() -> None:
    events = [
        *SETUP,
        entry(2, "conversation.started", 1, conversation="c1"),
        entry(3, "message.posted", 2, "rejected", conversation="ghost"),
        entry(4, "conversation.closed", 5, conversation="c1"),
        entry(5, "message.posted", 7, conversation="c9"),
    ]
    log = [
        assigned("e2", "c1"),
        assigned("timer:x", "c2", at_s=6, why="reassign"),
        decision("e3", "event.rejected"),
        decision("e5", "visitor.notify", conversation="c9"),
    ]
    assert checks.overbooking(events, log).summary() == CLEAN


CLEAN = {"lost": 0, "duplicated": 0, "overbooked": 0, "violations": 0}
TWO = [
    entry(1, "respondent.updated", 0, respondent="r", slots=1),
    entry(2, "respondent.updated", 0, respondent="r2", slots=1),
    entry(3, "conversation.started", 1, conversation="c1"),
]


def test_an_idle_close_frees_the_slot_and_the_frontends_close_after_it_changes_nothing() -> None:
    events = [
        *SETUP,
        entry(2, "conversation.started", 1, conversation="c1"),
        entry(3, "conversation.started", 2, conversation="c2"),
        entry(4, "conversation.closed", 9, conversation="c1"),  # accepted, decides nothing
    ]
    idle = "timer:idle:c1:3"
    closed = decision(idle, "conversation.closed", 0, 8, conversation="c1", cause="idle")
    log = [
        assigned("e2", "c1"),
        queued("e3", "c2", "new"),
        closed,
        assigned(idle, "c2", at_s=8, n=1, why="queue"),  # the freed slot takes c2
    ]
    assert checks.overbooking(events, log).summary() == CLEAN
    # Read as a decision that frees nothing, the idle close would overbook r
    assert len(checks.overbooking(events, [*log[:2], log[3]]).overbooked) == 1
    # Nothing is decided for a closed conversation; a close decision is an idle one
    again = assigned("e4", "c1", at_s=9, why="queue")
    assert len(checks.overbooking(events, [*log, again]).violations) == 1
    plain = closed | {"data": {"conversation": "c1"}}
    assert len(checks.overbooking(events, [log[0], log[1], plain, log[3]]).violations) == 1


def test_a_missed_answer_deadline_moves_the_slot_and_a_pause_changes_none() -> None:
    answer = "timer:answer:c1:4"
    paused = decision(
        answer, "respondent.paused", 1, 3, respondent="r", reason="no_answer", conversation="c1"
    )
    events = [*TWO, entry(4, "conversation.started", 4, conversation="c2")]
    log = [
        assigned("e3", "c1"),
        assigned(answer, "c1", at_s=3, respondent="r2", why="no_answer"),
        paused,
        assigned("e4", "c2"),  # r's slot is free: c1 moved to r2
    ]
    assert checks.overbooking(events, log).summary() == CLEAN
    # Not moved away from r, c1 and c2 would overbook r
    stays = [log[0], log[3]]
    assert len(checks.overbooking(events, stays).overbooked) == 1
    # A missed deadline takes it from whoever held it, to someone else
    back = [log[0], assigned(answer, "c1", at_s=3, why="no_answer")]
    assert len(checks.overbooking(events, back).violations) == 1
    unheld = [assigned(answer, "c1", at_s=3, respondent="r2", why="no_answer")]
    assert len(checks.overbooking(events, unheld).violations) == 1
    # A pause names the respondent who just missed that conversation's deadline
    stray = decision("e4", "respondent.paused", 0, respondent="r2", conversation="c1")
    assert len(checks.overbooking(events, [*log[:2], stray]).violations) == 1


def test_a_missed_answer_deadline_queued_frees_the_slot() -> None:
    answer = "timer:answer:c1:4"
    events = [*SETUP, entry(2, "conversation.started", 1, conversation="c1")]
    events.append(entry(3, "conversation.started", 5, conversation="c2"))
    log = [assigned("e2", "c1"), queued(answer, "c1", "no_answer", at_s=4), assigned("e3", "c2")]
    assert checks.overbooking(events, log).summary() == CLEAN


def test_overflow_moves_and_unrouted_conversations_hold_no_slot() -> None:
    overflow = "timer:overflow:c1:4"
    events = [*TWO, entry(4, "conversation.started", 9, conversation="c2")]
    unrouted = {"conversation": "c1", "reason": "...", "code": "wait_timeout"}
    log = [
        queued("e3", "c1", "new"),
        queued(overflow, "c1", "overflow", at_s=2),
        decision("timer:overflow:c1:5", "conversation.unrouted", 0, 4, **unrouted),
        assigned("e4", "c2"),
    ]
    assert checks.overbooking(events, log).summary() == CLEAN
    moved = [queued("e3", "c1", "new"), assigned(overflow, "c1", at_s=2, why="overflow")]
    assert checks.overbooking(events, moved).summary() == CLEAN
    # An overflow move or an unrouted decision never finds it in a slot
    held = assigned("e3", "c1")
    assert len(checks.overbooking(events, [held, moved[1]]).violations) == 1
    assert len(checks.overbooking(events, [held, log[2]]).violations) == 1


def test_a_reprioritized_queued_conversation_is_announced_again_in_its_queue() -> None:
    events = [
        *SETUP,
        entry(2, "conversation.started", 1, conversation="c1"),
        entry(3, "conversation.prioritized", 2, conversation="c1", priority=20),
    ]
    again = queued("e3", "c1", "no_answer")  # the cause it joined with, announced again
    assert checks.overbooking(events, [queued("e2", "c1", "new"), again]).summary() == CLEAN
    # Announced again, it is in its queue, not in a slot
    assert len(checks.overbooking(events, [assigned("e2", "c1"), again]).violations) == 1
    # Queued from a slot: by a missed deadline or a reassignment only
    moved = [*events, entry(4, "message.posted", 3, conversation="c1")]
    wrong = queued("e4", "c1", "new")
    assert len(checks.overbooking(moved, [assigned("e2", "c1"), wrong]).violations) == 1
    away = queued("timer:reassign:c1:5", "c1", "reassign", at_s=3)
    assert checks.overbooking(moved, [assigned("e2", "c1"), away]).summary() == CLEAN


def test_a_decision_type_or_cause_the_replay_does_not_know_is_a_violation() -> None:
    events = [*SETUP, entry(2, "conversation.started", 1, conversation="c1")]
    novel = decision("e2", "conversation.teleported", conversation="c1")
    assert len(checks.overbooking(events, [novel]).violations) == 1
    odd = assigned("e2", "c1", why="magic")
    assert len(checks.overbooking(events, [odd]).violations) == 1
    woken = decision("e2", "conversation.woken", conversation="c1", cause="timer")
    assert checks.overbooking(events, [woken]).summary() == CLEAN


def test_a_hold_or_a_snooze_frees_only_the_slot_of_whoever_may_hold_it() -> None:
    events = [
        *TWO,
        entry(4, "conversation.snoozed", 2, conversation="c1", respondent="r"),
        entry(5, "message.posted", 3, conversation="c1", author="visitor"),
    ]
    snoozed = decision("e4", "conversation.snoozed", conversation="c1", respondent="r")
    pending = decision("e5", "conversation.pending", 1, conversation="c1", respondent="r")
    woken = decision("e5", "conversation.woken", conversation="c1", cause="visitor_reply")
    log = [assigned("e3", "c1"), snoozed, woken, pending]
    assert checks.overbooking(events, log).summary() == CLEAN
    # Snoozed by someone who does not hold it, or held for someone while still in a slot
    other = snoozed | {"data": snoozed["data"] | {"respondent": "r2"}}
    assert len(checks.overbooking(events, [assigned("e3", "c1"), other]).violations) == 1
    assert len(checks.overbooking(events, [assigned("e3", "c1"), pending]).violations) == 1


def test_decisions_lost_doubled_redelivered_and_out_of_order() -> None:
    oracle = [assigned("e1", "c1"), assigned("e2", "c2"), decision("e3", "event.rejected")]
    redelivered = [oracle[0], oracle[0], oracle[1], oracle[2]]
    found = checks.decisions(redelivered, oracle)
    assert found.summary() == {"lost": 0, "duplicated": 0, "overbooked": 0, "violations": 0}
    assert found.redelivered == 1

    assert len(checks.decisions(oracle[:2], oracle).lost) == 1
    doubled = [*oracle, assigned("e2", "c2", n=7)]
    assert len(checks.decisions(doubled, oracle).duplicated) == 1
    swapped = [oracle[1], oracle[0], oracle[2]]
    assert len(checks.decisions(swapped, oracle).violations) == 1
    # A rejection is stamped when it is decided: its time may differ, nothing else
    stamped = [*oracle[:2], oracle[2] | {"time": "2030-01-01T00:00:00Z"}]
    assert checks.decisions(stamped, oracle).violations == []
    changed = [*oracle[:2], oracle[2] | {"data": {"reason": "other"}}]
    assert len(checks.decisions(changed, oracle).violations) == 1


def snapshot(**tables: dict[tuple[Any, ...], dict[str, Any]]) -> checks.Snapshot:
    empty: checks.Snapshot = {t.name: {} for t in checks.STATE_TABLES}
    return empty | tables


def conversation(state: str, respondent: str | None = None, **v2: Any) -> dict[str, Any]:
    marks = {
        "target": None,
        "rule_targets": None,
        "priority": 0,
        "unrouted_code": None,
        "group_id": "g",
        "close_cause": None,
    }
    return {"state": state, "respondent": respondent} | marks | v2


def timer(kind: str, respondent: str | None = None, due: datetime = T0) -> dict[str, Any]:
    return {
        "kind": kind,
        "conversation_id": "c1",
        "respondent": respondent,
        "state": "armed",
        "due": due,
    }


LATER = T0 + timedelta(hours=1)  # due after the horizon
ENTRY = {"group_id": "g", "priority": 0}


def test_every_open_conversation_is_in_exactly_one_place() -> None:
    waiting = conversation("queued")
    queued = snapshot(conversations={("t", "c1"): waiting}, queue_entries={("t", "c1"): ENTRY})
    assert checks.placement(queued, T0).violations == []
    assert len(checks.placement(snapshot(conversations={("t", "c1"): waiting}), T0).violations) == 1
    held = snapshot(
        conversations={("t", "c1"): conversation("assigned", "r")},
        respondents={("t", "r"): {"load": 2, "status": "unavailable"}},
        timers={("t", "w"): timer("reassign", "r")},
    )
    assert len(checks.placement(held, T0).violations) == 2  # load 2 for one; a timer not fired


def test_the_routing_policys_marks_fit_the_conversations_state() -> None:
    def found(c: dict[str, Any], entry: dict[str, Any] | None = None) -> list[str]:
        entries = {} if entry is None else {("t", "c1"): entry}
        seen = snapshot(conversations={("t", "c1"): c}, queue_entries=entries)
        return checks.placement(seen, T0).violations

    targets = [{"group": "g0", "wait_s": 2}, {"group": "g", "wait_s": None}]
    waits = conversation("queued", rule_targets=targets, target=1, priority=20)
    assert found(waits, ENTRY | {"priority": 20}) == []
    assert len(found(waits, ENTRY)) == 1  # the entry lost the conversation's new priority
    assert len(found(waits | {"target": 0}, ENTRY | {"priority": 20})) == 1  # not g0's queue
    assert len(found(conversation("assigned", "r", rule_targets=targets, target=1))) == 1
    assert found(conversation("unrouted", unrouted_code="no_rule", group_id=None)) == []
    assert found(conversation("unrouted", unrouted_code="wait_timeout")) == []
    assert len(found(conversation("unrouted", unrouted_code="closed", group_id=None))) == 1
    assert len(found(conversation("unrouted"))) == 1  # no code
    assert found(conversation("closed", close_cause="idle")) == []
    assert len(found(conversation("queued", close_cause="idle"), ENTRY)) == 1


def test_each_armed_timer_belongs_to_its_conversations_place() -> None:
    def found(
        c: dict[str, Any], t: dict[str, Any], available: bool = True, **more: Any
    ) -> list[str]:
        status = "available" if available else "unavailable"
        load = int(c["state"] == "assigned")
        seen = snapshot(
            conversations={("t", "c1"): c},
            respondents={("t", "r"): {"load": load, "status": status}},
            timers={("t", "x"): t},
            **more,
        )
        return checks.placement(seen, T0).violations

    unanswered = {("t", "c1", 1): {"respondent": "r", "ended_at": None, "answered": False}}
    answer = timer("answer", "r", LATER)
    assert found(conversation("assigned", "r"), answer, contacts=unanswered) == []
    answered = {("t", "c1", 1): unanswered[("t", "c1", 1)] | {"answered": True}}
    assert len(found(conversation("assigned", "r"), answer, contacts=answered)) == 1
    assert len(found(conversation("closed"), answer)) == 1  # a close cancels every timer
    reassign = timer("reassign", "r", LATER)
    assert found(conversation("assigned", "r"), reassign, available=False) == []
    assert len(found(conversation("assigned", "r"), reassign)) == 1  # back: cancelled
    hold = {("t", "c1"): {"respondent": "r"}}
    assert found(conversation("pending", "r"), reassign, pending_holds=hold) == []
    idle = timer("idle", None, LATER)
    on = {("t",): {"close_after_idle_s": 10}}
    assert found(conversation("unrouted", unrouted_code="closed"), idle, tenants=on) == []
    assert len(found(conversation("snoozed", "r"), idle, tenants=on)) == 1
    off = {("t",): {"close_after_idle_s": None}}
    assert len(found(conversation("unrouted", unrouted_code="closed"), idle, tenants=off)) == 1
    overflow = timer("overflow", None, LATER)
    waits = conversation("queued", rule_targets=[{"group": "g"}], target=0)
    assert found(waits, overflow, queue_entries={("t", "c1"): ENTRY}) == []
    transferred = conversation("queued")  # queued by a transfer: no overflow
    assert len(found(transferred, overflow, queue_entries={("t", "c1"): ENTRY})) == 1
    wake = timer("wake", "r", LATER)
    assert found(conversation("snoozed", "r"), wake) == []
    assert len(found(conversation("assigned", "r"), wake)) == 1


def test_statistics_equal_but_for_the_order_of_a_float_sum() -> None:
    row = {"tenant": "t", "respondent": "r", "contacts": 4, "first_response_avg_s": 2.2700985}
    assert (
        checks.statistics([row], [row | {"first_response_avg_s": 2.2700984999999997}]).violations
        == []
    )
    assert len(checks.statistics([row], [row | {"contacts": 5}]).violations) == 1
    assert len(checks.statistics([row], []).violations) == 1
