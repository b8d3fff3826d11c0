"""docs/semantics.md, section by section, through ``lifecycle.handle`` and ``lifecycle.fire``."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chatroute.domain.commands import (
    Command,
    ConversationClosed,
    ConversationRated,
    ConversationSale,
    ConversationSnoozed,
    ConversationStarted,
    ConversationTransferred,
    MessagePosted,
    RespondentStatus,
    RespondentUpdated,
    RuleDeleted,
    RuleUpdated,
    TenantUpdated,
    VisitorPresence,
)
from chatroute.domain.lifecycle import fire, fire_due, handle
from chatroute.domain.memory import InMemoryTenantView
from chatroute.domain.model import AVAILABLE, UNAVAILABLE, Decision, State, TimerKind, TimerState
from chatroute.errors import Rejected, UnknownConversation

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
HOUR = 3600


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def assigned(c: str, r: str, g: str, cause: str, **transfer: str | None) -> Decision:
    data = {"conversation": c, "respondent": r, "group": g, "cause": cause}
    return Decision("conversation.assigned", data | transfer)


def queued(c: str, g: str, position: int, cause: str = "new") -> Decision:
    data = {"conversation": c, "group": g, "position": position, "cause": cause}
    return Decision("conversation.queued", data)


def pending(c: str, r: str, g: str, reassign_at: datetime) -> Decision:
    data = {"conversation": c, "respondent": r, "group": g, "reassign_at": reassign_at}
    return Decision("conversation.pending", data)


def woken(c: str, cause: str) -> Decision:
    return Decision("conversation.woken", {"conversation": c, "cause": cause})


def snoozed(c: str, r: str, until: datetime | None, keep: bool) -> Decision:
    data = {"conversation": c, "respondent": r, "until": until, "keep": keep}
    return Decision("conversation.snoozed", data)


class Desk:
    """A tenant, a clock and the event helpers the Given/When steps read with.

    A rule sends every conversation to g1; ``reassign_after_s`` is one hour.
    """

    def __init__(self) -> None:
        self.view = InMemoryTenantView("shop-1")
        self.now = T0
        self.when(TenantUpdated(reassign_after_s=HOUR))
        self.when(RuleUpdated("all", "g1", 10))

    def when(self, command: Command) -> list[Decision]:
        return self._placed(handle(self.view, command, self.now))

    def advance(self, minutes: float) -> list[Decision]:
        """Move the clock ``minutes`` and fire what fell due."""
        self.now += timedelta(minutes=minutes)
        return self._placed(fire_due(self.view, self.now))

    def _placed(self, decisions: list[Decision]) -> list[Decision]:
        """The decisions without their explanations, which go to ``explained`` (by index):
        these steps check where conversations go, test_explain why."""
        self.explained = [d.data.get("explain") for d in decisions]
        return [
            Decision(d.type, {k: v for k, v in d.data.items() if k != "explain"}) for d in decisions
        ]

    def respondent(self, rid: str, *groups: str, slots: int = 1, available: bool = True) -> None:
        self.when(RespondentUpdated(rid, list(groups or ["g1"]), slots))
        self.when(RespondentStatus(rid, AVAILABLE if available else UNAVAILABLE))

    def status(self, rid: str, available: bool) -> list[Decision]:
        return self.when(RespondentStatus(rid, AVAILABLE if available else UNAVAILABLE))

    def start(self, cid: str, **attributes: str) -> list[Decision]:
        return self.when(ConversationStarted(cid, "v-" + cid, attributes))

    def conversation(self, cid: str) -> Any:
        return self.view.conversations[cid]

    def load(self, rid: str) -> int:
        return self.view.respondents[rid].load

    def contacts(self, cid: str) -> list[tuple[str, str | None]]:
        """(respondent, end reason) of each contact, in order."""
        return [(c.respondent, c.end_reason) for c in self.view.contacts(cid)]

    def armed(self, cid: str) -> list[str]:
        return sorted(t.kind for t in self.view.armed_timers(cid))


@pytest.fixture
def desk() -> Desk:
    return Desk()


def rejected(desk: Desk, command: Command) -> str:
    """Apply a command that must be refused; proves state untouched and returns the reason."""
    before = copy.deepcopy(vars(desk.view))
    with pytest.raises(Rejected) as refusal:
        desk.when(command)
    assert vars(desk.view) == before
    return refusal.value.reason


# Configuration events


def test_respondent_updated_creates_unavailable_then_replaces_keeping_history(desk: Desk) -> None:
    desk.when(RespondentUpdated("r1", ["g1"], 2, name="Ann"))
    r1 = desk.view.respondents["r1"]
    assert (r1.status, r1.load, r1.last_assigned_at, r1.name) == (UNAVAILABLE, 0, None, "Ann")
    desk.status("r1", True)
    desk.start("c1")
    desk.when(RespondentUpdated("r1", ["g2", "g1"], 3, name="Anne"))
    assert (r1.groups, r1.slots, r1.name) == (["g2", "g1"], 3, "Anne")
    assert (r1.status, r1.load, r1.last_assigned_at) == (AVAILABLE, 1, T0)


def test_respondent_updated_serves_more_slots_and_new_groups(desk: Desk) -> None:
    # Given r1 full in g1, one queued conversation in g1 and one in g2
    desk.respondent("r1")
    desk.start("c1")
    desk.start("c2")
    desk.when(RuleUpdated("g2-rule", "g2", 1, [{"attribute": "l", "op": "eq", "value": "x"}]))
    desk.start("c3", l="x")
    # When r1 gets a second slot, then joins g2 with a third
    more = desk.when(RespondentUpdated("r1", ["g1"], 2))
    joined = desk.when(RespondentUpdated("r1", ["g1", "g2"], 3))
    # Then the queues are served
    assert more == [assigned("c2", "r1", "g1", "queue")]
    assert joined == [assigned("c3", "r1", "g2", "queue")]


def test_status_unchanged_changes_nothing(desk: Desk) -> None:
    desk.respondent("r1")
    desk.start("c1")
    before = copy.deepcopy(vars(desk.view))
    assert desk.status("r1", True) == []
    assert vars(desk.view) == before


def test_going_unavailable_arms_reassignment_for_assigned_not_snoozed(desk: Desk) -> None:
    desk.respondent("r1", slots=2)
    desk.start("c1")
    desk.start("c2")
    desk.when(ConversationSnoozed("c2", "r1"))
    desk.now = at(5)
    assert desk.status("r1", False) == []
    (timer,) = desk.view.armed_timers("c1")
    assert (timer.kind, timer.due, timer.respondent) == (TimerKind.REASSIGN, at(65), "r1")
    assert desk.view.armed_timers("c2") == []


def test_coming_back_cancels_reassignment_and_serves(desk: Desk) -> None:
    # Given r1 unavailable holding c1, and c2 queued
    desk.respondent("r1", slots=2)
    desk.start("c1")
    desk.status("r1", False)
    desk.start("c2")
    # When r1 comes back before the hour is up
    desk.advance(30)
    decisions = desk.status("r1", True)
    # Then c2 is served and c1 is never reassigned
    assert decisions == [assigned("c2", "r1", "g1", "queue")]
    assert desk.armed("c1") == []
    assert desk.advance(120) == []
    assert desk.conversation("c1").respondent == "r1"


def test_status_of_unknown_respondent_is_rejected(desk: Desk) -> None:
    assert rejected(desk, RespondentStatus("r9", AVAILABLE)) == "unknown respondent 'r9'"


def test_rules_replace_delete_and_are_not_reapplied(desk: Desk) -> None:
    desk.start("c1")
    desk.when(RuleUpdated("all", "g2", 10))
    assert desk.conversation("c1").group == "g1"
    desk.start("c2")
    assert desk.conversation("c2").group == "g2"
    desk.when(RuleDeleted("all"))
    assert desk.view.rules() == []
    assert rejected(desk, RuleDeleted("all")) == "unknown rule 'all'"


def test_tenant_updated_changes_only_given_fields_and_keeps_armed_timers(desk: Desk) -> None:
    desk.respondent("r1")
    desk.start("c1")
    desk.status("r1", False)
    desk.when(TenantUpdated(commission={"mode": "per_contact", "amount": 2.0}))
    desk.when(TenantUpdated(reassign_after_s=60))
    settings = desk.view.settings()
    assert (settings.reassign_after_s, settings.commission_mode) == (60, "per_contact")
    assert (settings.commission_rate, settings.commission_amount) == (0.0, 2.0)
    assert [t.due for t in desk.view.armed_timers("c1")] == [at(60)]
    assert rejected(desk, TenantUpdated(commission={"mode": "bonus"})) == (
        "unknown commission mode 'bonus'"
    )


# New conversation


def test_new_conversation_takes_the_first_matching_rule(desk: Desk) -> None:
    desk.respondent("r1", "g1", "g2")
    desk.when(RuleUpdated("b", "g2", 1, [{"attribute": "lang", "op": "in", "value": ["fr"]}]))
    desk.when(RuleUpdated("a", "g1", 1, [{"attribute": "lang", "op": "eq", "value": "de"}]))
    assert desk.start("c1", lang="fr") == [assigned("c1", "r1", "g2", "new")]


def test_no_rule_matched_leaves_it_unrouted_but_open(desk: Desk) -> None:
    desk.when(RuleDeleted("all"))
    assert desk.start("c1") == [
        Decision(
            "conversation.unrouted",
            {"conversation": "c1", "reason": "no rule matched", "code": "no_rule"},
        )
    ]
    assert desk.conversation("c1").state == State.UNROUTED
    desk.when(MessagePosted("c1", "visitor"))
    desk.when(ConversationRated("c1", 4))
    desk.when(ConversationClosed("c1"))
    assert desk.conversation("c1").state == State.CLOSED


def test_a_conversation_started_twice_is_rejected(desk: Desk) -> None:
    desk.start("c1")
    reason = rejected(desk, ConversationStarted("c1", "v"))
    assert reason == "conversation 'c1' already exists"


# Choosing a respondent and serving


def test_assigning_sets_load_contact_and_queue_positions_when_full(desk: Desk) -> None:
    desk.respondent("r1")
    assert desk.start("c1") == [assigned("c1", "r1", "g1", "new")]
    assert desk.start("c2") == [queued("c2", "g1", 1)]
    assert desk.start("c3") == [queued("c3", "g1", 2)]
    assert (desk.load("r1"), desk.contacts("c1")) == (1, [("r1", None)])


def test_close_serves_the_earliest_queued_across_the_respondents_groups(desk: Desk) -> None:
    # Given r1 (g1, g2) full; g2 queue gets c2 before g1 queue gets c3
    desk.when(RuleUpdated("g2", "g2", 1, [{"attribute": "l", "op": "eq", "value": "2"}]))
    desk.respondent("r1", "g1", "g2")
    desk.start("c1")
    desk.start("c2", l="2")
    desk.start("c3")
    # When c1 closes
    decisions = desk.when(ConversationClosed("c1"))
    # Then c2 comes first, from its own queue
    assert decisions == [assigned("c2", "r1", "g2", "queue")]


def test_pending_holds_are_served_before_the_queue(desk: Desk) -> None:
    desk.respondent("r1")
    desk.respondent("r2", available=False)
    desk.start("c1")
    desk.when(ConversationTransferred("c1", "r1", to_respondent="r2", comment="tv"))
    desk.respondent("r3", available=False)
    desk.start("c2")
    desk.start("c3")  # queued behind c2 (r1 took c2)
    decisions = desk.status("r2", True)
    assert decisions == [assigned("c1", "r2", "g1", "transfer", comment="tv", from_respondent="r1")]


# Transfer


def test_transfer_to_a_free_respondent_is_assigned_at_once(desk: Desk) -> None:
    # Given r1 (g1) holds c1, c2 waits in g1's queue, r2 (g2 only) is free
    desk.respondent("r1")
    desk.start("c1")
    desk.start("c2")
    desk.respondent("r2", "g2")
    # When r1 transfers c1 to r2
    decisions = desk.when(ConversationTransferred("c1", "r1", to_respondent="r2", comment="why"))
    # Then r2 gets it at once in their group, with comment and from; r1's slot takes c2
    assert decisions == [
        assigned("c1", "r2", "g2", "transfer", comment="why", from_respondent="r1"),
        assigned("c2", "r1", "g1", "queue"),
    ]
    assert desk.contacts("c1") == [("r1", "transfer"), ("r2", None)]


@pytest.mark.parametrize("why", ["unavailable", "full"])
def test_transfer_to_an_unavailable_or_full_respondent_is_pending(desk: Desk, why: str) -> None:
    desk.respondent("r1")
    desk.respondent("r2", slots=0 if why == "full" else 1, available=why == "full")
    desk.start("c1")
    decisions = desk.when(ConversationTransferred("c1", "r1", to_respondent="r2"))
    assert decisions == [pending("c1", "r2", "g1", at(60))]
    assert desk.conversation("c1").state == State.PENDING
    assert (desk.load("r1"), desk.armed("c1")) == (0, [TimerKind.REASSIGN])


def test_a_delivered_hold_cancels_its_reassignment(desk: Desk) -> None:
    desk.respondent("r1")
    desk.respondent("r2", available=False)
    desk.start("c1")
    desk.when(ConversationTransferred("c1", "r1", to_respondent="r2"))
    desk.advance(10)
    desk.status("r2", True)
    assert desk.armed("c1") == []
    assert desk.advance(120) == []


@pytest.mark.parametrize(
    ("target_groups", "group"),
    [(["g2", "g1"], "g1"), (["g3", "g2"], "g3"), ([], "g1")],
    ids=["keeps-current", "target-first-group", "no-groups-unchanged"],
)
def test_transfer_to_a_respondent_sets_the_group(
    desk: Desk, target_groups: list[str], group: str
) -> None:
    desk.respondent("r1")
    desk.when(RespondentUpdated("r2", target_groups, 1))
    desk.status("r2", True)
    desk.start("c1")
    desk.when(ConversationTransferred("c1", "r1", to_respondent="r2"))
    assert desk.conversation("c1").group == group


def test_transfer_to_a_group_prefers_others_then_holder_then_queue(desk: Desk) -> None:
    # Given r1 (g1, g2) holds c1 and c2; r2 in g2 is full
    desk.respondent("r1", "g1", "g2", slots=2)
    desk.respondent("r2", "g2", slots=0)
    desk.start("c1")
    desk.start("c2")
    # When c1 goes to g2: only r1 is free there
    to_holder = desk.when(ConversationTransferred("c1", "r1", to_group="g2", comment="tv"))
    # Then it comes back to r1 as a new contact; with r1 full too, c2 is queued in g2
    desk.when(RespondentUpdated("r1", ["g1", "g2"], 1))
    to_queue = desk.when(ConversationTransferred("c2", "r1", to_group="g2"))
    assert to_holder == [assigned("c1", "r1", "g2", "transfer", comment="tv", from_respondent="r1")]
    assert to_queue == [queued("c2", "g2", 1, "transfer")]
    assert desk.contacts("c1") == [("r1", "transfer"), ("r1", None)]
    assert desk.contacts("c2") == [("r1", "transfer")]


def test_transfer_to_a_group_serves_the_holders_slot_first(desk: Desk) -> None:
    # Given r1 and r2 in g1; r1 holds c1, r2 holds c2, c3 waits in g1's queue
    desk.respondent("r1")
    desk.respondent("r2")
    desk.start("c1")
    desk.start("c2")
    desk.start("c3")
    # When r1 sends c1 back to g1
    decisions = desk.when(ConversationTransferred("c1", "r1", to_group="g1"))
    # Then the older c3 takes r1's slot and c1 queues behind
    assert decisions == [assigned("c3", "r1", "g1", "queue"), queued("c1", "g1", 1, "transfer")]


def _closed_c1(desk: Desk) -> None:
    desk.when(ConversationClosed("c1"))


def _snoozed_c1(desk: Desk) -> None:
    desk.when(ConversationSnoozed("c1", "r1"))


def _pending_c1(desk: Desk) -> None:
    desk.when(ConversationTransferred("c1", "r1", to_respondent="r3"))


@pytest.mark.parametrize(
    ("given", "command", "reason"),
    [
        (_closed_c1, {"to_group": "g1"}, "conversation 'c1' is closed"),
        (_snoozed_c1, {"to_group": "g1"}, "respondent 'r1' does not hold conversation 'c1'"),
        (_pending_c1, {"to_group": "g1"}, "respondent 'r1' does not hold conversation 'c1'"),
        (
            None,
            {"respondent": "r2", "to_group": "g1"},
            "respondent 'r2' does not hold conversation 'c1'",
        ),
        (None, {"to_respondent": "r9"}, "unknown respondent 'r9'"),
        (None, {"to_group": "g9"}, "unknown group 'g9'"),
        (None, {"to_respondent": "r1"}, "cannot transfer to oneself"),
        (None, {}, "exactly one of to_respondent and to_group is required"),
    ],
)
def test_transfer_rejections(
    desk: Desk, given: Callable[[Desk], None] | None, command: dict[str, str], reason: str
) -> None:
    desk.respondent("r1")
    desk.respondent("r2")
    desk.respondent("r3", available=False)
    desk.start("c1")
    if given:
        given(desk)
    fields: dict[str, Any] = {"respondent": "r1"} | command
    assert rejected(desk, ConversationTransferred("c1", **fields)) == reason


def test_a_group_named_only_by_a_respondent_is_known(desk: Desk) -> None:
    desk.respondent("r1")
    desk.respondent("r2", "g7", available=False)
    desk.start("c1")
    assert desk.when(ConversationTransferred("c1", "r1", to_group="g7")) == [
        queued("c1", "g7", 1, "transfer")
    ]


# Snooze and wake


def test_snooze_frees_the_slot_then_serves_it(desk: Desk) -> None:
    desk.respondent("r1")
    desk.start("c1")
    desk.start("c2")
    decisions = desk.when(ConversationSnoozed("c1", "r1", until=at(30), keep=False))
    assert decisions == [snoozed("c1", "r1", at(30), False), assigned("c2", "r1", "g1", "queue")]
    assert desk.armed("c1") == [TimerKind.WAKE]
    assert [c.snoozes for c in desk.view.contacts("c1")] == [1]


@pytest.mark.parametrize("state", ["queued", "other", "closed"])
def test_only_the_holder_may_snooze(desk: Desk, state: str) -> None:
    desk.respondent("r1")
    desk.respondent("r2")
    desk.start("c1")
    desk.start("c2")
    desk.start("c3")
    if state == "closed":
        desk.when(ConversationClosed("c1"))
        assert rejected(desk, ConversationSnoozed("c1", "r1")) == "conversation 'c1' is closed"
        return
    cid = "c3" if state == "queued" else "c2"
    expected = f"respondent 'r1' does not hold conversation '{cid}'"
    assert rejected(desk, ConversationSnoozed(cid, "r1")) == expected


def test_snoozing_again_replaces_until_keep_and_the_timer(desk: Desk) -> None:
    desk.respondent("r1", slots=2)
    desk.start("c1")
    desk.when(ConversationSnoozed("c1", "r1", until=at(10)))
    desk.when(ConversationSnoozed("c1", "r1", until=at(90), keep=False))
    assert desk.advance(60) == []
    assert desk.advance(30) == [woken("c1", "timer"), assigned("c1", "r1", "g1", "wake")]
    assert [c.snoozes for c in desk.view.contacts("c1")] == [2]


def test_visitor_reply_wakes_back_to_the_snoozer_and_the_timer_goes_stale(desk: Desk) -> None:
    desk.respondent("r1")
    desk.start("c1")
    desk.when(ConversationSnoozed("c1", "r1", until=at(30)))
    (timer,) = desk.view.armed_timers("c1")
    desk.now = at(5)
    decisions = desk.when(MessagePosted("c1", "visitor"))
    assert decisions == [woken("c1", "visitor_reply"), assigned("c1", "r1", "g1", "wake")]
    assert desk.contacts("c1") == [("r1", None)]
    assert timer.state == TimerState.CANCELLED
    assert fire(desk.view, timer, at(30)) == []
    assert desk.advance(60) == []


def test_wake_by_timer_with_keep_holds_for_an_unavailable_snoozer(desk: Desk) -> None:
    # Given r1 snoozed c1 for 30 min and left
    desk.respondent("r1")
    desk.respondent("r2")
    desk.start("c1")
    desk.when(ConversationSnoozed("c1", "r1", until=at(30)))
    desk.status("r1", False)
    # When the timer fires: pending for r1; when r1 comes back: delivered as a wake
    at_wake = desk.advance(30)
    desk.advance(10)
    back = desk.status("r1", True)
    # Then
    assert at_wake == [woken("c1", "timer"), pending("c1", "r1", "g1", at(90))]
    assert back == [assigned("c1", "r1", "g1", "wake")]
    assert desk.contacts("c1") == [("r1", None)]


@pytest.mark.parametrize(
    ("others_free", "expected", "contacts"),
    [
        (True, assigned("c1", "r2", "g1", "wake"), [("r1", "wake"), ("r2", None)]),
        (False, assigned("c1", "r1", "g1", "wake"), [("r1", None)]),
    ],
    ids=["another-respondent", "snoozer-when-alone"],
)
def test_wake_without_keep_prefers_others(
    desk: Desk, others_free: bool, expected: Decision, contacts: list[tuple[str, str | None]]
) -> None:
    desk.respondent("r1")
    desk.respondent("r2", available=others_free)
    desk.start("c1")
    desk.when(ConversationSnoozed("c1", "r1", keep=False))
    assert desk.when(MessagePosted("c1", "visitor")) == [woken("c1", "visitor_reply"), expected]
    assert desk.contacts("c1") == contacts


def test_wake_without_keep_queues_when_nobody_is_free(desk: Desk) -> None:
    desk.respondent("r1")
    desk.start("c1")
    desk.when(ConversationSnoozed("c1", "r1", keep=False))
    desk.status("r1", False)
    decisions = desk.when(MessagePosted("c1", "visitor"))
    assert decisions == [woken("c1", "visitor_reply"), queued("c1", "g1", 1, "wake")]
    assert desk.contacts("c1") == [("r1", "wake")]


def test_snoozing_drops_the_reassignment_armed_before(desk: Desk) -> None:
    # Given r1 went away holding c1 (reassignment due at 60), then snoozed it until 20
    desk.respondent("r1")
    desk.respondent("r2", available=False)
    desk.start("c1")
    desk.status("r1", False)
    desk.advance(10)
    desk.when(ConversationSnoozed("c1", "r1", until=at(20)))
    # When it wakes for r1, still away, and r2 comes back
    at_wake = desk.advance(10)
    desk.status("r2", True)
    # Then only the hold's own timer counts: nothing at 60, reassigned at 80
    assert at_wake == [woken("c1", "timer"), pending("c1", "r1", "g1", at(80))]
    assert desk.advance(45) == []
    assert desk.advance(15) == [assigned("c1", "r2", "g1", "reassign")]


def test_a_snoozed_conversation_is_never_reassigned(desk: Desk) -> None:
    desk.respondent("r1")
    desk.respondent("r2")
    desk.start("c1")
    desk.status("r1", False)
    desk.when(ConversationSnoozed("c1", "r1"))
    assert desk.advance(600) == []
    assert desk.conversation("c1").state == State.SNOOZED


# Close, messages, presence, ratings, sales


def _assigned(desk: Desk) -> None:
    pass


def _queued(desk: Desk) -> None:
    desk.when(ConversationTransferred("c1", "r1", to_group="g2"))


def _pending(desk: Desk) -> None:
    desk.when(ConversationTransferred("c1", "r1", to_respondent="r3"))


def _snoozed(desk: Desk) -> None:
    desk.when(ConversationSnoozed("c1", "r1", until=at(30)))


@pytest.mark.parametrize(
    ("given", "state", "load"),
    [
        (_assigned, State.ASSIGNED, 1),
        (_queued, State.QUEUED, 0),
        (_pending, State.PENDING, 0),
        (_snoozed, State.SNOOZED, 0),
    ],
)
def test_close_from_each_state_cleans_up(
    desk: Desk, given: Callable[[Desk], None], state: str, load: int
) -> None:
    # Given c1 in ``state``
    desk.respondent("r1")
    desk.when(RespondentUpdated("r2", ["g2"], 0))
    desk.respondent("r3", available=False)
    desk.start("c1")
    given(desk)
    assert (desk.conversation("c1").state, desk.load("r1")) == (state, load)
    # When closed
    assert desk.when(ConversationClosed("c1", by="r1")) == []
    # Then no trace is left, and the contact (if any) ended by close
    c1 = desk.conversation("c1")
    assert (c1.state, c1.respondent, c1.closed_at, desk.load("r1")) == (State.CLOSED, None, T0, 0)
    assert desk.view.queue_entry("c1") is None and desk.view.hold("c1") is None
    assert desk.armed("c1") == []
    assert all(end is not None for _, end in desk.contacts("c1"))
    assert rejected(desk, ConversationClosed("c1")) == "conversation 'c1' is closed"


def test_closing_an_assigned_conversation_serves_the_slot(desk: Desk) -> None:
    desk.respondent("r1")
    desk.start("c1")
    desk.start("c2")
    assert desk.when(ConversationClosed("c1")) == [assigned("c2", "r1", "g1", "queue")]
    assert desk.contacts("c1") == [("r1", "close")]


def test_visitor_notify_counts_unread_respondent_messages(desk: Desk) -> None:
    desk.respondent("r1")
    desk.start("c1")

    def post() -> list[Decision]:
        return desk.when(MessagePosted("c1", "respondent", "r1"))

    def notify(unread: int) -> list[Decision]:
        return [Decision("visitor.notify", {"conversation": "c1", "unread": unread})]

    assert post() == []
    desk.when(VisitorPresence("c1", online=False))
    assert (post(), post()) == (notify(1), notify(2))
    desk.when(VisitorPresence("c1", online=True))
    assert desk.conversation("c1").unread == 0
    desk.when(VisitorPresence("c1", online=False))
    assert post() == notify(1)


def test_the_holders_first_message_answers_the_contact(desk: Desk) -> None:
    desk.respondent("r1")
    desk.respondent("r2")
    desk.start("c1")
    desk.now = at(2)
    desk.when(MessagePosted("c1", "respondent", "r2"))
    desk.when(MessagePosted("c1", "visitor"))
    (contact,) = desk.view.contacts("c1")
    assert (contact.answered, contact.first_response_at) == (False, None)
    desk.when(MessagePosted("c1", "respondent", "r1"))
    desk.now = at(3)
    desk.when(MessagePosted("c1", "respondent", "r1"))
    assert (contact.answered, contact.first_response_at) == (True, at(2))


def test_closed_conversations_refuse_messages_but_take_presence_ratings_sales(desk: Desk) -> None:
    desk.start("c1")
    desk.when(ConversationClosed("c1"))
    assert rejected(desk, MessagePosted("c1", "visitor")) == "conversation 'c1' is closed"
    desk.when(VisitorPresence("c1", online=False))
    desk.when(ConversationRated("c1", 2))
    desk.when(ConversationRated("c1", 5))
    desk.when(ConversationSale("c1", 10.0))
    desk.when(ConversationSale("c1", 2.5, currency="EUR"))
    c1 = desk.conversation("c1")
    assert (c1.visitor_online, c1.rating, c1.sales) == (False, 5, 12.5)


@pytest.mark.parametrize(
    "command",
    [
        MessagePosted("c9", "visitor"),
        VisitorPresence("c9", True),
        ConversationTransferred("c9", "r1", to_group="g1"),
        ConversationSnoozed("c9", "r1"),
        ConversationClosed("c9"),
        ConversationRated("c9", 3),
        ConversationSale("c9", 1.0),
    ],
    ids=lambda command: type(command).__name__,
)
def test_an_unknown_conversation_is_reported_for_retry(desk: Desk, command: Command) -> None:
    before = copy.deepcopy(vars(desk.view))
    with pytest.raises(UnknownConversation, match="unknown conversation 'c9'"):
        desk.when(command)
    assert vars(desk.view) == before


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        (ConversationRated("c1", 6), "score 6 is not between 1 and 5"),
        (ConversationSale("c1", -1.0), "sale amount -1.0 is negative"),
        (MessagePosted("c1", "bot"), "unknown author 'bot'"),
        (RespondentStatus("r1", "away"), "unknown status 'away'"),
    ],
)
def test_ill_formed_values_are_rejected(desk: Desk, command: Command, reason: str) -> None:
    desk.respondent("r1")
    desk.start("c1")
    assert rejected(desk, command) == reason


# Reassignment


def test_a_hold_is_reassigned_to_another_member_after_the_delay(desk: Desk) -> None:
    desk.respondent("r1")
    desk.respondent("r2", available=False)
    desk.start("c1")
    desk.when(ConversationTransferred("c1", "r1", to_respondent="r2"))
    assert desk.advance(59) == []
    assert desk.advance(1) == [assigned("c1", "r1", "g1", "reassign")]
    assert desk.view.hold("c1") is None
    assert desk.contacts("c1") == [("r1", "transfer"), ("r1", None)]


def test_a_hold_for_a_full_respondent_goes_to_the_queue_never_to_them(desk: Desk) -> None:
    desk.respondent("r1")
    desk.respondent("r2", "g1")
    desk.start("c1")
    desk.start("c2")
    desk.when(ConversationTransferred("c1", "r1", to_respondent="r2"))
    desk.when(RespondentUpdated("r1", ["g1"], 0))
    assert desk.advance(60) == [queued("c1", "g1", 1, "reassign")]


def test_an_assigned_conversation_is_reassigned_when_its_holder_stays_away(desk: Desk) -> None:
    # Given r1 holds c1 and answered, then went away; r2 is busy
    desk.respondent("r1")
    desk.respondent("r2", available=False)
    desk.start("c1")
    desk.when(MessagePosted("c1", "respondent", "r1"))
    desk.status("r1", False)
    desk.advance(10)
    desk.status("r2", True)
    # When the hour is up
    decisions = desk.advance(50)
    # Then r2 gets it, r1's slot is freed and their contact ended by reassignment
    assert decisions == [assigned("c1", "r2", "g1", "reassign")]
    assert (desk.load("r1"), desk.load("r2")) == (0, 1)
    assert desk.contacts("c1") == [("r1", "reassign"), ("r2", None)]


def test_a_stale_or_fired_timer_does_nothing(desk: Desk) -> None:
    desk.respondent("r1")
    desk.start("c1")
    desk.status("r1", False)
    (timer,) = desk.view.armed_timers("c1")
    desk.when(ConversationClosed("c1"))
    assert fire(desk.view, timer, at(60)) == []
    timer.state = TimerState.ARMED  # as if the cancel had been lost: the situation still rules
    assert fire(desk.view, timer, at(60)) == []
    assert timer.state == TimerState.FIRED


def test_timers_due_by_an_event_fire_in_due_then_id_order(desk: Desk) -> None:
    desk.respondent("r1", slots=3)
    for cid in ("c1", "c2", "c3"):
        desk.start(cid)
    desk.when(ConversationSnoozed("c2", "r1", until=at(20)))
    desk.when(ConversationSnoozed("c1", "r1", until=at(20)))
    desk.when(ConversationSnoozed("c3", "r1", until=at(10)))
    woke = [d.data["conversation"] for d in desk.advance(30) if d.type == "conversation.woken"]
    assert woke == ["c3", "c1", "c2"]


# Contacts


def test_a_transfer_without_answer_leaves_an_unanswered_contact(desk: Desk) -> None:
    desk.respondent("r1")
    desk.respondent("r2")
    desk.start("c1")
    desk.when(ConversationTransferred("c1", "r1", to_respondent="r2"))
    desk.when(MessagePosted("c1", "respondent", "r1"))  # too late: not r1's contact any more
    desk.when(MessagePosted("c1", "respondent", "r2"))
    outcome = [(c.number, c.respondent, c.answered, c.end_reason) for c in desk.view.contacts("c1")]
    assert outcome == [(1, "r1", False, "transfer"), (2, "r2", True, None)]
    assert desk.conversation("c1").contacts == 2
