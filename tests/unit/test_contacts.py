"""CONTRACT.md "Contacts and statistics": the figures of ``contacts.respondent_figures``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chatroute.domain.commands import (
    Command,
    ConversationStarted,
    GroupUpdated,
    MessagePosted,
    RespondentStatus,
    RespondentUpdated,
    RuleUpdated,
    TenantUpdated,
)
from chatroute.domain.contacts import (
    ConversationOutcome,
    Figures,
    contact_outcomes,
    conversation_outcome,
    respondent_figures,
)
from chatroute.domain.lifecycle import fire_due, handle
from chatroute.domain.memory import InMemoryTenantView
from chatroute.domain.model import Contact, Conversation, Decision, TenantSettings

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def contact(
    cid: str,
    number: int,
    rid: str,
    *,
    end: str | None = None,
    answer_after_s: float | None = None,
    snoozes: int = 0,
) -> Contact:
    answered_at = None if answer_after_s is None else T0 + timedelta(seconds=answer_after_s)
    return Contact(
        "t",
        cid,
        number,
        rid,
        "g1",
        started_at=T0,
        end_reason=end,
        answered=answered_at is not None,
        first_response_at=answered_at,
        snoozes=snoozes,
    )


def conversation(cid: str, rating: int | None = None, sales: float = 0.0) -> Conversation:
    return Conversation("t", cid, "v", {}, T0, rating=rating, sales=sales)


def percent(rate: float) -> TenantSettings:
    return TenantSettings("t", commission_mode="percent", commission_rate=rate)


def per_contact(amount: float) -> TenantSettings:
    return TenantSettings("t", commission_mode="per_contact", commission_amount=amount)


# Given c1: A took it and transferred without answering, B answered (after 30 s), snoozed twice
# and closed; c2: B answered after 90 s and transferred to A, who did not answer.
CONTACTS = [
    contact("c1", 1, "A", end="transfer"),
    contact("c1", 2, "B", end="close", answer_after_s=30, snoozes=2),
    contact("c2", 1, "B", end="transfer", answer_after_s=90),
    contact("c2", 2, "A"),
]


def test_answered_unanswered_transfers_snoozes_and_first_response() -> None:
    conversations = [conversation("c1"), conversation("c2")]
    figures = respondent_figures(CONTACTS, conversations, percent(0.0))
    a, b = figures["A"], figures["B"]
    assert (a.contacts, a.answered, a.unanswered, a.transfers_out, a.snoozes) == (2, 0, 2, 1, 0)
    assert (b.contacts, b.answered, b.unanswered, b.transfers_out, b.snoozes) == (2, 2, 0, 1, 2)
    assert (a.first_response_avg_s, b.first_response_avg_s) == (None, 60.0)


def test_a_rating_counts_once_per_contact_for_every_respondent() -> None:
    conversations = {"c1": conversation("c1", rating=5), "c2": conversation("c2", rating=2)}
    figures = respondent_figures(CONTACTS, conversations, percent(0.0))
    assert (figures["A"].satisfaction_count, figures["A"].satisfaction_avg) == (2, 3.5)
    assert (figures["B"].satisfaction_count, figures["B"].satisfaction_avg) == (2, 3.5)


def test_unrated_conversations_give_no_satisfaction() -> None:
    figures = respondent_figures(CONTACTS[:2], [conversation("c1")], percent(0.0))
    assert (figures["A"].satisfaction_count, figures["A"].satisfaction_avg) == (0, None)


@pytest.mark.parametrize(
    ("settings", "a", "b"),
    [
        (percent(0.1), 5.0, 10.0),
        (per_contact(2.0), 2.0, 2.0),
        (percent(0.0), 0.0, 0.0),
    ],
    ids=["percent", "per-contact", "none"],
)
def test_commission_goes_to_the_last_contact(settings: TenantSettings, a: float, b: float) -> None:
    # c1 (sales 100) ended with B; c2 (sales 50) ended with A
    conversations = [conversation("c1", sales=100.0), conversation("c2", sales=50.0)]
    figures = respondent_figures(reversed(CONTACTS), conversations, settings)
    assert (figures["A"].commission, figures["B"].commission) == pytest.approx((a, b))


def test_only_respondents_with_contacts_appear_and_nothing_is_empty() -> None:
    assert respondent_figures([], [conversation("c1", sales=9.0)], per_contact(1.0)) == {}
    figures = respondent_figures([contact("c1", 1, "A")], [], percent(0.5))
    assert figures == {
        "A": Figures(
            contacts=1,
            answered=0,
            unanswered=1,
            transfers_out=0,
            snoozes=0,
            satisfaction_count=0,
            satisfaction_avg=None,
            commission=0.0,
            first_response_avg_s=None,
        )
    }


def test_outcomes_name_the_transfer_target_even_while_the_conversation_waits_for_them() -> None:
    held = Conversation("t", "c1", "v", {}, T0, state="pending", respondent="C", sales=10.0)
    chain = [contact("c1", 1, "A", end="transfer"), contact("c1", 2, "B", end="transfer")]
    outcomes = contact_outcomes(held, chain, percent(0.5))
    assert [(o.respondent, o.transferred_to, o.commission) for o in outcomes] == [
        ("A", "B", 0.0),
        ("B", "C", 5.0),  # the last contact keeps the commission until C's starts
    ]


def test_a_conversation_outcome_counts_its_first_wait_and_queue() -> None:
    queued = Conversation("t", "c1", "v", {}, T0, group="G", queued_at=T0)
    first = contact("c1", 1, "A")
    first.started_at = T0 + timedelta(seconds=75)
    outcome = conversation_outcome(queued, [first])
    assert (outcome.group, outcome.queued, outcome.wait_s, outcome.unrouted) == (
        "g1",
        True,
        75.0,
        False,
    )
    unrouted = conversation_outcome(Conversation("t", "u1", "v", {}, T0), [])
    assert (unrouted.group, unrouted.queued, unrouted.wait_s, unrouted.unrouted) == (
        None,
        False,
        None,
        True,
    )


# Contract v2: why a conversation is unrouted, its overflow moves, and the contacts that end
# by a missed answer deadline or an idle close.


def v2_conversation(cid: str, **fields: Any) -> Conversation:
    return Conversation("t", cid, "v", {}, T0, **fields)


@pytest.mark.parametrize(
    ("code", "group"),
    [("no_rule", None), ("closed", "A"), ("queue_full", "A"), ("wait_timeout", "B")],
)
def test_an_unrouted_conversation_keeps_its_code_and_the_group_it_counts_in(
    code: str, group: str | None
) -> None:
    # closed / queue_full: the group of its rule's first target; wait_timeout: the group it
    # left; no_rule: none
    moves = [["B", None]] if code == "wait_timeout" else []
    unrouted = v2_conversation("c1", group=group, unrouted_code=code, overflows=moves)
    outcome = conversation_outcome(unrouted, [])
    assert (outcome.group, outcome.unrouted, outcome.unrouted_code) == (group, True, code)


def test_a_routed_conversation_has_no_code() -> None:
    routed = v2_conversation("c1", group="G", state="assigned")
    outcome = conversation_outcome(routed, [contact("c1", 1, "A")])
    assert (outcome.unrouted, outcome.unrouted_code, outcome.overflows) == (False, None, ())


def test_a_conversation_from_before_v2_with_neither_group_nor_contact_is_unrouted_by_no_rule() -> (
    None
):
    outcome = conversation_outcome(v2_conversation("u1"), [])
    assert (outcome.unrouted, outcome.unrouted_code) == (True, "no_rule")
    queued_without_code = v2_conversation("q1", group="G", queued_at=T0)
    assert conversation_outcome(queued_without_code, []).unrouted is False


def test_overflow_moves_are_numbered_in_order_and_a_wait_timeout_goes_nowhere() -> None:
    moved = v2_conversation(
        "c1", group="C", state="unrouted", unrouted_code="wait_timeout",
        overflows=[["A", "B"], ["B", "C"], ["C", None]],
    )  # fmt: skip
    outcome = conversation_outcome(moved, [])
    assert [(m.number, m.from_group, m.to_group) for m in outcome.overflows] == [
        (1, "A", "B"),
        (2, "B", "C"),
        (3, "C", None),
    ]


def test_overflow_then_assignment_counts_in_the_group_that_took_it_and_is_not_unrouted() -> None:
    moved = v2_conversation("c1", group="B", state="assigned", queued_at=T0)
    moved.overflows = [["A", "B"]]
    taken = contact("c1", 1, "R")
    taken.group, taken.started_at = "B", T0 + timedelta(seconds=120)
    outcome = conversation_outcome(moved, [taken])
    assert (outcome.group, outcome.queued, outcome.wait_s, outcome.unrouted) == (
        "B",
        True,
        120.0,
        False,
    )
    assert [(m.from_group, m.to_group) for m in outcome.overflows] == [("A", "B")]


def test_a_missed_deadline_is_an_unanswered_contact_and_no_transfer() -> None:
    # A missed the answer deadline; B answered and the engine closed it idle
    chain = [
        contact("c1", 1, "A", end="no_answer"),
        contact("c1", 2, "B", end="idle", answer_after_s=10),
    ]
    moved = v2_conversation("c1", state="closed", close_cause="idle", sales=40.0)
    outcomes = contact_outcomes(moved, chain, percent(0.5))
    assert [(o.answered, o.transferred, o.transferred_to) for o in outcomes] == [
        (False, False, None),
        (True, False, None),
    ]
    figures = respondent_figures(chain, [moved], percent(0.5))
    a, b = figures["A"], figures["B"]
    assert (a.contacts, a.answered, a.unanswered, a.transfers_out) == (1, 0, 1, 0)
    assert (b.contacts, b.answered, b.unanswered, b.transfers_out) == (1, 1, 0, 0)
    # the idle close ends B's contact like a close: the commission is the last contact's
    assert (a.commission, b.commission) == (0.0, 20.0)


def test_an_idle_close_counts_like_a_close() -> None:
    def figures_for(end: str) -> Figures:
        closed = v2_conversation("c1", state="closed", rating=4, sales=10.0)
        return respondent_figures(
            [contact("c1", 1, "A", end=end, answer_after_s=5, snoozes=1)],
            [closed],
            per_contact(3.0),
        )["A"]

    assert figures_for("idle") == figures_for("close")


# The same outcomes from conversations the domain itself moved (in memory): what the stats
# read is what the policy wrote.


class Policy:
    """An in-memory tenant, its clock, and the outcomes of its conversations."""

    def __init__(self) -> None:
        self.view = InMemoryTenantView("t")
        self.now = T0

    def when(self, *commands: Command) -> list[Decision]:
        return [d for command in commands for d in handle(self.view, command, self.now)]

    def advance(self, seconds: float) -> list[Decision]:
        self.now += timedelta(seconds=seconds)
        return fire_due(self.view, self.now)

    def respondent(self, rid: str, group: str) -> None:
        self.when(RespondentUpdated(rid, [group], 1), RespondentStatus(rid, "available"))

    def outcome(self, cid: str) -> ConversationOutcome:
        return conversation_outcome(self.view.conversations[cid], self.view.contacts(cid))

    def figures(self) -> dict[str, Figures]:
        contacts = [c for cid in self.view.conversations for c in self.view.contacts(cid)]
        return respondent_figures(contacts, self.view.conversations, self.view.settings())


def moves(outcome: ConversationOutcome) -> list[tuple[str, str | None]]:
    return [(m.from_group, m.to_group) for m in outcome.overflows]


def test_the_domains_overflow_and_wait_timeout_give_their_moves_and_group() -> None:
    # Given A's only respondent busy, a rule A (wait 30 s) then B (wait 30 s), B's busy too
    desk = Policy()
    desk.respondent("a", "A")
    desk.respondent("b", "B")
    targets = [{"group": "A", "wait_s": 30}, {"group": "B", "wait_s": 30}]
    desk.when(RuleUpdated("r", targets=targets))
    desk.when(ConversationStarted("busy-a", "v1"), ConversationStarted("c1", "v2"))
    # When c1 waits 30 s at A, moves to B (b takes it), and c2 waits at A then at B
    desk.advance(30)
    desk.when(ConversationStarted("c2", "v3"))
    desk.advance(30)
    desk.advance(30)
    # Then c1 overflowed A -> B and counts in B; c2 left A, then B for nowhere
    c1, c2 = desk.outcome("c1"), desk.outcome("c2")
    assert (c1.group, c1.unrouted, moves(c1)) == ("B", False, [("A", "B")])
    assert (c2.group, c2.unrouted_code, moves(c2)) == (
        "B",
        "wait_timeout",
        [("A", "B"), ("B", None)],
    )


@pytest.mark.parametrize(("max_queue", "code"), [(0, "queue_full"), (None, "closed")])
def test_the_domains_closed_and_queue_full_count_in_the_first_targets_group(
    max_queue: int | None, code: str
) -> None:
    desk = Policy()
    if max_queue is None:  # closed every day
        hours = {"timezone": "UTC", "weekly": {}}
        desk.when(GroupUpdated("A", hours=hours), GroupUpdated("B", hours=hours))
    else:
        desk.when(GroupUpdated("A", max_queue=0), GroupUpdated("B", max_queue=0))
    desk.when(RuleUpdated("r", targets=[{"group": "A"}, {"group": "B"}]))
    desk.when(ConversationStarted("c1", "v1"))
    outcome = desk.outcome("c1")
    assert (outcome.group, outcome.unrouted, outcome.unrouted_code) == ("A", True, code)


def test_the_domains_no_rule_is_unrouted_without_a_group() -> None:
    desk = Policy()
    desk.when(ConversationStarted("c1", "v1"))
    outcome = desk.outcome("c1")
    assert (outcome.group, outcome.unrouted_code) == (None, "no_rule")


def test_the_domains_missed_deadline_and_idle_close_are_no_transfers() -> None:
    # Given an answer deadline of 30 s with pausing, and an idle close after 120 s
    desk = Policy()
    desk.when(TenantUpdated(answer_within_s=30, pause_on_no_answer=True, close_after_idle_s=120))
    desk.when(RuleUpdated("r", "G"))
    desk.respondent("a", "G")
    desk.respondent("b", "G")
    desk.when(ConversationStarted("c1", "v1"))  # to a (never assigned before: a < b)
    # When a misses the deadline (c1 goes to b, who answers), then c1 stays idle
    desk.advance(30)
    desk.when(MessagePosted("c1", "respondent", "b"))
    desk.advance(120)
    # Then a's contact is unanswered and no transfer; b's ended by the idle close
    contacts = desk.view.contacts("c1")
    assert [(c.respondent, c.end_reason) for c in contacts] == [("a", "no_answer"), ("b", "idle")]
    figures = desk.figures()
    a, b = figures["a"], figures["b"]
    assert (a.contacts, a.answered, a.unanswered, a.transfers_out) == (1, 0, 1, 0)
    assert (b.contacts, b.answered, b.unanswered, b.transfers_out) == (1, 1, 0, 0)
    outcome = desk.outcome("c1")
    assert (outcome.group, outcome.unrouted, outcome.wait_s) == ("G", False, 0.0)
