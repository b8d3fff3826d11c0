"""Snoozes and their wake-ups (issue 4), through ``chatroute replay``."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.builders import START, Events, jsonl, rfc3339
from tests.integration.test_replay import brief, run
from tests.integration.test_transfers import stats


@pytest.fixture
def shop() -> Events:
    events = Events("shop-1")
    events.rule("all", "G")
    return events


def snooze(
    shop: Events, conversation: str, by: str, after: timedelta | None = None, keep: bool = True
) -> dict[str, Any]:
    data: dict[str, Any] = {"conversation": conversation, "respondent": by, "keep": keep}
    if after is not None:
        data["until"] = rfc3339(shop.now + after)
    return shop.event("conversation.snoozed", **data)


def test_3h_snooze_wakes_by_time_back_to_the_same_respondent(tmp_path: Path, shop: Events) -> None:
    shop.respondent("a", ["G"])
    shop.start("c1")
    snooze(shop, "c1", "a", timedelta(hours=3))
    decisions = brief(run(tmp_path, jsonl(shop.lines), until=START + timedelta(hours=4), name="s"))
    assert decisions == [
        ("conversation.assigned", "c1", "a"),
        ("conversation.snoozed", "c1", "a"),
        ("conversation.woken", "c1", None),
        ("conversation.assigned", "c1", "a"),
    ]
    figures = stats(tmp_path, "s")["a"]
    assert (figures["contacts"], figures["snoozes"]) == (1, 1)


def test_until_reply_snooze_wakes_when_the_visitor_writes(tmp_path: Path, shop: Events) -> None:
    shop.respondent("a", ["G"])
    shop.start("c1")
    snooze(shop, "c1", "a")
    shop.later(minutes=45)
    shop.event("message.posted", conversation="c1", author="visitor")
    decisions = run(tmp_path, jsonl(shop.lines), until=START + timedelta(days=3))
    assert decisions[1]["data"]["until"] is None
    assert [(d["type"], d["data"].get("cause")) for d in decisions[2:]] == [
        ("conversation.woken", "visitor_reply"),
        ("conversation.assigned", "wake"),
    ]


def test_reply_before_the_timer_wakes_once_and_the_timer_does_nothing(
    tmp_path: Path, shop: Events
) -> None:
    shop.respondent("a", ["G"])
    shop.start("c1")
    snooze(shop, "c1", "a", timedelta(minutes=15))
    shop.later(minutes=10)
    shop.event("message.posted", conversation="c1", author="visitor")
    decisions = run(tmp_path, jsonl(shop.lines), until=START + timedelta(hours=1))
    woken = [d for d in decisions if d["type"] == "conversation.woken"]
    assert len(woken) == 1 and woken[0]["data"]["cause"] == "visitor_reply"
    assert decisions[-1]["data"]["cause"] == "wake"


def test_keep_off_while_the_snoozer_is_away_goes_to_another_respondent(
    tmp_path: Path, shop: Events
) -> None:
    shop.respondent("a", ["G"])
    shop.respondent("b", ["G"])
    shop.start("c1")  # a
    snooze(shop, "c1", "a", timedelta(hours=24), keep=False)
    shop.event("respondent.status", respondent="a", status="unavailable")
    decisions = run(tmp_path, jsonl(shop.lines), until=START + timedelta(hours=25), name="k")
    assert brief(decisions)[-1] == ("conversation.assigned", "c1", "b")
    assert decisions[-1]["data"]["cause"] == "wake"
    figures = stats(tmp_path, "k")
    assert (figures["a"]["contacts"], figures["b"]["contacts"]) == (1, 1)


def test_keep_off_prefers_another_respondent_even_when_the_snoozer_is_free(
    tmp_path: Path, shop: Events
) -> None:
    shop.respondent("a", ["G"], slots=2)
    shop.respondent("b", ["G"], slots=2)
    shop.start("c1")  # a
    shop.start("c2")  # b
    snooze(shop, "c1", "a", timedelta(hours=1), keep=False)
    decisions = brief(run(tmp_path, jsonl(shop.lines), until=START + timedelta(hours=2)))
    assert decisions[-1] == ("conversation.assigned", "c1", "b")


def test_keep_off_falls_back_to_the_snoozer_then_to_the_queue(tmp_path: Path, shop: Events) -> None:
    shop.respondent("a", ["G"])
    shop.start("c1")
    snooze(shop, "c1", "a", timedelta(hours=1), keep=False)
    back = brief(run(tmp_path, jsonl(shop.lines), until=START + timedelta(hours=2), name="b"))
    assert back[-1] == ("conversation.assigned", "c1", "a")
    shop.event("respondent.status", respondent="a", status="unavailable")
    queued = brief(run(tmp_path, jsonl(shop.lines), until=START + timedelta(hours=2), name="q"))
    assert queued[-1] == ("conversation.queued", "c1", ("G", 1))


def test_keep_on_while_the_snoozer_is_full_holds_it_for_them(tmp_path: Path, shop: Events) -> None:
    shop.respondent("a", ["G"])
    shop.start("c1")
    snooze(shop, "c1", "a", timedelta(hours=1))
    shop.start("c2")  # takes a's freed slot
    shop.later(hours=2)
    shop.event("conversation.closed", conversation="c2")
    decisions = run(tmp_path, jsonl(shop.lines))
    assert [(d["type"], d["data"]["conversation"]) for d in decisions[2:]] == [
        ("conversation.assigned", "c2"),
        ("conversation.woken", "c1"),
        ("conversation.pending", "c1"),
        ("conversation.assigned", "c1"),
    ]
    assert decisions[-1]["data"]["cause"] == "wake"


def test_snoozing_again_replaces_the_wake_up(tmp_path: Path, shop: Events) -> None:
    shop.respondent("a", ["G"])
    shop.start("c1")
    snooze(shop, "c1", "a", timedelta(hours=1))
    snooze(shop, "c1", "a", timedelta(hours=3))
    decisions = run(tmp_path, jsonl(shop.lines), until=START + timedelta(hours=5))
    woken = [d for d in decisions if d["type"] == "conversation.woken"]
    assert len(woken) == 1 and woken[0]["time"] == rfc3339(START + timedelta(hours=3, seconds=5))


def test_closing_while_snoozed_cancels_the_wake_up(tmp_path: Path, shop: Events) -> None:
    shop.respondent("a", ["G"])
    shop.start("c1")
    snooze(shop, "c1", "a", timedelta(hours=1))
    shop.event("conversation.closed", conversation="c1")
    decisions = brief(run(tmp_path, jsonl(shop.lines), until=START + timedelta(hours=2)))
    assert [d[0] for d in decisions] == ["conversation.assigned", "conversation.snoozed"]


def test_a_sleeping_conversation_is_never_reassigned(tmp_path: Path, shop: Events) -> None:
    shop.event("tenant.updated", reassign_after_s=600)
    shop.respondent("a", ["G"])
    shop.respondent("b", ["G"])
    shop.start("c1")  # a
    snooze(shop, "c1", "a", timedelta(hours=2))
    shop.event("respondent.status", respondent="a", status="unavailable")
    decisions = run(tmp_path, jsonl(shop.lines), until=START + timedelta(hours=1, minutes=50))
    assert not [d for d in decisions if d["data"].get("cause") == "reassign"]


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda s: snooze(s, "c1", "b"), "respondent 'b' does not hold conversation 'c1'"),
        (lambda s: snooze(s, "c2", "a"), "does not hold conversation 'c2'"),
        (
            lambda s: (s.event("conversation.closed", conversation="c1"), snooze(s, "c1", "a")),
            "conversation 'c1' is closed",
        ),
    ],
)
def test_rejected_snoozes_say_why_and_the_run_goes_on(
    tmp_path: Path, shop: Events, make: Any, reason: str
) -> None:
    shop.respondent("a", ["G"])
    shop.respondent("b", ["H"])
    shop.start("c1")  # a
    shop.start("c2")  # queued
    make(shop)
    shop.start("c9")
    decisions = run(tmp_path, jsonl(shop.lines))
    rejected = [d for d in decisions if d["type"] == "event.rejected"]
    assert len(rejected) == 1 and reason in rejected[0]["data"]["reason"]
    assert decisions[-1]["data"]["conversation"] == "c9"


def test_snoozed_conversations_do_not_occupy_slots(tmp_path: Path, shop: Events) -> None:
    shop.respondent("a", ["G"])
    shop.start("c1")
    shop.start("c2")  # queued behind a
    snooze(shop, "c1", "a")
    shop.start("c3")  # queued: a holds c2 now
    decisions = brief(run(tmp_path, jsonl(shop.lines)))
    assert decisions[2:] == [
        ("conversation.snoozed", "c1", "a"),
        ("conversation.assigned", "c2", "a"),
        ("conversation.queued", "c3", ("G", 1)),
    ]


def test_a_reassignment_armed_by_a_wake_fires_before_a_later_wake_of_the_same_batch(
    tmp_path: Path, shop: Events
) -> None:
    # Given reassignment after 30 s, two conversations snoozed by a respondent who then goes
    # away, waking at +10 s and +60 s: both timers fall due in one batch after the last event
    shop.event("tenant.updated", reassign_after_s=30)
    shop.respondent("a", ["G"], slots=2)
    shop.respondent("b", ["G"], slots=2)
    shop.start("c1")
    shop.start("c2")  # a and b hold one each: c1 by a (first by id), c2 by b
    first = snooze(shop, "c1", "a", timedelta(seconds=10))["data"]["until"]
    second = snooze(shop, "c2", "b", timedelta(seconds=60))["data"]["until"]
    shop.event("respondent.status", respondent="a", status="unavailable")
    # When the day is replayed until an hour later
    decisions = run(tmp_path, jsonl(shop.lines), until=START + timedelta(hours=1))
    # Then c1 waits for a from its wake, and is reassigned 30 s later, before c2 wakes
    reassigned = rfc3339(datetime.fromisoformat(first) + timedelta(seconds=30))
    assert reassigned < second
    timed = [(d["type"], d["data"]["conversation"], d["time"]) for d in decisions[4:]]
    assert timed == [
        ("conversation.woken", "c1", first),
        ("conversation.pending", "c1", first),
        ("conversation.assigned", "c1", reassigned),
        ("conversation.woken", "c2", second),
        ("conversation.assigned", "c2", second),
    ]
