"""docs/semantics.md, "New conversation", "Choosing a respondent", "Serving a free slot"."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chatroute.domain import routing
from chatroute.domain.memory import InMemoryTenantView
from chatroute.domain.model import (
    AVAILABLE,
    UNAVAILABLE,
    Conversation,
    Decision,
    PendingHold,
    QueueEntry,
    Respondent,
    Rule,
    State,
    TimerKind,
)

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
ATTRS = {"url": "https://shop-1.example/phones/x", "language": "fr"}


def rule(rule_id: str, group: str, priority: int, *conditions: dict[str, Any]) -> Rule:
    return Rule("t", rule_id, group, priority, list(conditions))


def cond(attribute: str, op: str, value: Any) -> dict[str, Any]:
    return {"attribute": attribute, "op": op, "value": value}


def person(
    rid: str,
    load: int = 0,
    last: int | None = None,
    *,
    groups: tuple[str, ...] = ("g1",),
    slots: int = 2,
    status: str = AVAILABLE,
) -> Respondent:
    """A respondent; ``last`` is their last assignment, in minutes after T0."""
    last_at = None if last is None else T0 + timedelta(minutes=last)
    return Respondent("t", rid, list(groups), slots, status, load=load, last_assigned_at=last_at)


def tenant(*respondents: Respondent) -> InMemoryTenantView:
    view = InMemoryTenantView("t")
    for respondent in respondents:
        view.add_respondent(respondent)
    return view


def started(view: InMemoryTenantView, cid: str) -> Conversation:
    conversation = Conversation("t", cid, "v", dict(ATTRS), started_at=T0)
    view.add_conversation(conversation)
    return conversation


def queued(view: InMemoryTenantView, cid: str, group: str) -> None:
    started(view, cid)
    routing.route_in_group(view, view.conversations[cid], group, T0, "new")


# rules


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (cond("language", "eq", "fr"), True),
        (cond("language", "eq", "FR"), False),
        (cond("language", "in", ["de", "fr"]), True),
        (cond("language", "in", ["de", "en"]), False),
        (cond("url", "prefix", "https://shop-1"), True),
        (cond("url", "prefix", "phones"), False),
        (cond("url", "contains", "/phones/"), True),
        (cond("url", "contains", "/PHONES/"), False),
        (cond("page", "eq", "x"), False),
        (cond("language", "regex", "fr"), False),
    ],
)
def test_each_condition_op(condition: dict[str, Any], expected: bool) -> None:
    # Given a rule with one condition / When matched against the attributes / Then:
    assert routing.matches(rule("r", "g", 1, condition), ATTRS) is expected


def test_every_condition_must_hold_and_no_condition_matches_all() -> None:
    both = rule("r", "g", 1, cond("language", "eq", "fr"), cond("url", "contains", "tv"))
    assert not routing.matches(both, ATTRS)
    assert routing.matches(rule("r", "g", 1), {})


@pytest.mark.parametrize(
    ("rules", "group"),
    [
        ([rule("a", "g2", 2), rule("b", "g1", 1)], "g1"),
        ([rule("b", "g2", 1), rule("a", "g1", 1)], "g1"),
        ([rule("a", "g1", 1, cond("language", "eq", "de")), rule("b", "g2", 5)], "g2"),
        ([rule("a", "g1", 1, cond("language", "eq", "de"))], None),
        ([], None),
    ],
    ids=["priority", "rule-id-tie", "first-match", "no-match", "no-rules"],
)
def test_route_group_by_priority_then_rule_id(rules: list[Rule], group: str | None) -> None:
    assert routing.route_group(rules, ATTRS) == group


# choosing


@pytest.mark.parametrize(
    ("candidates", "winner"),
    [
        ([person("a", load=1), person("b", load=0)], "b"),
        ([person("a", last=5), person("b")], "b"),
        ([person("a", last=5), person("b", last=3)], "b"),
        ([person("b", last=3), person("a", last=3)], "a"),
        ([person("b"), person("a")], "a"),
        ([person("a", load=0, last=9), person("b", load=1)], "a"),
    ],
    ids=["lowest-load", "never-assigned-first", "oldest-last", "id", "id-never", "load-first"],
)
def test_choice_tie_breaks(candidates: list[Respondent], winner: str) -> None:
    assert routing.ranked(candidates)[0].respondent_id == winner


def test_ranked_gives_the_best_few_in_choice_order_and_nobody_from_nobody() -> None:
    team = [person("d", load=1), person("c", last=2), person("b", last=1), person("a")]
    assert [r.respondent_id for r in routing.ranked(team)] == ["a", "b", "c"]
    assert [r.respondent_id for r in routing.ranked(team, 5)] == ["a", "b", "c", "d"]
    assert routing.ranked([]) == []


@pytest.mark.parametrize(
    ("respondent", "free"),
    [
        (person("a", load=1, slots=2), True),
        (person("a", load=2, slots=2), False),
        (person("a", load=0, slots=0), False),
        (person("a", status=UNAVAILABLE), False),
    ],
)
def test_free_means_available_with_load_below_slots(respondent: Respondent, free: bool) -> None:
    assert routing.is_free(respondent) is free


# route_in_group


def test_route_in_group_assigns_the_best_free_member() -> None:
    # Given a busier and an idle member
    view = tenant(person("a", load=1), person("b"), person("c", groups=("g2",)))
    conversation = started(view, "c1")
    # When routed
    decisions = routing.route_in_group(view, conversation, "g1", T0, "new")
    # Then the idle one gets it, with load, last assignment and a first contact
    data = {"conversation": "c1", "respondent": "b", "group": "g1", "cause": "new"}
    shown = [
        {"respondent": "b", "load": 0, "slots": 2, "last_assigned_at": None},
        {"respondent": "a", "load": 1, "slots": 2, "last_assigned_at": None},
    ]
    why = {"rule": None, "target": None, "skipped": [], "candidates": shown, "eligible": 2}
    why["ineligible"] = {"excluded": 0, "unavailable": 0, "full": 0}
    assert decisions == [Decision("conversation.assigned", data | {"explain": why})]
    b = view.respondents["b"]
    assert (b.load, b.last_assigned_at) == (1, T0)
    assert (conversation.state, conversation.respondent, conversation.contacts) == (
        State.ASSIGNED,
        "b",
        1,
    )
    assert [c.respondent for c in view.contacts("c1")] == ["b"]


def test_route_in_group_queues_with_positions_when_nobody_is_free() -> None:
    view = tenant(person("a", slots=0), person("b", status=UNAVAILABLE))
    positions = []
    for cid in ("c1", "c2", "c3"):
        decisions = routing.route_in_group(view, started(view, cid), "g1", T0, "new")
        positions.append(decisions[0].data["position"])
    assert positions == [1, 2, 3]
    assert view.conversations["c1"].state == State.QUEUED
    assert view.queue_entry("c1") == QueueEntry("t", "c1", "g1", 1, T0, joined_at=T0)


@pytest.mark.parametrize(
    ("free", "prefer_not", "exclude", "winner"),
    [
        (["a", "b"], "a", None, "b"),
        (["a"], "a", None, "a"),
        (["a", "b"], None, "a", "b"),
        (["a"], None, "a", None),
    ],
    ids=["prefer-other", "holder-when-alone", "exclude", "exclude-alone-queues"],
)
def test_prefer_not_and_exclude(
    free: list[str], prefer_not: str | None, exclude: str | None, winner: str | None
) -> None:
    view = tenant(*(person(rid, last=0 if rid == "a" else 1) for rid in free))
    conversation = started(view, "c1")
    routing.route_in_group(view, conversation, "g1", T0, "reassign", prefer_not, exclude=exclude)
    assert conversation.respondent == winner


def test_transfer_assignment_carries_comment_and_from() -> None:
    view = tenant(person("b"))
    conversation = started(view, "c1")
    decision = routing.assign(
        view,
        conversation,
        view.respondents["b"],
        "g1",
        T0,
        "transfer",
        comment="x",
        from_respondent="a",
        why={"made": "by the caller"},
    )
    assert decision.data == {
        "conversation": "c1",
        "respondent": "b",
        "group": "g1",
        "cause": "transfer",
        "comment": "x",
        "from_respondent": "a",
        "explain": {"made": "by the caller"},
    }


# serving


def test_serve_takes_the_earliest_queued_across_groups_while_slots_last() -> None:
    # Given three queued conversations in two groups and a busy two-group respondent
    view = tenant(person("a", groups=("g1", "g2"), status=UNAVAILABLE))
    queued(view, "c1", "g2")
    queued(view, "c2", "g1")
    queued(view, "c3", "g2")
    view.respondents["a"].status = AVAILABLE
    # When served
    decisions = routing.serve(view, "a", T0)
    # Then FIFO across their groups, two slots only, each in its queue's group
    assert [(d.data["conversation"], d.data["group"], d.data["cause"]) for d in decisions] == [
        ("c1", "g2", "queue"),
        ("c2", "g1", "queue"),
    ]
    assert list(view.queue) == ["c3"]


def test_serve_delivers_holds_oldest_first_before_the_queue() -> None:
    view = tenant(person("a", slots=2))
    busy = view.respondents["a"]
    busy.slots = 0
    queued(view, "c1", "g1")
    for cid in ("c3", "c2"):
        conversation = started(view, cid)
        routing.hold_for(view, conversation, "a", "g1", T0, "transfer", comment=cid)
    busy.slots = 2
    decisions = routing.serve(view, "a", T0)
    assert [(d.data["conversation"], d.data["cause"]) for d in decisions] == [
        ("c3", "transfer"),
        ("c2", "transfer"),
    ]
    assert decisions[0].data["comment"] == "c3"
    assert view.holds == {} and list(view.queue) == ["c1"]
    assert all(not view.armed_timers(cid) for cid in ("c2", "c3"))


@pytest.mark.parametrize("status", [AVAILABLE, UNAVAILABLE])
def test_serve_does_nothing_without_a_free_slot(status: str) -> None:
    view = tenant(person("a", load=2, slots=2, status=status), person("b", status=UNAVAILABLE))
    queued(view, "c1", "g1")
    assert routing.serve(view, "a", T0) == []
    assert routing.serve(view, "b", T0) == []
    assert routing.serve(view, "nobody", T0) == []


def test_hold_for_arms_a_reassignment_timer_at_reassign_at() -> None:
    view = tenant(person("a", status=UNAVAILABLE))
    decision = routing.hold_for(view, started(view, "c1"), "a", "g1", T0, "wake")
    reassign_at = T0 + timedelta(seconds=86400)
    assert decision == Decision(
        "conversation.pending",
        {"conversation": "c1", "respondent": "a", "group": "g1", "reassign_at": reassign_at},
    )
    assert view.hold("c1") == PendingHold("t", "c1", "a", "g1", 1, T0, reassign_at, "wake")
    (timer,) = view.armed_timers("c1")
    assert (timer.kind, timer.due, timer.respondent) == (TimerKind.REASSIGN, reassign_at, "a")
    assert timer.timer_id == "reassign:c1:2"
