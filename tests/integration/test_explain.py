"""``explain`` on routing decisions (contract v2), in each case: a new conversation, the
queue, a transfer, a wake, a reassignment, an overflow, a missed answer deadline, sticky
routing, and unrouted by each code. Each scenario is replayed for two tenants at once, on
SQLite and on PostgreSQL (``test_policy_replay.both``); the SQL store's explanations equal
these (``test_store_parity``, whose decisions carry them)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tests.builders import START, Events
from tests.integration.test_policy_replay import (
    NEVER,
    Decision,
    both,
    close,
    post,
    start,
    status,
    targets,
)

NOBODY = {"excluded": 0, "unavailable": 0, "full": 0}


def why(decision: Decision) -> dict[str, Any]:
    return dict(decision["data"]["explain"])


def shown(explained: dict[str, Any]) -> list[tuple[str, int, int, str | None]]:
    """(respondent, load, slots, last assigned) of each candidate, in order."""
    return [
        (c["respondent"], c["load"], c["slots"], c["last_assigned_at"])
        for c in explained["candidates"]
    ]


def counts(explained: dict[str, Any]) -> tuple[Any, Any]:
    """The eligible count and the ineligible ones (both None where no choice was made)."""
    return explained["eligible"], explained["ineligible"]


def transfer(ev: Events, cid: str, sender: str, **to: str) -> dict[str, Any]:
    return ev.event("conversation.transferred", conversation=cid, respondent=sender, **to)


def test_a_new_conversation_shows_the_best_three_and_counts_the_others(db_url: str) -> None:
    def given(ev: Events) -> None:
        # Given g1: a (2 slots), b and d (1 slot), c away; e only in g2
        targets(ev, ("g1", None))
        ev.respondent("a", ["g1"], slots=2)
        ev.respondent("b", ["g1"])
        ev.respondent("c", ["g1"], available=False)
        ev.respondent("d", ["g1"])
        ev.respondent("e", ["g2"])
        # When four conversations start: a, b, d, a take them; then a fifth
        for n in range(5):
            start(ev, f"c{n}")

    run = both(db_url, given)
    first, _, third, fourth, fifth = (run.about(f"c{n}")[0] for n in range(5))
    at_first = first["time"]
    # Then the first saw four free members, never assigned, by id
    assert why(first) | {"candidates": None} == {
        "rule": "all",
        "target": 0,
        "skipped": [],
        "candidates": None,
        "eligible": 3,
        "ineligible": NOBODY | {"unavailable": 1},
    }
    assert shown(why(first)) == [("a", 0, 2, None), ("b", 0, 1, None), ("d", 0, 1, None)]
    # and the third: d (never assigned) before a (load 1), b full; figures before the choice
    assert shown(why(third)) == [("d", 0, 1, None), ("a", 1, 2, at_first)]
    assert counts(why(third)) == (2, NOBODY | {"unavailable": 1, "full": 1})
    assert (fourth["data"]["respondent"], shown(why(fourth))) == ("a", [("a", 1, 2, at_first)])
    # And the fifth queues: nobody eligible, every member counted once
    assert fifth["type"] == "conversation.queued"
    assert (shown(why(fifth)), why(fifth)["rule"], why(fifth)["target"]) == ([], "all", 0)
    assert counts(why(fifth)) == (0, NOBODY | {"unavailable": 1, "full": 3})


def test_a_freed_slot_taking_from_the_queue_chose_nobody(db_url: str) -> None:
    def given(ev: Events) -> None:
        targets(ev, ("g1", None))
        ev.respondent("a", ["g1"])
        start(ev, "c0")
        start(ev, "c1")  # queued
        close(ev, "c0")  # a's slot frees: a takes c1

    run = both(db_url, given)
    took = run.about("c1")[-1]
    assert (took["data"]["respondent"], took["data"]["cause"]) == ("a", "queue")
    assert why(took)["rule"] is None and why(took)["skipped"] == []
    assert shown(why(took)) == [("a", 0, 1, run.about("c0")[0]["time"])]
    assert counts(why(took)) == (None, None)


def test_a_transfer_to_a_group_passes_over_its_sender(db_url: str) -> None:
    def given(ev: Events) -> None:
        targets(ev, ("g1", None))
        ev.respondent("a", ["g1"])
        ev.respondent("b", ["g1"])
        ev.respondent("c", ["g1"], available=False)
        start(ev, "c0")  # a
        transfer(ev, "c0", "a", to_group="g1")

    run = both(db_url, given)
    moved = run.about("c0")[-1]
    assert (moved["data"]["respondent"], moved["data"]["cause"]) == ("b", "transfer")
    assert (why(moved)["rule"], why(moved)["target"]) == (None, None)
    assert shown(why(moved)) == [("b", 0, 1, None)]
    assert counts(why(moved)) == (1, {"excluded": 1, "unavailable": 1, "full": 0})


def test_a_wake_without_keep_passes_over_the_snoozer_and_one_with_keep_chose_nobody(
    db_url: str,
) -> None:
    def given(ev: Events) -> None:
        targets(ev, ("g1", None))
        ev.respondent("a", ["g1"], slots=2)
        ev.respondent("b", ["g1"])
        start(ev, "c0")  # a
        start(ev, "c1")  # b
        until = START + timedelta(minutes=10)
        ev.event("conversation.snoozed", conversation="c0", respondent="a", until=_z(until))
        ev.event("conversation.snoozed", conversation="c1", respondent="b", keep=False)
        post(ev, "c1")  # c1 wakes: a and b are free, b snoozed it

    run = both(db_url, given, until=START + timedelta(hours=1))
    c1_back = run.about("c1")[-1]
    assert (c1_back["data"]["respondent"], c1_back["data"]["cause"]) == ("a", "wake")
    assert shown(why(c1_back)) == [("a", 0, 2, run.about("c0")[0]["time"])]
    assert counts(why(c1_back)) == (1, NOBODY | {"excluded": 1})
    # c0 wakes by time, with keep: back to a, who has a free slot
    c0_back = run.about("c0")[-1]
    assert (c0_back["data"]["respondent"], c0_back["data"]["cause"]) == ("a", "wake")
    assert shown(why(c0_back)) == [("a", 1, 2, c1_back["time"])]
    assert counts(why(c0_back)) == (None, None)


def test_the_snoozer_alone_free_is_chosen_and_not_counted_excluded(db_url: str) -> None:
    def given(ev: Events) -> None:
        targets(ev, ("g1", None))
        ev.respondent("a", ["g1"])
        start(ev, "c0")
        ev.event("conversation.snoozed", conversation="c0", respondent="a", keep=False)
        post(ev, "c0")

    run = both(db_url, given)
    back = run.about("c0")[-1]
    assert (back["data"]["respondent"], back["data"]["cause"]) == ("a", "wake")
    assert counts(why(back)) == (1, NOBODY)


def test_a_reassignment_counts_the_one_it_moves_away_from_as_excluded(db_url: str) -> None:
    def given(ev: Events) -> None:
        ev.event("tenant.updated", reassign_after_s=600)
        targets(ev, ("g1", None))
        ev.respondent("a", ["g1"])
        ev.respondent("b", ["g1"], slots=2)
        ev.respondent("c", ["g1"])
        start(ev, "c0")  # a
        status(ev, "a", False)

    run = both(db_url, given, until=START + timedelta(hours=1))
    moved = run.about("c0")[-1]
    assert (moved["data"]["respondent"], moved["data"]["cause"]) == ("b", "reassign")
    assert shown(why(moved)) == [("b", 0, 2, None), ("c", 0, 1, None)]
    # a is away, but passed over first: each member counts once, under its first reason
    assert counts(why(moved)) == (2, NOBODY | {"excluded": 1})


def test_an_overflow_names_its_rule_the_target_it_reached_and_the_ones_it_skipped(
    db_url: str,
) -> None:
    def given(ev: Events) -> None:
        targets(ev, ("g1", 60), ("g2", None), ("g3", None), rule="chain")
        ev.event("group.updated", group="g2", hours=NEVER)
        ev.respondent("r1", ["g1"], available=False)
        ev.respondent("r3", ["g3"])
        start(ev, "c1")

    run = both(db_url, given, until=START + timedelta(minutes=10))
    waited, moved = run.about("c1")
    assert (waited["type"], why(waited)["rule"], why(waited)["target"]) == (
        "conversation.queued",
        "chain",
        0,
    )
    assert counts(why(waited)) == (0, NOBODY | {"unavailable": 1})
    assert moved["data"]["cause"] == "overflow"
    assert why(moved) | {"candidates": None} == {
        "rule": "chain",
        "target": 2,
        "skipped": [{"group": "g2", "why": "closed"}],
        "candidates": None,
        "eligible": 1,
        "ineligible": NOBODY,
    }
    assert shown(why(moved)) == [("r3", 0, 1, None)]


def test_a_missed_answer_deadline_excludes_whoever_missed_it(db_url: str) -> None:
    def given(ev: Events) -> None:
        ev.event("tenant.updated", answer_within_s=60)
        targets(ev, ("g1", None))
        ev.respondent("a", ["g1"])
        ev.respondent("b", ["g1"])
        start(ev, "c0")  # a, who never answers

    run = both(db_url, given, until=START + timedelta(minutes=10))
    moved = run.about("c0")[1]  # (b misses it too, later)
    assert (moved["data"]["respondent"], moved["data"]["cause"]) == ("b", "no_answer")
    assert shown(why(moved)) == [("b", 0, 1, None)]
    assert counts(why(moved)) == (1, NOBODY | {"excluded": 1})


def test_a_sticky_assignment_chose_nobody_but_names_its_rule(db_url: str) -> None:
    def given(ev: Events) -> None:
        ev.event("tenant.updated", sticky_within_s=3600)
        targets(ev, ("g1", None))
        ev.respondent("a", ["g1"])
        ev.respondent("b", ["g1"])
        start(ev, "old", visitor="v")  # a
        post(ev, "old", "a")
        close(ev, "old")
        start(ev, "again", visitor="v")

    run = both(db_url, given)
    again = run.about("again")[0]
    assert again["data"]["sticky"] is True
    assert (why(again)["rule"], why(again)["target"], counts(why(again))) == (
        "all",
        0,
        (None, None),
    )
    assert [c[0] for c in shown(why(again))] == ["a"]


def test_unrouted_explains_each_code(db_url: str) -> None:
    def given(ev: Events) -> None:
        closed = [{"attribute": "to", "op": "eq", "value": "closed"}]
        full = [{"attribute": "to", "op": "eq", "value": "full"}]
        waits = [{"attribute": "to", "op": "eq", "value": "waits"}]
        targets(ev, ("shut", None), rule="r-closed", priority=1, conditions=closed)
        targets(ev, ("shut", None), ("small", None), rule="r-full", priority=2, conditions=full)
        targets(ev, ("w", 30), rule="r-waits", priority=3, conditions=waits)
        ev.event("group.updated", group="shut", hours=NEVER)
        ev.event("group.updated", group="small", max_queue=1)
        start(ev, "no-rule", to="elsewhere")
        start(ev, "closed", to="closed")
        start(ev, "fills", to="full")  # queued: small's queue has room for one
        start(ev, "full", to="full")
        start(ev, "waits", to="waits")

    run = both(db_url, given, until=START + timedelta(minutes=5))
    unrouted = {d["data"]["conversation"]: d for d in run.of("conversation.unrouted")}
    closed, small = {"group": "shut", "why": "closed"}, {"group": "small", "why": "queue_full"}
    expected = {
        "no-rule": ("no_rule", None, []),
        "closed": ("closed", "r-closed", [closed]),
        "full": ("queue_full", "r-full", [closed, small]),
        "waits": ("wait_timeout", "r-waits", []),
    }
    assert {
        cid: (d["data"]["code"], why(d)["rule"], why(d)["skipped"]) for cid, d in unrouted.items()
    } == expected
    for decision in unrouted.values():
        assert why(decision)["target"] is None and shown(why(decision)) == []
        assert counts(why(decision)) == (None, None)


def _z(moment: Any) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
