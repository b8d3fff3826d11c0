"""Transfers, pending holds and reassignment (issue 3), through ``chatroute replay``."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from chatroute import bootstrap
from chatroute.settings import Settings
from chatroute.stats import Window, rows
from tests.builders import START, Events, jsonl
from tests.integration.test_replay import brief, run

DAY = timedelta(hours=24)


@pytest.fixture
def shop() -> Events:
    """Tenant shop-1: rule "all" -> group G."""
    events = Events("shop-1")
    events.rule("all", "G")
    return events


def transfer(shop: Events, conversation: str, by: str, **target: str) -> dict[str, Any]:
    return shop.event(
        "conversation.transferred",
        conversation=conversation,
        respondent=by,
        comment="needs billing",
        **target,
    )


def stats(tmp_path: Path, name: str) -> dict[str, dict[str, Any]]:
    rt = bootstrap.build(Settings(database_url=f"sqlite:///{tmp_path}/{name}.db"))
    return {row["respondent"]: row for row in rows(rt, "respondent", Window("shop-1"))}


# A transfer to a respondent chooses nobody: its explanation shows the recipient, b, as they were.
CHOSE_NOBODY_BUT_B = {
    "rule": None,
    "target": None,
    "skipped": [],
    "candidates": [{"respondent": "b", "load": 0, "slots": 1, "last_assigned_at": None}],
    "eligible": None,
    "ineligible": None,
}


def test_transfer_to_an_available_respondent_is_assigned_at_once(
    tmp_path: Path, shop: Events
) -> None:
    shop.respondent("a", ["G"])
    shop.respondent("b", ["H", "G"])
    shop.start("c1")
    transfer(shop, "c1", "a", to_respondent="b")
    last = run(tmp_path, jsonl(shop.lines))[-1]
    assert last["type"] == "conversation.assigned"
    assert last["data"] == {
        "conversation": "c1",
        "respondent": "b",
        "group": "G",
        "cause": "transfer",
        "comment": "needs billing",
        "from_respondent": "a",
        "explain": CHOSE_NOBODY_BUT_B,
    }


def test_transfer_to_a_respondent_outside_the_group_takes_their_first_group(
    tmp_path: Path, shop: Events
) -> None:
    shop.respondent("a", ["G"])
    shop.respondent("b", ["H", "K"])
    shop.start("c1")
    transfer(shop, "c1", "a", to_respondent="b")
    assert run(tmp_path, jsonl(shop.lines))[-1]["data"]["group"] == "H"


def test_unavailable_recipient_who_comes_back_after_2h_gets_it(
    tmp_path: Path, shop: Events
) -> None:
    # Given a transfer to an unavailable respondent
    shop.respondent("a", ["G"])
    shop.respondent("b", ["G"], available=False)
    shop.start("c1")
    moved = transfer(shop, "c1", "a", to_respondent="b")
    # When b comes back 2 h later
    shop.later(hours=2)
    shop.event("respondent.status", respondent="b", status="available")
    decisions = run(tmp_path, jsonl(shop.lines), until=START + 2 * DAY)
    # Then the hold was announced with its deadline and delivered on b's return, nothing more
    pending, delivered = decisions[-2:]
    assert pending["type"] == "conversation.pending"
    assert pending["data"]["reassign_at"] == _plus(moved["time"], DAY)
    assert delivered["data"] == {
        "conversation": "c1",
        "respondent": "b",
        "group": "G",
        "cause": "transfer",
        "comment": "needs billing",
        "from_respondent": "a",
        "explain": CHOSE_NOBODY_BUT_B,
    }


def test_unavailable_recipient_who_never_comes_back_is_replaced_after_24h(
    tmp_path: Path, shop: Events
) -> None:
    shop.respondent("a", ["G"])
    shop.respondent("b", ["G"], available=False)
    shop.respondent("c", ["G"], available=False)
    shop.start("c1")
    moved = transfer(shop, "c1", "a", to_respondent="b")
    shop.event("respondent.status", respondent="c", status="available")
    before = brief(run(tmp_path, jsonl(shop.lines), until=START + DAY, name="before"))
    after = run(tmp_path, jsonl(shop.lines), until=START + 2 * DAY, name="after")
    assert before[-1][0] == "conversation.pending"
    # a is free too, but c was never assigned: never-assigned goes first
    reassigned = after[-1]
    assert reassigned["data"]["cause"] == "reassign" and reassigned["data"]["respondent"] == "c"
    assert reassigned["time"] == _plus(moved["time"], DAY)


def test_a_hold_nobody_else_can_take_goes_to_the_queue(tmp_path: Path, shop: Events) -> None:
    shop.respondent("a", ["G"])
    shop.respondent("b", ["G"], available=False)
    shop.start("c1")
    transfer(shop, "c1", "a", to_respondent="b")
    shop.event("respondent.status", respondent="a", status="unavailable")
    decisions = brief(run(tmp_path, jsonl(shop.lines), until=START + 2 * DAY))
    assert decisions[-1] == ("conversation.queued", "c1", ("G", 1))


def test_holds_respect_slots_oldest_first_and_before_the_queue(
    tmp_path: Path, shop: Events
) -> None:
    # Given b full with two conversations, two transfers to b, and a queued conversation
    shop.respondent("a", ["G"], slots=2)
    shop.respondent("b", ["G"], slots=2)
    for n in range(1, 5):
        shop.start(f"c{n}")  # a: c1 c3, b: c2 c4
    transfer(shop, "c1", "a", to_respondent="b")
    transfer(shop, "c3", "a", to_respondent="b")
    shop.event("respondent.status", respondent="a", status="unavailable")
    shop.start("c5")
    # When b closes conversations one by one
    for conversation in ("c2", "c4"):
        shop.event("conversation.closed", conversation=conversation)
    shop.event("conversation.closed", conversation="c1")
    decisions = brief(run(tmp_path, jsonl(shop.lines)))
    # Then the holds are delivered oldest first, and only then the queue
    assert decisions[4:] == [
        ("conversation.pending", "c1", "b"),
        ("conversation.pending", "c3", "b"),
        ("conversation.queued", "c5", ("G", 1)),
        ("conversation.assigned", "c1", "b"),
        ("conversation.assigned", "c3", "b"),
        ("conversation.assigned", "c5", "b"),
    ]


def test_chain_a_b_a_makes_three_contacts(tmp_path: Path, shop: Events) -> None:
    shop.respondent("a", ["G"], slots=2)
    shop.respondent("b", ["G"], slots=2)
    shop.start("c1")
    shop.event("message.posted", conversation="c1", author="respondent", respondent="a")
    transfer(shop, "c1", "a", to_respondent="b")
    transfer(shop, "c1", "b", to_respondent="a")
    shop.event("conversation.rated", conversation="c1", score=4)
    decisions = brief(run(tmp_path, jsonl(shop.lines), name="chain"))
    assert [d[2] for d in decisions] == ["a", "b", "a"]
    figures = stats(tmp_path, "chain")
    assert {
        k: figures["a"][k]
        for k in ("contacts", "answered", "unanswered", "transfers_out", "satisfaction_count")
    } == {
        "contacts": 2,
        "answered": 1,
        "unanswered": 1,
        "transfers_out": 1,
        "satisfaction_count": 2,
    }
    assert {
        k: figures["b"][k] for k in ("contacts", "answered", "unanswered", "transfers_out")
    } == {"contacts": 1, "answered": 0, "unanswered": 1, "transfers_out": 1}


def test_transfer_to_a_group_with_nobody_free_queues_it(tmp_path: Path, shop: Events) -> None:
    shop.respondent("a", ["G"])
    shop.respondent("s", ["Sales"])
    shop.start("c0", team="sales")  # routed to G (rule all), a
    shop.event("respondent.updated", respondent="s", groups=["Sales"], slots=0)
    transfer(shop, "c0", "a", to_group="Sales")
    decisions = brief(run(tmp_path, jsonl(shop.lines)))
    assert decisions[-1] == ("conversation.queued", "c0", ("Sales", 1))


def test_group_transfer_prefers_someone_other_than_the_sender(tmp_path: Path, shop: Events) -> None:
    shop.respondent("a", ["G"], slots=3)
    shop.respondent("b", ["G"], slots=3)
    shop.start("c1")  # a
    shop.start("c2")  # b
    shop.start("c3")  # a: load 2, b: 1
    transfer(shop, "c2", "b", to_group="G")  # b would be the least loaded, a takes it
    assert brief(run(tmp_path, jsonl(shop.lines)))[-1] == ("conversation.assigned", "c2", "a")


def test_custom_reassign_after_s(tmp_path: Path, shop: Events) -> None:
    shop.event("tenant.updated", reassign_after_s=600)
    shop.respondent("a", ["G"])
    shop.respondent("b", ["G"], available=False)
    shop.start("c1")
    moved = transfer(shop, "c1", "a", to_respondent="b")
    at = _at(moved["time"])
    early = brief(run(tmp_path, jsonl(shop.lines), until=at + timedelta(minutes=9), name="e"))
    late = run(tmp_path, jsonl(shop.lines), until=at + timedelta(minutes=11), name="l")
    assert early[-1][0] == "conversation.pending"
    assert late[-1]["data"]["cause"] == "reassign" and late[-1]["time"] == _plus(
        moved["time"], timedelta(minutes=10)
    )


def test_holder_away_too_long_loses_the_conversation_unless_back_in_time(
    tmp_path: Path, shop: Events
) -> None:
    shop.event("tenant.updated", reassign_after_s=3600)
    shop.respondent("a", ["G"])
    shop.respondent("b", ["G"])
    shop.start("c1")  # a
    shop.event("respondent.status", respondent="a", status="unavailable")
    away = run(tmp_path, jsonl(shop.lines), until=START + DAY, name="away")
    assert brief(away)[-1] == ("conversation.assigned", "c1", "b")
    assert away[-1]["data"]["cause"] == "reassign"
    shop.later(minutes=30)
    shop.event("respondent.status", respondent="a", status="available")
    back = run(tmp_path, jsonl(shop.lines), until=START + DAY, name="back")
    assert [d["data"].get("cause") for d in back] == ["new"]


def test_the_senders_freed_slot_serves_their_queue_at_once(tmp_path: Path, shop: Events) -> None:
    shop.respondent("a", ["G"])
    shop.respondent("b", ["H"])
    shop.start("c1")  # a
    shop.start("c2")  # queued behind a
    transfer(shop, "c1", "a", to_respondent="b")
    assert brief(run(tmp_path, jsonl(shop.lines)))[-2:] == [
        ("conversation.assigned", "c1", "b"),
        ("conversation.assigned", "c2", "a"),
    ]


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (
            lambda s: transfer(s, "c1", "b", to_respondent="a"),
            "respondent 'b' does not hold conversation 'c1'",
        ),
        (lambda s: transfer(s, "c1", "a", to_respondent="a"), "cannot transfer to oneself"),
        (lambda s: transfer(s, "c1", "a", to_respondent="zed"), "unknown respondent 'zed'"),
        (lambda s: transfer(s, "c1", "a", to_group="Nowhere"), "unknown group 'Nowhere'"),
        (
            lambda s: (
                s.event("conversation.closed", conversation="c1"),
                transfer(s, "c1", "a", to_respondent="b"),
            ),
            "conversation 'c1' is closed",
        ),
        (
            lambda s: (
                s.event("conversation.snoozed", conversation="c1", respondent="a"),
                transfer(s, "c1", "a", to_respondent="b"),
            ),
            "does not hold conversation 'c1'",
        ),
    ],
)
def test_rejected_transfers_say_why_and_the_run_goes_on(
    tmp_path: Path, shop: Events, make: Any, reason: str
) -> None:
    shop.respondent("a", ["G"], slots=2)
    shop.respondent("b", ["G"], slots=2)
    shop.start("c1")  # a
    make(shop)
    shop.start("c9")
    decisions = run(tmp_path, jsonl(shop.lines))
    rejected = [d for d in decisions if d["type"] == "event.rejected"]
    assert len(rejected) == 1 and reason in rejected[0]["data"]["reason"]
    assert rejected[0]["data"]["type"] == "conversation.transferred"
    assert brief(decisions)[-1][:2] == ("conversation.assigned", "c9")


def _at(rfc: str) -> datetime:
    return datetime.fromisoformat(rfc.replace("Z", "+00:00"))


def _plus(rfc: str, delta: timedelta) -> str:
    return (_at(rfc) + delta).strftime("%Y-%m-%dT%H:%M:%SZ")
