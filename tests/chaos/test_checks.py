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


def decision(cause: str, type_: str, n: int = 0, at_s: float = 0.0, **data: Any) -> dict[str, Any]:
    time = (T0 + timedelta(seconds=at_s)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "id": f"{cause}/{n}",
        "tenant": "t",
        "causationid": cause,
        "type": type_,
        "time": time,
        "data": data,
    }


def assigned(cause: str, conversation: str, at_s: float = 0.0, n: int = 0) -> dict[str, Any]:
    return decision(
        cause, "conversation.assigned", n, at_s, conversation=conversation, respondent="r"
    )


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
    timer = [assigned("e2", "c1"), assigned("timer:x", "c2", at_s=6)]
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
        assigned("timer:x", "c2", at_s=6),
        decision("e3", "event.rejected"),
        decision("e5", "visitor.notify", conversation="c9"),
    ]
    assert checks.overbooking(events, log).overbooked == []


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


def test_every_open_conversation_is_in_exactly_one_place() -> None:
    conversation = {"state": "queued", "respondent": None}
    queued = snapshot(
        conversations={("t", "c1"): conversation},
        queue_entries={("t", "c1"): {}},
    )
    assert checks.placement(queued, T0).violations == []
    assert (
        len(checks.placement(snapshot(conversations={("t", "c1"): conversation}), T0).violations)
        == 1
    )
    held = snapshot(
        conversations={("t", "c1"): {"state": "assigned", "respondent": "r"}},
        respondents={("t", "r"): {"load": 2}},
        timers={("t", "w"): {"state": "armed", "due": T0}},
    )
    assert len(checks.placement(held, T0).violations) == 2  # load 2 for one; a timer not fired


def test_statistics_equal_but_for_the_order_of_a_float_sum() -> None:
    row = {"tenant": "t", "respondent": "r", "contacts": 4, "first_response_avg_s": 2.2700985}
    assert (
        checks.statistics([row], [row | {"first_response_avg_s": 2.2700984999999997}]).violations
        == []
    )
    assert len(checks.statistics([row], [row | {"contacts": 5}]).violations) == 1
    assert len(checks.statistics([row], []).violations) == 1
