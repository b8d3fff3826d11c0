"""CONTRACT.md "Contacts and statistics": the figures of ``contacts.respondent_figures``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from chatroute.domain.contacts import (
    Figures,
    contact_outcomes,
    conversation_outcome,
    respondent_figures,
)
from chatroute.domain.model import Contact, Conversation, TenantSettings

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
