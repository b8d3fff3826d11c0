"""``chatroute replay`` on SQLite: the contract's routing semantics, end to end through the
engine's intake and apply steps on the units of work in memory (``store.memory``), the stdout
relay, and the database the run is written to."""

from __future__ import annotations

import io
import json
import random
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from chatroute.settings import Settings
from chatroute.tools.replay import replay
from tests.builders import START, Events, jsonl, rfc3339

Decision = dict[str, Any]


def run(tmp_path: Path, *lines: bytes, until: Any = None, name: str = "replay") -> list[Decision]:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/{name}.db")
    out = io.StringIO()
    replay(settings, io.BytesIO(b"".join(lines)).readlines(), out, until=until)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def brief(decisions: list[Decision]) -> list[tuple[Any, ...]]:
    """(type, conversation, respondent or group or reason) per decision, for readable asserts."""
    out = []
    for d in decisions:
        data = d["data"]
        detail = data.get("respondent") or data.get("group") or data.get("reason")
        if d["type"] == "conversation.queued":
            detail = (data["group"], data["position"])
        out.append((d["type"], data.get("conversation"), detail))
    return out


@pytest.fixture
def shop() -> Events:
    return Events("shop-1")


def test_rules_by_priority_then_rule_id_first_match_wins(tmp_path: Path, shop: Events) -> None:
    # Given rules of several priorities and operators, and one free respondent per group
    for group in ("Phones", "Laptops", "French", "Fallback"):
        shop.respondent(f"r-{group}", [group], slots=5)
    shop.rule("b-any", "Fallback", priority=50)
    shop.rule(
        "a-fr",
        "French",
        priority=20,
        conditions=[{"attribute": "language", "op": "in", "value": ["fr", "be"]}],
    )
    shop.rule(
        "z-phones",
        "Phones",
        priority=10,
        conditions=[{"attribute": "url", "op": "prefix", "value": "https://s/phones"}],
    )
    shop.rule(
        "y-laptops",
        "Laptops",
        priority=10,
        conditions=[{"attribute": "url", "op": "contains", "value": "laptop"}],
    )
    shop.rule(
        "a-exact",
        "Phones",
        priority=30,
        conditions=[{"attribute": "page", "op": "eq", "value": "home"}],
    )
    # When conversations start with various attributes
    shop.start("c1", url="https://s/phones/laptop-cases")  # both priority 10 match: rule id y < z
    shop.start("c2", url="https://s/phones/x")
    shop.start("c3", url="https://s/x", language="be")
    shop.start("c4", page="home")
    shop.start("c5", page="homepage")
    decisions = run(tmp_path, jsonl(shop.lines))
    # Then each goes to the first matching rule's group
    groups = {d["data"]["conversation"]: d["data"]["group"] for d in decisions}
    assert groups == {
        "c1": "Laptops",
        "c2": "Phones",
        "c3": "French",
        "c4": "Phones",
        "c5": "Fallback",
    }


def test_no_rule_matches_gives_unrouted(tmp_path: Path, shop: Events) -> None:
    shop.rule("fr", "French", conditions=[{"attribute": "language", "op": "eq", "value": "fr"}])
    shop.start("c1", language="de")
    shop.start("c2")
    assert brief(run(tmp_path, jsonl(shop.lines))) == [
        ("conversation.unrouted", "c1", "no rule matched"),
        ("conversation.unrouted", "c2", "no rule matched"),
    ]


def test_tie_breaks_load_then_oldest_assignment_then_never_assigned_then_id(
    tmp_path: Path, shop: Events
) -> None:
    # Given four respondents with two slots each in one group
    shop.rule("all", "G")
    for rid in ("d", "c", "b", "a"):
        shop.respondent(rid, ["G"], slots=2)
    # When eight conversations start one after another
    for n in range(1, 9):
        shop.start(f"c{n}")
    assigned = [d["data"]["respondent"] for d in run(tmp_path, jsonl(shop.lines))]
    # Then the never-assigned go first by id, then the oldest assignment, load permitting
    assert assigned == ["a", "b", "c", "d", "a", "b", "c", "d"]


def test_lower_load_beats_older_assignment(tmp_path: Path, shop: Events) -> None:
    shop.rule("all", "G")
    shop.respondent("a", ["G"], slots=3)
    shop.respondent("b", ["G"], slots=3)
    shop.start("c1")  # a (never assigned, id)
    shop.start("c2")  # b
    shop.start("c3")  # a (older assignment)
    shop.event("conversation.closed", conversation="c2")  # b: load 0, assigned more recently
    shop.start("c4")  # b has the lower load
    assigned = [d["data"]["respondent"] for d in run(tmp_path, jsonl(shop.lines))]
    assert assigned == ["a", "b", "a", "b"]


def test_slots_full_queue_positions_and_fifo_dequeue(tmp_path: Path, shop: Events) -> None:
    # Given one respondent with two slots
    shop.rule("all", "G")
    shop.respondent("a", ["G"], slots=2)
    for n in range(1, 6):
        shop.start(f"c{n}")
    # When conversations close one by one
    shop.event("conversation.closed", conversation="c2")
    shop.event("conversation.closed", conversation="c1")
    decisions = brief(run(tmp_path, jsonl(shop.lines)))
    # Then the third to fifth queue at positions 1..3 and leave the queue oldest first
    assert decisions == [
        ("conversation.assigned", "c1", "a"),
        ("conversation.assigned", "c2", "a"),
        ("conversation.queued", "c3", ("G", 1)),
        ("conversation.queued", "c4", ("G", 2)),
        ("conversation.queued", "c5", ("G", 3)),
        ("conversation.assigned", "c3", "a"),
        ("conversation.assigned", "c4", "a"),
    ]
    assert [
        d
        for d in run(tmp_path, jsonl(shop.lines), name="again")
        if d["data"].get("cause") == "queue"
    ]


def test_queue_served_when_respondent_becomes_available_or_gets_more_slots(
    tmp_path: Path, shop: Events
) -> None:
    shop.rule("all", "G")
    shop.respondent("a", ["G"], slots=1, available=False)
    shop.start("c1")
    shop.start("c2")
    shop.start("c3")
    shop.event("respondent.status", respondent="a", status="available")
    shop.event("respondent.updated", respondent="a", groups=["G"], slots=3)
    decisions = run(tmp_path, jsonl(shop.lines))
    assert [(d["type"], d["data"]["conversation"], d["data"].get("cause")) for d in decisions] == [
        ("conversation.queued", "c1", "new"),
        ("conversation.queued", "c2", "new"),
        ("conversation.queued", "c3", "new"),
        ("conversation.assigned", "c1", "queue"),
        ("conversation.assigned", "c2", "queue"),
        ("conversation.assigned", "c3", "queue"),
    ]


def test_queue_is_fifo_across_groups_of_the_freed_respondent(tmp_path: Path, shop: Events) -> None:
    shop.rule("fr", "FR", priority=1, conditions=[{"attribute": "l", "op": "eq", "value": "fr"}])
    shop.rule("en", "EN", priority=2)
    shop.respondent("a", ["FR", "EN"], slots=1, available=False)
    shop.start("c1", l="en")
    shop.start("c2", l="fr")
    shop.event("respondent.status", respondent="a", status="available")
    decisions = brief(run(tmp_path, jsonl(shop.lines)))
    assert decisions[-1] == ("conversation.assigned", "c1", "a")


def test_a_duplicate_event_decides_nothing(tmp_path: Path, shop: Events) -> None:
    shop.rule("all", "G")
    shop.respondent("a", ["G"], slots=1)
    shop.start("c1")
    once = run(tmp_path, jsonl(shop.lines), name="once")
    twice = run(tmp_path, jsonl(shop.lines + shop.lines[-2:] + shop.lines), name="twice")
    assert twice == once


def test_decision_ids_are_deterministic_and_carry_their_cause(tmp_path: Path, shop: Events) -> None:
    shop.rule("all", "G")
    shop.respondent("a", ["G"], slots=1)
    shop.start("c1")
    shop.start("c2")
    shop.event("conversation.closed", conversation="c1")
    first = run(tmp_path, jsonl(shop.lines), name="first")
    second = run(tmp_path, jsonl(shop.lines), name="second")
    assert first == second
    assert len({d["id"] for d in first}) == len(first)
    ids = {e["id"] for e in shop.lines}
    assert all(d["causationid"] in ids for d in first)
    assert first[-1]["causationid"] == shop.lines[-1]["id"]
    assert all(d["specversion"] == "1.0" and d["tenant"] == "shop-1" for d in first)


def test_tenants_are_isolated(tmp_path: Path) -> None:
    # Given two tenants using the same ids
    a, b = Events("shop-a"), Events("shop-b")
    for events in (a, b):
        events.rule("all", "G")
    a.respondent("r1", ["G"], slots=1)
    a.start("c1")
    b.start("c1")  # tenant b has no respondent: queued, a's r1 is never considered
    b.event("conversation.transferred", conversation="c1", respondent="r1", to_respondent="r1")
    b.event("respondent.status", respondent="r1", status="available")
    decisions = run(tmp_path, jsonl(a.lines + b.lines))
    by_tenant = {(d["tenant"], d["type"]) for d in decisions}
    assert ("shop-a", "conversation.assigned") in by_tenant
    assert ("shop-b", "conversation.queued") in by_tenant
    rejected = [d["data"]["reason"] for d in decisions if d["type"] == "event.rejected"]
    assert len(rejected) == 2 and all("r1" in reason for reason in rejected)


@pytest.mark.parametrize(
    ("line", "reason_part"),
    [
        (b"not json", "JSON"),
        (b'{"specversion": "1.0"}', "id"),
        (b"[1, 2]", "object"),
    ],
)
def test_bad_input_is_rejected_with_a_reason_and_the_run_goes_on(
    tmp_path: Path, shop: Events, line: bytes, reason_part: str
) -> None:
    shop.rule("all", "G")
    shop.respondent("a", ["G"])
    shop.start("c1")
    decisions = run(tmp_path, line + b"\n", jsonl(shop.lines))
    assert decisions[0]["type"] == "event.rejected"
    assert reason_part.lower() in decisions[0]["data"]["reason"].lower()
    assert decisions[-1]["type"] == "conversation.assigned"


def test_ill_typed_field_is_rejected_naming_the_field(tmp_path: Path, shop: Events) -> None:
    event = shop.event("respondent.updated", respondent="a", groups=["G"], slots=-1)
    decisions = run(tmp_path, jsonl([event]))
    assert decisions[0]["type"] == "event.rejected"
    assert decisions[0]["data"]["event_id"] == event["id"]
    assert decisions[0]["data"]["type"] == "respondent.updated"
    assert "slots" in decisions[0]["data"]["reason"]


def test_event_for_a_conversation_started_later_waits_then_applies(
    tmp_path: Path, shop: Events
) -> None:
    shop.rule("all", "G")
    shop.respondent("a", ["G"], slots=1)
    shop.event("visitor.presence", conversation="c1", online=False)
    shop.event("message.posted", conversation="c1", author="respondent", respondent="a")
    shop.start("c1")
    decisions = brief(run(tmp_path, jsonl(shop.lines)))
    assert decisions == [("conversation.assigned", "c1", "a"), ("visitor.notify", "c1", None)]


def test_a_waiting_event_applies_as_sent_though_its_id_came_again_with_another_body(
    tmp_path: Path, shop: Events
) -> None:
    # replay hands intake and apply the events it parsed: the one applied is the inbox's
    shop.rule("all", "G")
    shop.respondent("a", ["G"], slots=1)
    offline = shop.event("visitor.presence", conversation="c1", online=False)
    reused = {**offline, "data": {"conversation": "c1", "online": True}}
    shop.lines.append(reused)
    shop.event("message.posted", conversation="c1", author="respondent", respondent="a")
    shop.start("c1")
    decisions = brief(run(tmp_path, jsonl(shop.lines)))
    reason = f"id {offline['id']!r} was already used by a different event"
    assert decisions == [
        ("event.rejected", None, reason),
        ("conversation.assigned", "c1", "a"),
        ("visitor.notify", "c1", None),  # the visitor is offline, as the first body said
    ]


def test_event_for_a_conversation_never_started_is_rejected(tmp_path: Path, shop: Events) -> None:
    shop.event("conversation.closed", conversation="ghost")
    decisions = run(tmp_path, jsonl(shop.lines))
    assert [d["type"] for d in decisions] == ["event.rejected"]
    assert "ghost" in decisions[0]["data"]["reason"]


def test_timers_fire_by_until_after_the_last_event(tmp_path: Path, shop: Events) -> None:
    shop.rule("all", "G")
    shop.respondent("a", ["G"], slots=1)
    shop.start("c1")
    shop.event(
        "conversation.snoozed",
        conversation="c1",
        respondent="a",
        until=(START + timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    without = brief(run(tmp_path, jsonl(shop.lines), name="without"))
    with_until = brief(
        run(tmp_path, jsonl(shop.lines), until=START + timedelta(hours=4), name="with")
    )
    assert [d[0] for d in without] == ["conversation.assigned", "conversation.snoozed"]
    assert [d[0] for d in with_until] == [
        "conversation.assigned",
        "conversation.snoozed",
        "conversation.woken",
        "conversation.assigned",
    ]


def test_an_event_that_hits_a_bug_is_set_aside_and_the_tenant_goes_on(
    tmp_path: Path, shop: Events, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a handler bug that strikes one event
    from chatroute.domain import lifecycle

    real_handle = lifecycle.handle

    def buggy(view: Any, command: Any, now: Any) -> Any:
        if getattr(command, "visitor", None) == "v-poison":
            raise ZeroDivisionError("a bug")
        return real_handle(view, command, now)

    monkeypatch.setattr(lifecycle, "handle", buggy)
    shop.rule("all", "G")
    shop.respondent("a", ["G"], slots=2)
    shop.start("c1")
    shop.start("poison")
    shop.start("c2")
    # When the events are applied together, then the bug's event is rejected, the rest decided
    decisions = brief(run(tmp_path, jsonl(shop.lines)))
    assert decisions[:2] == [
        ("conversation.assigned", "c1", "a"),
        ("event.rejected", None, "internal error (ZeroDivisionError('a bug')); event set aside"),
    ]
    assert decisions[2:] == [("conversation.assigned", "c2", "a")]


def mixed_day(seed: int) -> list[bytes]:
    """Three tenants interleaved, with what makes batching hard: short reassignment and snooze
    timers of every tenant, status flaps, events before their conversation's start, events of
    conversations never started, invalid lines, duplicates and times that go backwards."""
    rng = random.Random(seed)
    streams: list[list[bytes]] = []
    for t in range(3):
        shop = Events(f"t{t}", step=timedelta(seconds=rng.choice([1, 4, 9])))
        shop.event("tenant.updated", reassign_after_s=rng.choice([30, 90]))
        shop.rule("all", "G")
        shop.respondent("a", ["G"], slots=3)
        shop.respondent("b", ["G"], slots=2)
        for n in range(40):
            cid = f"c{n}"
            step = rng.random()
            if step < 0.1:  # a message that arrives before its conversation's start
                early = shop.event("message.posted", conversation=cid, author="visitor")
                shop.lines.remove(early)
                shop.start(cid)
                shop.lines.insert(len(shop.lines) - 1, early)
            else:
                shop.start(cid)
            who = rng.choice(["a", "b"])
            if step < 0.3:
                until = rfc3339(shop.now + timedelta(seconds=rng.choice([5, 40, 200])))
                shop.event("conversation.snoozed", conversation=cid, respondent=who, until=until)
            elif step < 0.45:
                shop.event(
                    "conversation.transferred", conversation=cid, respondent=who, to_respondent="b"
                )
            elif step < 0.55:
                shop.event("respondent.status", respondent=who, status="unavailable")
                shop.later(seconds=rng.choice([10, 100]))
                shop.event("respondent.status", respondent=who, status="available")
            elif step < 0.6:
                shop.event("message.posted", conversation=f"ghost{n}", author="visitor")
            elif step < 0.65:
                shop.later(minutes=-3)  # this tenant's clock goes back for a while
            if rng.random() < 0.5:
                shop.event("message.posted", conversation=cid, author="respondent", respondent=who)
            if rng.random() < 0.4:
                shop.event("conversation.closed", conversation=cid)
        lines = [json.dumps(e).encode() for e in shop.lines]
        for _ in range(4):
            lines.insert(rng.randrange(len(lines)), rng.choice(lines))  # a redelivery
        lines.insert(rng.randrange(len(lines)), b'{"oops"')
        streams.append(lines)
    merged: list[bytes] = []
    while any(streams):
        merged.append(rng.choice([s for s in streams if s]).pop(0))
    return merged


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_batched_replay_decides_exactly_what_line_by_line_replay_decides(
    tmp_path: Path, seed: int
) -> None:
    lines = [line + b"\n" for line in mixed_day(seed)]
    until = START + timedelta(days=2)
    outputs = {}
    for batch in (1, 200):
        settings = Settings(database_url=f"sqlite:///{tmp_path}/b{batch}.db", batch_size=batch)
        out = io.StringIO()
        replay(settings, lines, out, until=until)
        outputs[batch] = out.getvalue().splitlines()
    kinds = Counter(json.loads(line)["type"] for line in outputs[1])
    assert kinds["conversation.woken"] and kinds["conversation.pending"]
    assert kinds["event.rejected"] and kinds["conversation.queued"]
    assert outputs[200] == outputs[1]


def test_a_replay_into_the_database_of_an_earlier_one_goes_on_from_its_state(
    tmp_path: Path, shop: Events
) -> None:
    # Given a day whose second half needs what the first left: a queue, a snooze's timer, a
    # pending hold, a rating to replace, and a redelivery of a first-half event
    shop.rule("all", "G")
    shop.respondent("a", ["G"], slots=1)
    shop.respondent("b", ["G"], slots=1)
    shop.event("respondent.status", respondent="a", status="available")
    shop.start("c1")
    shop.start("c2")
    shop.start("c3")  # queued
    wake = rfc3339(shop.now + timedelta(minutes=30))
    shop.event("conversation.snoozed", conversation="c1", respondent="a", until=wake)
    shop.event("conversation.transferred", conversation="c3", respondent="a", to_respondent="b")
    shop.event("conversation.rated", conversation="c3", score=2)
    first_half = len(shop.lines)
    shop.later(hours=1)  # the wake timer falls due between the halves
    shop.event("respondent.status", respondent="b", status="available")
    shop.event("conversation.rated", conversation="c3", score=5)
    shop.event("conversation.sale", conversation="c3", amount=40.0)
    shop.event("conversation.closed", conversation="c3")
    shop.start("c4")
    redelivered = shop.lines[first_half - 1]
    lines = [json.dumps(event).encode() + b"\n" for event in shop.lines]
    # When it is replayed whole, and in two runs into one database
    whole = run(tmp_path, *lines, name="whole")
    first = run(tmp_path, *lines[:first_half], name="halves")
    second = run(tmp_path, *lines[first_half:], json.dumps(redelivered).encode(), name="halves")
    # Then the two runs decide what the whole did, the redelivery nothing, and count the same
    assert first + second == whole
    assert {d["type"] for d in second} >= {"conversation.woken", "conversation.assigned"}
    assert stats_of(tmp_path, "halves") == stats_of(tmp_path, "whole")


def stats_of(tmp_path: Path, name: str) -> list[dict[str, Any]]:
    from chatroute import bootstrap
    from chatroute import stats as service_stats

    settings = Settings(database_url=f"sqlite:///{tmp_path}/{name}.db")
    rt = bootstrap.build(settings)
    try:
        return service_stats.rows(rt)
    finally:
        rt.engine.dispose()


def test_a_timer_cancelled_by_one_fired_just_before_it_stays_cancelled(
    tmp_path: Path, shop: Events
) -> None:
    # Given a conversation whose holder left (reassignment in 2 h) and which idles (closed
    # after 1 h): both timers fall due before the run's end, and fire from one list
    shop.event("tenant.updated", reassign_after_s=7200, close_after_idle_s=3600)
    shop.rule("all", "G")
    shop.respondent("a", ["G"], slots=1)
    shop.event("respondent.status", respondent="a", status="available")
    shop.start("c1")
    shop.event("respondent.status", respondent="a", status="unavailable")
    # When the run ends three hours later
    decisions = run(tmp_path, jsonl(shop.lines), until=shop.now + timedelta(hours=3), name="t")
    # Then the idle close fired and cancelled the reassignment, which is not marked fired
    assert [d["type"] for d in decisions][-1] == "conversation.closed"
    assert timer_states(tmp_path, "t") == {"idle:c1:1": "fired", "reassign:c1:2": "cancelled"}


def timer_states(tmp_path: Path, name: str) -> dict[str, str]:
    import sqlite3

    with sqlite3.connect(tmp_path / f"{name}.db") as connection:
        return dict(connection.execute("SELECT timer_id, state FROM timers").fetchall())
