"""Routing policy v2 (docs/semantics.md), through ``lifecycle.handle`` and ``fire_due`` on the
in-memory view: targets and overflow, hours and queue caps, priority, sticky respondents,
the answer deadline and idle close."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from chatroute.domain.commands import (
    ConversationClosed,
    ConversationPrioritized,
    ConversationSnoozed,
    ConversationStarted,
    ConversationTransferred,
    GroupUpdated,
    MessagePosted,
    RespondentUpdated,
    RuleDeleted,
    RuleUpdated,
    TenantUpdated,
)
from chatroute.domain.model import State, TimerKind
from tests.unit.test_lifecycle import HOUR, Desk, assigned, queued, rejected

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALWAYS = {"timezone": "UTC", "weekly": {day: [["00:00", "24:00"]] for day in DAYS}}
NEVER = {"timezone": "UTC", "weekly": {}}


def unrouted(c: str, code: str) -> Any:
    from chatroute.domain.policy import REASONS

    data = {"conversation": c, "reason": REASONS[code], "code": code}
    return ("conversation.unrouted", data)


def as_pairs(decisions: list[Any]) -> list[Any]:
    return [(d.type, d.data) for d in decisions]


class Policy(Desk):
    """A desk whose rule ``all`` has targets g1 (wait 60 s), g2 (wait 60 s), g3."""

    def __init__(self, *targets: dict[str, Any]) -> None:
        super().__init__()
        self.when(RuleDeleted("all"))
        chain = list(targets) or [
            {"group": "g1", "wait_s": 60},
            {"group": "g2", "wait_s": 60},
            {"group": "g3"},
        ]
        self.when(RuleUpdated("all", priority=1, targets=chain))

    def start_with(self, cid: str, priority: int = 0, visitor: str | None = None) -> Any:
        return self.when(ConversationStarted(cid, visitor or "v-" + cid, {}, priority))

    def seconds(self, s: float) -> Any:
        return self.advance(s / 60)

    def queue(self, group: str) -> list[str]:
        entries = [e for e in self.view.queue.values() if e.group == group]
        return [e.conversation_id for e in sorted(entries, key=lambda e: e.order_key())]


# overflow


def test_a_conversation_overflows_to_a_free_respondent_of_the_next_target() -> None:
    desk = Policy()
    desk.respondent("r2", "g2")
    assert desk.start_with("c1") == [queued("c1", "g1", 1)]
    assert desk.seconds(59) == []
    assert desk.seconds(1) == [assigned("c1", "r2", "g2", "overflow")]
    assert desk.conversation("c1").overflows == [["g1", "g2"]]
    assert desk.queue("g1") == []


def test_without_a_free_respondent_it_queues_at_the_next_target_keeping_its_age() -> None:
    desk = Policy()
    desk.start_with("c1")
    desk.seconds(30)
    # c2 waits in g2 already, joined later than c1 joined g1.
    desk.when(RuleUpdated("direct", "g2", 0, [{"attribute": "to", "op": "eq", "value": "g2"}]))
    desk.when(ConversationStarted("c2", "v2", {"to": "g2"}))
    assert as_pairs(desk.seconds(30)) == as_pairs([queued("c1", "g2", 1, "overflow")])
    assert desk.queue("g2") == ["c1", "c2"]


def test_a_chain_of_three_skips_a_closed_middle_target() -> None:
    desk = Policy()
    desk.when(GroupUpdated("g2", hours=NEVER))
    desk.start_with("c1")
    assert as_pairs(desk.seconds(60)) == as_pairs([queued("c1", "g3", 1, "overflow")])
    assert desk.conversation("c1").overflows == [["g1", "g3"]]


def test_after_the_last_target_with_a_wait_it_is_unrouted_by_wait_timeout() -> None:
    desk = Policy({"group": "g1", "wait_s": 60}, {"group": "g2", "wait_s": 30})
    desk.start_with("c1")
    desk.seconds(60)
    assert as_pairs(desk.seconds(30)) == [unrouted("c1", "wait_timeout")]
    conversation = desk.conversation("c1")
    assert (conversation.state, conversation.group) == (State.UNROUTED, "g2")
    assert conversation.overflows == [["g1", "g2"], ["g2", None]]
    assert desk.armed("c1") == []


def test_the_wait_timer_is_cancelled_by_a_close() -> None:
    desk = Policy()
    desk.start_with("c1")
    desk.when(ConversationClosed("c1"))
    assert desk.armed("c1") == []
    assert desk.seconds(120) == []


def test_the_wait_timer_is_cancelled_when_it_leaves_the_queue_and_a_transfer_never_overflows() -> (
    None
):
    desk = Policy()
    desk.start_with("c1")
    desk.respondent("r1", "g1")  # takes c1 from the queue
    assert desk.conversation("c1").respondent == "r1"
    assert desk.armed("c1") == []
    desk.respondent("r2", "g2", slots=0)
    desk.when(ConversationTransferred("c1", "r1", to_group="g2"))
    assert desk.queue("g2") == ["c1"]
    assert desk.seconds(600) == []  # queued by a transfer: it waits there
    assert desk.queue("g2") == ["c1"]


def test_overflow_follows_the_targets_its_rule_had_when_it_was_routed() -> None:
    desk = Policy()
    desk.start_with("c1")
    desk.when(RuleUpdated("all", priority=1, targets=[{"group": "g1", "wait_s": 60}]))
    desk.respondent("r2", "g2")
    assert desk.seconds(60) == [assigned("c1", "r2", "g2", "overflow")]


# hours and queue caps


def test_a_new_conversation_skips_a_closed_target_and_all_closed_is_unrouted_closed() -> None:
    desk = Policy({"group": "g1"}, {"group": "g2"})
    desk.when(GroupUpdated("g1", hours=NEVER))
    assert as_pairs(desk.start_with("c1")) == as_pairs([queued("c1", "g2", 1)])
    desk.when(GroupUpdated("g2", hours=NEVER))
    assert as_pairs(desk.start_with("c2")) == [unrouted("c2", "closed")]
    assert desk.conversation("c2").group == "g1"


@pytest.mark.parametrize("cap", [0, 2])
def test_max_queue_skips_a_full_queue_then_unrouted_queue_full(cap: int) -> None:
    desk = Policy({"group": "g1"})
    desk.when(GroupUpdated("g1", max_queue=cap))
    outcomes = [as_pairs(desk.start_with(f"c{n}"))[0][0] for n in range(cap + 1)]
    assert outcomes == ["conversation.queued"] * cap + ["conversation.unrouted"]
    assert as_pairs(desk.start_with("late")) == [unrouted("late", "queue_full")]


def test_max_queue_zero_still_assigns_a_free_respondent() -> None:
    desk = Policy({"group": "g1"})
    desk.when(GroupUpdated("g1", max_queue=0))
    desk.respondent("r1", "g1")
    assert desk.start_with("c1") == [assigned("c1", "r1", "g1", "new")]


def test_a_closed_group_and_a_full_one_give_queue_full() -> None:
    desk = Policy({"group": "g1"}, {"group": "g2"})
    desk.when(GroupUpdated("g1", hours=NEVER))
    desk.when(GroupUpdated("g2", max_queue=0))
    assert as_pairs(desk.start_with("c1")) == [unrouted("c1", "queue_full")]


def test_hours_and_caps_do_not_gate_a_transfer_to_a_group() -> None:
    desk = Policy({"group": "g1"})
    desk.respondent("r1", "g1")
    desk.start_with("c1")
    desk.when(GroupUpdated("g2", hours=NEVER, max_queue=0))
    moved = desk.when(ConversationTransferred("c1", "r1", to_group="g2"))
    assert moved == [queued("c1", "g2", 1, "transfer")]


def test_group_updated_keeps_left_out_fields_and_null_resets() -> None:
    desk = Policy()
    desk.when(GroupUpdated("g1", hours=ALWAYS, max_queue=3))
    desk.when(GroupUpdated("g1", max_queue=None))
    group = desk.view.groups["g1"]
    assert (group.hours is not None, group.max_queue) == (True, None)
    desk.when(GroupUpdated("g1", hours=None))
    assert desk.view.groups["g1"].hours is None


def test_bad_hours_are_rejected_and_the_group_keeps_its_hours() -> None:
    desk = Policy()
    desk.when(GroupUpdated("g1", hours=ALWAYS))
    reason = rejected(desk, GroupUpdated("g1", hours={"timezone": "Mars/Olympus"}))
    assert "unknown timezone" in reason
    assert desk.view.groups["g1"].hours is not None


# priority


def test_queue_order_is_priority_then_joining_time_then_order() -> None:
    desk = Policy({"group": "g1"})
    desk.start_with("low", priority=-5)
    desk.start_with("a")
    desk.start_with("vip", priority=10)
    desk.start_with("b")
    assert desk.queue("g1") == ["vip", "a", "b", "low"]
    assert [desk.view.queue_position(desk.view.queue[c]) for c in ("vip", "low")] == [1, 4]
    desk.when(RespondentUpdated("r1", ["g1"], 4))
    served = desk.status("r1", True)
    assert [d.data["conversation"] for d in served] == ["vip", "a", "b", "low"]


def test_prioritizing_a_queued_conversation_moves_it_and_says_so() -> None:
    desk = Policy({"group": "g1"})
    for cid in ("a", "b", "c"):
        desk.start_with(cid)
    assert desk.when(ConversationPrioritized("c", 1)) == [queued("c", "g1", 1)]
    assert desk.when(ConversationPrioritized("c", 1)) == [queued("c", "g1", 1)]
    assert desk.queue("g1") == ["c", "a", "b"]


def test_prioritizing_a_conversation_that_is_not_queued_decides_nothing() -> None:
    desk = Policy({"group": "g1"})
    desk.respondent("r1", "g1")
    desk.start_with("c1")
    assert desk.when(ConversationPrioritized("c1", 50)) == []
    assert desk.conversation("c1").priority == 50
    desk.when(ConversationClosed("c1"))
    assert "closed" in rejected(desk, ConversationPrioritized("c1", 1))


def test_priority_stays_with_the_conversation_into_the_next_queue() -> None:
    desk = Policy()
    desk.when(RuleUpdated("direct", "g2", 0, [{"attribute": "to", "op": "eq", "value": "g2"}]))
    desk.when(ConversationStarted("other", "v", {"to": "g2"}))
    desk.start_with("vip", priority=3)
    desk.seconds(60)
    assert desk.queue("g2") == ["vip", "other"]


# sticky


def test_sticky_marks_the_assignment_and_ignores_load() -> None:
    desk = Policy({"group": "g1"})
    desk.when(TenantUpdated(sticky_within_s=HOUR))
    desk.respondent("r1", "g1", slots=3)
    desk.respondent("r2", "g1", slots=3)
    desk.start_with("old", visitor="v")
    desk.when(MessagePosted("old", "respondent", "r1"))
    desk.start_with("x")  # r2
    desk.start_with("y")  # r1 (tie on load 1: r2 assigned later) -> r1 has 2
    desk.start_with("z")  # loads: r1 2, r2 2
    decisions = desk.start_with("new", visitor="v")
    assert decisions == [assigned("new", "r1", "g1", "new", sticky=True)]  # type: ignore[arg-type]


@pytest.mark.parametrize("case", ["full", "unavailable", "other_group", "window_over"])
def test_sticky_never_waits_for_the_previous_respondent(case: str) -> None:
    desk = Policy({"group": "g1"})
    desk.when(TenantUpdated(sticky_within_s=HOUR))
    desk.respondent("r1", "g1", slots=1)
    desk.respondent("r2", "g1", slots=2)
    desk.start_with("old", visitor="v")  # r1: never assigned, first by id
    desk.when(MessagePosted("old", "respondent", "r1"))
    if case != "full":
        desk.when(ConversationClosed("old"))
    if case == "unavailable":
        desk.status("r1", False)
    elif case == "other_group":
        desk.when(RespondentUpdated("r1", ["g2"], 1))
    elif case == "window_over":
        desk.seconds(HOUR + 1)
    decisions = desk.start_with("new", visitor="v")
    assert decisions == [assigned("new", "r2", "g1", "new")]


def test_sticky_window_is_inclusive() -> None:
    desk = Policy({"group": "g1"})
    desk.when(TenantUpdated(sticky_within_s=HOUR))
    desk.respondent("r1", "g1", slots=1)
    desk.respondent("r2", "g1", slots=1)
    desk.start_with("old", visitor="v")
    desk.when(MessagePosted("old", "respondent", "r1"))
    desk.when(ConversationClosed("old"))
    desk.start_with("other")  # r2 (never assigned)
    desk.when(ConversationClosed("other"))
    desk.seconds(HOUR)
    decisions = desk.start_with("new", visitor="v")
    assert decisions == [assigned("new", "r1", "g1", "new", sticky=True)]  # type: ignore[arg-type]


def test_sticky_applies_to_an_open_answered_contact() -> None:
    desk = Policy({"group": "g1"})
    desk.when(TenantUpdated(sticky_within_s=60))
    desk.respondent("r1", "g1", slots=2)
    desk.respondent("r2", "g1", slots=2)
    desk.start_with("old", visitor="v")
    desk.when(MessagePosted("old", "respondent", "r1"))
    desk.seconds(3 * HOUR)  # still open: the window does not apply
    decisions = desk.start_with("new", visitor="v")
    assert decisions[0].data.get("sticky") is True


# answer deadline


def deadline_desk(pause: bool = False) -> Policy:
    desk = Policy({"group": "g1"})
    desk.when(TenantUpdated(answer_within_s=120, pause_on_no_answer=pause))
    desk.respondent("r1", "g1")
    desk.respondent("r2", "g1", slots=0)
    return desk


def test_the_deadline_moves_an_unanswered_conversation_to_someone_else() -> None:
    desk = deadline_desk()
    desk.start_with("c1")
    desk.when(GroupUpdated("g1", hours=NEVER, max_queue=0))  # no gate for a no-answer move
    assert desk.seconds(120) == [queued("c1", "g1", 1, "no_answer")]
    assert desk.contacts("c1") == [("r1", "no_answer")]
    desk.respondent("r2", "g1", slots=1)
    assert desk.conversation("c1").respondent == "r2"


def test_the_respondent_who_missed_it_is_not_served_it_again_until_someone_else_held_it() -> None:
    desk = deadline_desk()
    desk.start_with("c1")
    desk.seconds(120)
    assert desk.conversation("c1").state == State.QUEUED  # r1 is free, but excluded
    assert desk.load("r1") == 0


def test_a_respondent_message_cancels_the_deadline() -> None:
    desk = deadline_desk()
    desk.start_with("c1")
    desk.when(MessagePosted("c1", "visitor"))
    assert desk.armed("c1") == [TimerKind.ANSWER]
    desk.when(MessagePosted("c1", "respondent", "r1"))
    assert desk.armed("c1") == []
    assert desk.seconds(600) == []


def test_the_deadline_pauses_across_a_snooze_and_restarts_on_the_wake() -> None:
    desk = deadline_desk()
    desk.start_with("c1")
    desk.seconds(100)
    desk.when(ConversationSnoozed("c1", "r1", desk.now + timedelta(seconds=600)))
    assert desk.armed("c1") == [TimerKind.WAKE]
    desk.seconds(600)  # woken back to r1: a new deadline from the wake
    assert desk.conversation("c1").respondent == "r1"
    assert desk.seconds(119) == []
    assert desk.seconds(1) == [queued("c1", "g1", 1, "no_answer")]


def test_the_deadline_restarts_for_the_recipient_of_a_transfer() -> None:
    desk = deadline_desk()
    desk.respondent("r2", "g1", slots=1)
    desk.start_with("c1")  # r1
    desk.seconds(100)
    desk.when(ConversationTransferred("c1", "r1", to_respondent="r2"))
    assert desk.seconds(100) == []
    decisions = desk.seconds(20)
    assert decisions[0] == assigned("c1", "r1", "g1", "no_answer")


def test_pause_on_no_answer_pauses_and_reassigns_their_other_conversations_later() -> None:
    desk = deadline_desk(pause=True)
    desk.respondent("r1", "g1", slots=2)
    desk.start_with("c1")
    desk.start_with("c2")
    desk.when(MessagePosted("c2", "respondent", "r1"))
    decisions = desk.seconds(120)
    assert decisions == [
        queued("c1", "g1", 1, "no_answer"),
        _paused("r1", "c1"),
    ]
    assert desk.view.respondents["r1"].status == "unavailable"
    assert desk.armed("c2") == [TimerKind.REASSIGN]
    desk.respondent("r2", "g1", slots=2)  # c1 from the queue
    desk.when(MessagePosted("c1", "respondent", "r2"))
    moved = desk.advance(60)
    assert moved == [assigned("c2", "r2", "g1", "reassign")]


def test_a_respondent_already_unavailable_is_not_paused_again() -> None:
    desk = deadline_desk(pause=True)
    desk.start_with("c1")
    desk.status("r1", False)
    decisions = desk.seconds(120)
    assert [d.type for d in decisions] == ["conversation.queued"]


def test_turning_the_deadline_off_cancels_running_ones() -> None:
    desk = deadline_desk()
    desk.start_with("c1")
    desk.when(TenantUpdated(answer_within_s=None))
    assert desk.armed("c1") == []


def _paused(respondent: str, conversation: str) -> Any:
    from chatroute.domain.model import Decision

    data = {"respondent": respondent, "reason": "no_answer", "conversation": conversation}
    return Decision("respondent.paused", data)


# idle close


def idle_desk() -> Policy:
    desk = Policy({"group": "g1"})
    desk.when(TenantUpdated(close_after_idle_s=600))
    return desk


def closed_idle(cid: str) -> Any:
    from chatroute.domain.model import Decision

    return Decision("conversation.closed", {"conversation": cid, "cause": "idle"})


@pytest.mark.parametrize("held", [False, True])
def test_idle_close_closes_queued_and_pending_conversations(held: bool) -> None:
    desk = idle_desk()
    desk.respondent("r1", "g1", slots=1)
    desk.start_with("c1")
    if held:
        desk.respondent("r2", "g1", slots=0)
        desk.when(ConversationTransferred("c1", "r1", to_respondent="r2"))
        assert desk.conversation("c1").state == State.PENDING
    else:
        desk.start_with("c2")  # queued
    cid = "c1" if held else "c2"
    desk.seconds(599)
    decisions = desk.seconds(1)
    assert closed_idle(cid) in decisions
    assert desk.conversation(cid).state == State.CLOSED
    assert desk.armed(cid) == []


def test_a_message_moves_the_idle_close_and_a_frontend_close_after_it_is_not_rejected() -> None:
    desk = idle_desk()
    desk.respondent("r1", "g1")
    desk.start_with("c1")
    desk.seconds(500)
    desk.when(MessagePosted("c1", "visitor"))
    assert desk.seconds(100) == []
    assert desk.seconds(500) == [closed_idle("c1")]
    assert desk.load("r1") == 0
    assert desk.contacts("c1") == [("r1", "idle")]
    assert desk.when(ConversationClosed("c1")) == []


def test_a_snoozed_conversation_is_not_closed_for_idleness() -> None:
    desk = idle_desk()
    desk.respondent("r1", "g1")
    desk.start_with("c1")
    desk.when(ConversationSnoozed("c1", "r1"))
    assert desk.seconds(6000) == []
    desk.when(MessagePosted("c1", "visitor"))  # wakes it: idleness counts from here
    assert desk.seconds(599) == []
    assert desk.seconds(1) == [closed_idle("c1")]


def test_turning_idle_close_on_counts_from_the_change() -> None:
    desk = Policy({"group": "g1"})
    desk.start_with("c1")
    desk.seconds(5000)
    desk.when(TenantUpdated(close_after_idle_s=600))
    assert desk.seconds(599) == []
    assert desk.seconds(1) == [closed_idle("c1")]


def test_turning_idle_close_off_leaves_no_timer() -> None:
    desk = idle_desk()
    desk.start_with("c1")
    desk.when(TenantUpdated(close_after_idle_s=None))
    assert desk.armed("c1") == []


# v1 tenants see no change


def test_a_v1_rule_reads_back_as_it_was_stored() -> None:
    desk = Desk()
    rule = desk.view.rules_by_id["all"]
    assert (rule.group, rule.targets) == ("g1", None)


def test_rule_needs_exactly_one_of_group_and_targets() -> None:
    desk = Desk()
    reason = rejected(desk, RuleUpdated("x", "g1", 1, targets=[{"group": "g2"}]))
    assert "exactly one" in reason
