"""Routing policy v2 (contract "v2 additions", docs/semantics.md "Routing policy (v2)"),
end to end through ``chatroute replay`` on SQLite and PostgreSQL: overflow along a rule's
targets, business hours and queue caps, priority, sticky respondents, the answer deadline,
idle close, and the rejections of bad configuration.

Most scenarios run for two tenants with the same ids, interleaved in time order, in one
replay: each tenant must decide exactly what the other decides (no interference)."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select

from chatroute.domain.model import TimerState
from chatroute.settings import Settings
from chatroute.store import tables
from chatroute.tools.replay import replay
from schemas.decisions import DATA_MODELS
from schemas.decisions import Decision as DecisionModel
from tests.builders import START, Events, jsonl, rfc3339
from tests.integration.test_cli import chatroute

Decision = dict[str, Any]
Scenario = Callable[[Events], Any]

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "sample-day.jsonl"
TENANTS = ("shop-a", "shop-b")  # the same ids in both
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALWAYS = {"timezone": "UTC", "weekly": {day: [["00:00", "24:00"]] for day in DAYS}}
NEVER: dict[str, Any] = {"timezone": "UTC", "weekly": {}}
POLICY_DECISIONS = {"conversation.closed", "respondent.paused"}
QUEUED, ASSIGNED = "conversation.queued", "conversation.assigned"


# running a replay


def replay_text(url: str, lines: bytes, until: datetime | None = None) -> str:
    """The replay's stdout: one decision per line, in the order decided."""
    out = io.StringIO()
    replay(Settings(database_url=url), io.BytesIO(lines).readlines(), out, until=until)
    return out.getvalue()


def decide(url: str, events: list[dict[str, Any]], until: datetime | None = None) -> list[Decision]:
    return [json.loads(line) for line in replay_text(url, jsonl(events), until).splitlines()]


def _same_for_any_tenant(decision: Decision) -> Decision:
    """A decision without what names its tenant (its id, tenant, event ids in it)."""
    kept = {k: v for k, v in decision.items() if k not in ("id", "tenant")}
    return dict(json.loads(json.dumps(kept).replace(decision["tenant"], "T")))


class Run:
    """Decisions of one tenant (``shop-a``) of a two-tenant replay, and what the scenario
    returned (times, events) for that tenant."""

    def __init__(self, decisions: list[Decision], given: Any) -> None:
        self.decisions, self.given = decisions, given

    def of(self, *types: str) -> list[Decision]:
        return [d for d in self.decisions if not types or d["type"] in types]

    def about(self, conversation: str) -> list[Decision]:
        return [d for d in self.decisions if d["data"].get("conversation") == conversation]


def both(
    url: str, scenario: Scenario, until: datetime | Callable[[Any], datetime] | None = None
) -> Run:
    """Given ``scenario`` for two tenants with the same ids, in one replay, both interleaved
    in time order: each tenant's decisions are the other's (no interference). ``until`` may
    be computed from what the scenario returned."""
    streams = {tenant: Events(tenant) for tenant in TENANTS}
    given = {tenant: scenario(events) for tenant, events in streams.items()}
    if callable(until):
        until = until(given[TENANTS[0]])
    merged = sorted(
        (e for events in streams.values() for e in events.lines), key=lambda e: e["time"]
    )
    decisions = decide(url, merged, until)
    per_tenant = {t: [d for d in decisions if d["tenant"] == t] for t in TENANTS}
    first, second = (per_tenant[t] for t in TENANTS)
    assert [_same_for_any_tenant(d) for d in second] == [_same_for_any_tenant(d) for d in first]
    assert len(first) + len(second) == len(decisions)
    return Run(first, given[TENANTS[0]])


def rows(url: str, table: Any, tenant: str = TENANTS[0], **where: Any) -> list[dict[str, Any]]:
    """Rows of a table for one tenant after the replay."""
    engine = create_engine(url)
    try:
        query = select(table).where(table.c.tenant == tenant)
        for column, value in where.items():
            query = query.where(table.c[column] == value)
        with engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]
    finally:
        engine.dispose()


def armed(url: str) -> list[tuple[str, str]]:
    """(kind, conversation) of the timers still armed, the same for each tenant."""
    per_tenant = [
        sorted(
            (row["kind"], row["conversation_id"])
            for row in rows(url, tables.timers, tenant, state=TimerState.ARMED)
        )
        for tenant in TENANTS
    ]
    assert per_tenant[0] == per_tenant[1]
    return per_tenant[0]


def at(moment: datetime, **delta: float) -> str:
    return rfc3339(moment + timedelta(**delta))


def brief(decisions: list[Decision]) -> list[tuple[Any, ...]]:
    """(type, conversation or respondent, the main facts) per decision."""
    out: list[tuple[Any, ...]] = []
    for d in decisions:
        data, kind = d["data"], d["type"]
        if kind == "conversation.assigned":
            facts: Any = (data["respondent"], data["group"], data["cause"])
        elif kind == "conversation.queued":
            facts = (data["group"], data["position"], data["cause"])
        elif kind == "conversation.unrouted":
            facts = data["code"]
        elif kind == "respondent.paused":
            facts = (data["reason"], data["conversation"])
        elif kind == "event.rejected":
            facts = data["event_id"]
        else:
            facts = data.get("cause") or data.get("respondent")
        who = data["respondent"] if kind == "respondent.paused" else data.get("conversation")
        out.append((kind, who, facts))
    return out


# building events


def start(
    ev: Events, cid: str, visitor: str | None = None, priority: int | None = None, **attrs: str
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "conversation": cid,
        "visitor": visitor or f"v-{cid}",
        "attributes": attrs,
    }
    if priority is not None:
        data["priority"] = priority
    return ev.event("conversation.started", **data)


def targets(ev: Events, *chain: tuple[str, int | None], rule: str = "all", **more: Any) -> None:
    """Rule ``rule`` with targets (group, wait_s or None), in order."""
    listed = [{"group": g} if wait is None else {"group": g, "wait_s": wait} for g, wait in chain]
    ev.event(
        "rule.updated",
        rule=rule,
        targets=listed,
        priority=more.get("priority", 10),
        conditions=more.get("conditions", []),
    )


def post(ev: Events, cid: str, respondent: str | None = None) -> dict[str, Any]:
    if respondent is None:
        return ev.event("message.posted", conversation=cid, author="visitor")
    return ev.event("message.posted", conversation=cid, author="respondent", respondent=respondent)


def close(ev: Events, cid: str) -> dict[str, Any]:
    return ev.event("conversation.closed", conversation=cid)


def status(ev: Events, rid: str, available: bool) -> dict[str, Any]:
    return ev.event(
        "respondent.status", respondent=rid, status="available" if available else "unavailable"
    )


def ymd_hm(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


@pytest.fixture
def url(db_url: str) -> str:
    """Each scenario runs on SQLite and on PostgreSQL (the conftest's ``db_url``)."""
    return db_url


# overflow


def test_overflow_to_the_next_target_with_a_free_respondent(url: str) -> None:
    def given(ev: Events) -> dict[str, Any]:
        # Given rule targets g1 (wait 60 s) then g2, nobody in g1, r2 free in g2
        targets(ev, ("g1", 60), ("g2", None))
        ev.respondent("r2", ["g2"])
        # When c1 starts
        return start(ev, "c1")

    run = both(url, given, until=START + timedelta(minutes=10))
    # Then it queues at g1, and after 60 s there it goes to r2 (cause overflow)
    assert brief(run.about("c1")) == [
        ("conversation.queued", "c1", ("g1", 1, "new")),
        ("conversation.assigned", "c1", ("r2", "g2", "overflow")),
    ]
    queued, moved = run.about("c1")
    assert queued["time"] == run.given["time"]
    assert moved["time"] == at(datetime.fromisoformat(run.given["time"]), seconds=60)
    assert moved["causationid"].startswith("timer:overflow:c1:")
    assert "sticky" not in moved["data"]
    assert rows(url, tables.queue_entries) == []
    assert armed(url) == []


def test_overflow_without_a_free_respondent_queues_at_the_next_target_keeping_its_age(
    url: str,
) -> None:
    def given(ev: Events) -> dict[str, Any]:
        # Given rule "all": g1 (wait 60 s) then g2; rule "direct" straight to g2; nobody free
        targets(ev, ("g1", 60), ("g2", None))
        direct = [{"attribute": "to", "op": "eq", "value": "g2"}]
        targets(ev, ("g2", None), rule="direct", priority=1, conditions=direct)
        ev.respondent("r2", ["g2"], available=False)
        # When c1 queues at g1, then c2 at g2 30 s later
        first = start(ev, "c1")
        ev.later(seconds=29)
        start(ev, "c2", to="g2")
        return first

    run = both(url, given, until=START + timedelta(minutes=10))
    t1 = datetime.fromisoformat(run.given["time"])
    # Then c1 moves to g2 after its 60 s at g1, ahead of c2: it keeps the time it joined g1
    assert brief(run.of()) == [
        ("conversation.queued", "c1", ("g1", 1, "new")),
        ("conversation.queued", "c2", ("g2", 1, "new")),
        ("conversation.queued", "c1", ("g2", 1, "overflow")),
    ]
    assert run.of()[-1]["time"] == at(t1, seconds=60)
    # And it waits there: g2 has no wait_s, no timer is left
    assert armed(url) == []
    queue = sorted(rows(url, tables.queue_entries, group_id="g2"), key=lambda r: r["seq"])
    assert {r["conversation_id"] for r in queue} == {"c1", "c2"}


def test_a_chain_of_three_targets_skips_the_closed_middle_one(url: str) -> None:
    def given(ev: Events) -> dict[str, Any]:
        # Given targets g1 (60 s), g2 (60 s), g3; g2 closed all week though r2 is free there
        targets(ev, ("g1", 60), ("g2", 60), ("g3", None))
        ev.event("group.updated", group="g2", hours=NEVER)
        ev.respondent("r2", ["g2"])
        ev.respondent("r3", ["g3"], available=False)
        first = start(ev, "c1")
        # When r3 comes back 5 minutes later
        ev.later(minutes=5)
        status(ev, "r3", True)
        return first

    run = both(url, given, until=START + timedelta(hours=1))
    t1 = datetime.fromisoformat(run.given["time"])
    # Then after 60 s at g1 it skips g2 and queues at g3, where r3 takes it from the queue
    assert brief(run.about("c1")) == [
        ("conversation.queued", "c1", ("g1", 1, "new")),
        ("conversation.queued", "c1", ("g3", 1, "overflow")),
        ("conversation.assigned", "c1", ("r3", "g3", "queue")),
    ]
    assert run.about("c1")[1]["time"] == at(t1, seconds=60)
    assert armed(url) == []


def test_a_last_target_with_a_wait_ends_in_wait_timeout_and_it_stays_open(url: str) -> None:
    def given(ev: Events) -> dict[str, Any]:
        targets(ev, ("g1", 60), ("g2", 30))
        return start(ev, "c1")

    run = both(url, given, until=START + timedelta(hours=1))
    t1 = datetime.fromisoformat(run.given["time"])
    assert brief(run.about("c1")) == [
        ("conversation.queued", "c1", ("g1", 1, "new")),
        ("conversation.queued", "c1", ("g2", 1, "overflow")),
        ("conversation.unrouted", "c1", "wait_timeout"),
    ]
    assert [d["time"] for d in run.about("c1")] == [
        at(t1),
        at(t1, seconds=60),
        at(t1, seconds=90),
    ]
    (conversation,) = rows(url, tables.conversations, conversation_id="c1")
    assert (conversation["state"], conversation["group_id"]) == ("unrouted", "g2")
    assert rows(url, tables.queue_entries) == []


def test_the_wait_timer_is_cancelled_by_a_close(url: str) -> None:
    def given(ev: Events) -> None:
        targets(ev, ("g1", 60), ("g2", None))
        ev.respondent("r2", ["g2"])
        start(ev, "c1")
        ev.later(seconds=10)
        close(ev, "c1")

    run = both(url, given, until=START + timedelta(hours=1))
    # Then the overflow never happens: r2 never gets it
    assert brief(run.of()) == [("conversation.queued", "c1", ("g1", 1, "new"))]
    assert armed(url) == []
    (timer,) = rows(url, tables.timers, kind="overflow")
    assert timer["state"] == TimerState.CANCELLED


def test_the_wait_timer_is_cancelled_by_an_assignment_from_the_queue_and_a_transfer(
    url: str,
) -> None:
    def given(ev: Events) -> dict[str, Any]:
        # Given c1 queued at g1 (wait 60 s) before g2
        targets(ev, ("g1", 60), ("g2", None))
        ev.respondent("r1", ["g1"], available=False)
        ev.respondent("r2", ["g2"], slots=0)
        first = start(ev, "c1")
        # When r1 takes it from the queue, then transfers it to g2 where nobody is free
        ev.later(seconds=10)
        status(ev, "r1", True)
        ev.later(seconds=10)
        ev.event("conversation.transferred", conversation="c1", respondent="r1", to_group="g2")
        return first

    run = both(url, given, until=START + timedelta(hours=1))
    # Then it waits in g2's queue (queued by a transfer: no overflow), and the old wait
    # timer of g1 never fires
    assert brief(run.of()) == [
        ("conversation.queued", "c1", ("g1", 1, "new")),
        ("conversation.assigned", "c1", ("r1", "g1", "queue")),
        ("conversation.queued", "c1", ("g2", 1, "transfer")),
    ]
    assert not [d for d in run.of() if d["causationid"].startswith("timer:")]
    assert armed(url) == []
    (timer,) = rows(url, tables.timers, kind="overflow")
    assert timer["state"] == TimerState.CANCELLED
    (entry,) = rows(url, tables.queue_entries)
    assert (entry["conversation_id"], entry["group_id"]) == ("c1", "g2")


# queue caps


@pytest.mark.parametrize("cap", [0, 2])
def test_max_queue_skips_a_full_target_and_unroutes_when_all_are_full(url: str, cap: int) -> None:
    def given(ev: Events) -> None:
        # Given targets g1 (max_queue cap), g2 (max_queue 1), r1 of g1 away
        targets(ev, ("g1", None), ("g2", None))
        ev.event("group.updated", group="g1", max_queue=cap)
        ev.event("group.updated", group="g2", max_queue=1)
        ev.respondent("r1", ["g1"], available=False)
        # When cap + 2 conversations start, r1 comes back, and one more starts
        for n in range(1, cap + 1):
            start(ev, f"c{n}")
        start(ev, "x1")
        start(ev, "x2")
        status(ev, "r1", True)
        start(ev, "y")

    run = both(url, given)
    # Then g1 takes cap, g2 one, the next is unrouted (queue_full)
    expected = [("conversation.queued", f"c{n}", ("g1", n, "new")) for n in range(1, cap + 1)]
    expected += [
        ("conversation.queued", "x1", ("g2", 1, "new")),
        ("conversation.unrouted", "x2", "queue_full"),
    ]
    if cap == 0:
        # and a free respondent still takes a new conversation at a cap of 0
        expected += [("conversation.assigned", "y", ("r1", "g1", "new"))]
    else:
        # r1 takes g1's first, which makes room in g1 for y
        expected += [
            ("conversation.assigned", "c1", ("r1", "g1", "queue")),
            ("conversation.queued", "y", ("g1", cap, "new")),
        ]
    assert brief(run.of()) == expected
    unrouted = run.about("x2")[0]["data"]
    assert unrouted["reason"] and unrouted["code"] == "queue_full"


def test_all_targets_closed_gives_closed_and_a_closed_and_a_full_one_queue_full(url: str) -> None:
    def given(ev: Events) -> None:
        targets(ev, ("g1", None), ("g2", None))
        ev.event("group.updated", group="g1", hours=NEVER)
        ev.event("group.updated", group="g2", hours=NEVER)
        start(ev, "c1")
        ev.event("group.updated", group="g2", hours=ALWAYS, max_queue=0)
        start(ev, "c2")

    run = both(url, given)
    assert brief(run.of()) == [
        ("conversation.unrouted", "c1", "closed"),
        ("conversation.unrouted", "c2", "queue_full"),
    ]


# priority


def test_priority_ties_are_broken_by_joining_time_then_order(url: str) -> None:
    def given(ev: Events) -> None:
        # Given a queue that r1 (away) will serve
        targets(ev, ("g1", None))
        ev.respondent("r1", ["g1"], slots=10, available=False)
        start(ev, "low", priority=-5)
        start(ev, "a")
        start(ev, "vip", priority=10)
        start(ev, "b", priority=0)
        ev.step = timedelta(0)  # c and d join in the same second
        start(ev, "c")
        start(ev, "d")
        ev.step = timedelta(seconds=1)
        start(ev, "vip2", priority=10)
        # When r1 comes back
        status(ev, "r1", True)

    run = both(url, given)
    # Then positions are announced by (priority, joining time, order), and served in it
    assert [(d["data"]["conversation"], d["data"]["position"]) for d in run.of(QUEUED)] == [
        ("low", 1),
        ("a", 1),
        ("vip", 1),
        ("b", 3),
        ("c", 4),
        ("d", 5),
        ("vip2", 2),
    ]
    served = [d["data"]["conversation"] for d in run.of(ASSIGNED)]
    assert served == ["vip", "vip2", "a", "b", "c", "d", "low"]


def test_prioritizing_a_queued_conversation_re_announces_it_and_others_decide_nothing(
    url: str,
) -> None:
    def given(ev: Events) -> dict[str, Any]:
        targets(ev, ("g1", None))
        ev.respondent("r1", ["g1"])
        start(ev, "c1")  # r1
        # When c1, assigned, is prioritized: no decision, it keeps the priority
        ev.event("conversation.prioritized", conversation="c1", priority=50)
        start(ev, "c2")  # queued 1
        start(ev, "c3")  # queued 2
        # c3 is prioritized in the queue: a new conversation.queued, same cause
        ev.event("conversation.prioritized", conversation="c3", priority=60)
        # c1 is transferred back to g1: r1 takes c3, c1 queues with its priority 50
        ev.event("conversation.transferred", conversation="c1", respondent="r1", to_group="g1")
        # and a prioritization of a queued-by-transfer conversation keeps its cause
        ev.event("conversation.prioritized", conversation="c1", priority=-1)
        close(ev, "c3")  # r1 takes c2
        close(ev, "c2")  # r1 takes c1
        close(ev, "c1")
        return ev.event("conversation.prioritized", conversation="c1", priority=5)

    run = both(url, given)
    assert brief(run.of()) == [
        ("conversation.assigned", "c1", ("r1", "g1", "new")),
        ("conversation.queued", "c2", ("g1", 1, "new")),
        ("conversation.queued", "c3", ("g1", 2, "new")),
        ("conversation.queued", "c3", ("g1", 1, "new")),
        ("conversation.assigned", "c3", ("r1", "g1", "queue")),
        ("conversation.queued", "c1", ("g1", 1, "transfer")),
        ("conversation.queued", "c1", ("g1", 2, "transfer")),
        ("conversation.assigned", "c2", ("r1", "g1", "queue")),
        ("conversation.assigned", "c1", ("r1", "g1", "queue")),
        ("event.rejected", None, run.given["id"]),
    ]
    assert "closed" in run.of("event.rejected")[0]["data"]["reason"]


# sticky


@pytest.mark.parametrize(
    ("case", "sticky"),
    [
        ("free", True),
        ("full", False),
        ("unavailable", False),
        ("other_group", False),
        ("window_over", False),
        ("window_edge", True),
    ],
)
def test_sticky_goes_to_the_previous_respondent_only_when_free_in_the_group_and_in_time(
    url: str, case: str, sticky: bool
) -> None:
    def given(ev: Events) -> None:
        # Given sticky routing for an hour, r1 and r2 in g1
        ev.event("tenant.updated", sticky_within_s=3600)
        targets(ev, ("g1", None))
        ev.respondent("r1", ["g1"], slots=1)
        ev.respondent("r2", ["g1"], slots=2)
        # and visitor v's conversation answered by r1 (never-assigned r1 goes first by id)
        start(ev, "old", visitor="v")
        post(ev, "old", "r1")
        if case != "full":
            close(ev, "old")
        if case == "unavailable":
            status(ev, "r1", False)
        elif case == "other_group":
            ev.event("respondent.updated", respondent="r1", groups=["g2"], slots=1)
        elif case == "window_over":
            ev.later(seconds=3600)  # the next event is 3601 s after the close
        elif case == "window_edge":
            ev.later(seconds=3599)  # exactly 3600 s after the close
        # When v starts a new conversation (r2, never assigned, would be the normal choice)
        start(ev, "new", visitor="v")

    run = both(url, given)
    new = run.about("new")
    assert len(new) == 1 and new[0]["type"] == ASSIGNED
    why = new[0]["data"].pop("explain")
    assert why["target"] == 0 and why["rule"] is not None
    chosen = why["candidates"][0]["respondent"]
    # a sticky assignment chooses nobody among the members; otherwise r2 is the best of them
    assert (chosen, why["eligible"] is None) == (("r1", True) if sticky else ("r2", False))
    if sticky:
        assert new[0]["data"] == {
            "conversation": "new",
            "respondent": "r1",
            "group": "g1",
            "cause": "new",
            "sticky": True,
        }
    else:
        assert new[0]["data"] == {
            "conversation": "new",
            "respondent": "r2",
            "group": "g1",
            "cause": "new",
        }


# answer deadline


def test_the_answer_deadline_stops_during_a_snooze_and_restarts_from_the_wake(url: str) -> None:
    def given(ev: Events) -> datetime:
        ev.event("tenant.updated", answer_within_s=120)
        targets(ev, ("g1", None))
        ev.respondent("r1", ["g1"])
        ev.respondent("r2", ["g1"])
        t1 = datetime.fromisoformat(start(ev, "c1")["time"])  # r1
        ev.at(t1 + timedelta(seconds=100))
        ev.event(
            "conversation.snoozed",
            conversation="c1",
            respondent="r1",
            until=at(t1, seconds=700),
            keep=True,
        )
        return t1

    run = both(url, given, until=lambda t1: t1 + timedelta(seconds=900))
    t1 = run.given
    # Then nothing at t1+120 (asleep); woken back to r1 at t1+700, which starts a new
    # deadline: missed at t1+820, it goes to r2
    assert timeline(run.about("c1")) == [
        ("conversation.assigned", "c1", ("r1", "g1", "new"), at(t1)),
        ("conversation.snoozed", "c1", "r1", at(t1, seconds=100)),
        ("conversation.woken", "c1", "timer", at(t1, seconds=700)),
        ("conversation.assigned", "c1", ("r1", "g1", "wake"), at(t1, seconds=700)),
        ("conversation.assigned", "c1", ("r2", "g1", "no_answer"), at(t1, seconds=820)),
    ]
    assert armed(url) == [("answer", "c1")]  # r2's own deadline, due after --until


def test_the_answer_deadline_restarts_for_the_recipient_of_a_transfer(url: str) -> None:
    def given(ev: Events) -> datetime:
        ev.event("tenant.updated", answer_within_s=120)
        targets(ev, ("g1", None))
        ev.respondent("r1", ["g1"])
        ev.respondent("r2", ["g1"])
        t1 = datetime.fromisoformat(start(ev, "c1")["time"])  # r1
        ev.at(t1 + timedelta(seconds=100))
        ev.event("conversation.transferred", conversation="c1", respondent="r1", to_respondent="r2")
        # r1 gets it back at t1+220 and answers: no deadline after that
        ev.at(t1 + timedelta(seconds=250))
        post(ev, "c1", "r1")
        return t1

    run = both(url, given, until=START + timedelta(hours=2))
    t1 = run.given
    assert timeline(run.of()) == [
        ("conversation.assigned", "c1", ("r1", "g1", "new"), at(t1)),
        ("conversation.assigned", "c1", ("r2", "g1", "transfer"), at(t1, seconds=100)),
        ("conversation.assigned", "c1", ("r1", "g1", "no_answer"), at(t1, seconds=220)),
    ]
    assert armed(url) == []


def test_pause_on_no_answer_pauses_and_their_other_conversations_are_reassigned(
    url: str,
) -> None:
    def given(ev: Events) -> datetime:
        # Given a 120 s deadline that pauses, reassignment after 300 s; r2 has no slot yet
        ev.event(
            "tenant.updated", answer_within_s=120, pause_on_no_answer=True, reassign_after_s=300
        )
        targets(ev, ("g1", None))
        ev.respondent("r1", ["g1"], slots=2)
        ev.respondent("r2", ["g1"], slots=0)
        t1 = datetime.fromisoformat(start(ev, "c1")["time"])  # r1, never answered
        start(ev, "c2")  # r1, answered
        post(ev, "c2", "r1")
        # When r2 gets slots after r1 missed c1, then c3 starts
        ev.at(t1 + timedelta(seconds=130))
        ev.event("respondent.updated", respondent="r2", groups=["g1"], slots=3)
        post(ev, "c1", "r2")
        ev.at(t1 + timedelta(seconds=140))
        start(ev, "c3")
        post(ev, "c3", "r2")
        return t1

    run = both(url, given, until=lambda t1: t1 + timedelta(seconds=500))
    t1 = run.given
    # Then c1 queues (r1 excluded), r1 is paused naming c1; r2 takes c1 from the queue,
    # c3 goes to r2 (r1 paused), and c2, held by the paused r1, is reassigned 300 s later
    later = [d for d in run.of() if d["time"] > at(t1, seconds=1)]
    assert timeline(later) == [
        ("conversation.queued", "c1", ("g1", 1, "no_answer"), at(t1, seconds=120)),
        ("respondent.paused", "r1", ("no_answer", "c1"), at(t1, seconds=120)),
        ("conversation.assigned", "c1", ("r2", "g1", "queue"), at(t1, seconds=130)),
        ("conversation.assigned", "c3", ("r2", "g1", "new"), at(t1, seconds=140)),
        ("conversation.assigned", "c2", ("r2", "g1", "reassign"), at(t1, seconds=420)),
    ]
    assert later[1]["data"] == {"respondent": "r1", "reason": "no_answer", "conversation": "c1"}
    (r1,) = rows(url, tables.respondents, respondent_id="r1")
    assert r1["status"] == "unavailable"  # until they send respondent.status


# idle close


@pytest.mark.parametrize("where", ["queued", "pending"])
def test_idle_close_closes_queued_and_pending_conversations(url: str, where: str) -> None:
    def given(ev: Events) -> dict[str, Any]:
        # Given idle close after 600 s; r1 with one slot
        ev.event("tenant.updated", close_after_idle_s=600)
        targets(ev, ("g1", None))
        ev.respondent("r1", ["g1"], slots=1)
        first = start(ev, "c1")  # r1
        t1 = datetime.fromisoformat(first["time"])
        if where == "queued":
            idle = start(ev, "c2")  # queued; c1 stays active
            ev.at(t1 + timedelta(seconds=300))
            post(ev, "c1")
            ev.at(t1 + timedelta(seconds=590))
            post(ev, "c1", "r1")
        else:
            ev.respondent("r2", ["g1"], slots=0)
            ev.event(
                "conversation.transferred", conversation="c1", respondent="r1", to_respondent="r2"
            )
            idle = first
        # When the frontend closes it after the engine did, then posts to it
        started = datetime.fromisoformat(idle["time"])
        ev.at(started + timedelta(seconds=650))
        close(ev, idle["data"]["conversation"])
        posted = post(ev, idle["data"]["conversation"])
        return {"cid": idle["data"]["conversation"], "started": started, "posted": posted}

    run = both(url, given, until=START + timedelta(minutes=15))
    cid, started = run.given["cid"], run.given["started"]
    state = "conversation.queued" if where == "queued" else "conversation.pending"
    closed = run.of("conversation.closed")
    # Then it is closed 600 s after its start, from its queue or hold
    assert [d["type"] for d in run.about(cid)][-2:] == [state, "conversation.closed"]
    assert [(d["data"], d["time"]) for d in closed] == [
        ({"conversation": cid, "cause": "idle"}, at(started, seconds=600))
    ]
    assert closed[0]["causationid"].startswith(f"timer:idle:{cid}:")
    # and the frontend's close yields nothing, a later message is rejected
    assert brief(run.of("event.rejected")) == [("event.rejected", None, run.given["posted"]["id"])]
    assert "closed" in run.of("event.rejected")[0]["data"]["reason"]
    (conversation,) = rows(url, tables.conversations, conversation_id=cid)
    assert conversation["state"] == "closed"
    assert rows(url, tables.queue_entries, conversation_id=cid) == []
    assert rows(url, tables.pending_holds, conversation_id=cid) == []
    assert [t for t in armed(url) if t[1] == cid] == []


# hours across daylight-saving changes


PARIS = {
    "timezone": "Europe/Paris",
    "weekly": {
        **{day: [["09:00", "18:00"]] for day in DAYS},
        "sun": [["02:00", "03:00"], ["09:00", "18:00"]],
    },
    "closed": ["2026-12-25"],
}
NEW_YORK = {
    "timezone": "America/New_York",
    "weekly": {
        **{day: [["09:00", "18:00"]] for day in DAYS},
        "sun": [["01:00", "03:00"], ["09:00", "18:00"]],
    },
}
# (zone, UTC moment, open?): local time in the comment
PROBES = [
    # Paris, spring forward on Sun 29 March 2026, 02:00 CET -> 03:00 CEST
    ("paris", "2026-03-28 07:30", False),  # Sat 08:30 CET
    ("paris", "2026-03-28 08:00", True),  # Sat 09:00 CET
    ("paris", "2026-03-28 16:59", True),  # Sat 17:59 CET
    ("paris", "2026-03-28 17:00", False),  # Sat 18:00 CET
    ("paris", "2026-03-29 00:59", False),  # Sun 01:59 CET
    ("paris", "2026-03-29 01:00", False),  # Sun 03:00 CEST: 02:00-03:00 never happened
    ("paris", "2026-03-29 01:30", False),  # Sun 03:30 CEST
    ("paris", "2026-03-29 06:59", False),  # Sun 08:59 CEST
    ("paris", "2026-03-29 07:00", True),  # Sun 09:00 CEST
    ("paris", "2026-03-29 15:59", True),  # Sun 17:59 CEST
    ("paris", "2026-03-29 16:00", False),  # Sun 18:00 CEST
    ("paris", "2026-03-30 07:30", True),  # Mon 09:30 CEST (the same UTC was closed on Sat)
    # New York, spring forward on Sun 8 March 2026, 02:00 EST -> 03:00 EDT
    ("ny", "2026-03-07 13:59", False),  # Sat 08:59 EST
    ("ny", "2026-03-07 14:00", True),  # Sat 09:00 EST
    ("ny", "2026-03-07 22:59", True),  # Sat 17:59 EST
    ("ny", "2026-03-07 23:00", False),  # Sat 18:00 EST
    ("ny", "2026-03-08 05:59", False),  # Sun 00:59 EST
    ("ny", "2026-03-08 06:00", True),  # Sun 01:00 EST
    ("ny", "2026-03-08 06:59", True),  # Sun 01:59 EST
    ("ny", "2026-03-08 07:00", False),  # Sun 03:00 EDT: 02:00-03:00 never happened
    ("ny", "2026-03-08 12:59", False),  # Sun 08:59 EDT
    ("ny", "2026-03-08 13:00", True),  # Sun 09:00 EDT
    ("ny", "2026-03-09 13:30", True),  # Mon 09:30 EDT (the same UTC was closed on Sat)
    ("ny", "2026-03-09 21:59", True),  # Mon 17:59 EDT
    ("ny", "2026-03-09 22:00", False),  # Mon 18:00 EDT
    # Paris, fall back on Sun 25 October 2026, 03:00 CEST -> 02:00 CET
    ("paris", "2026-10-24 06:59", False),  # Sat 08:59 CEST
    ("paris", "2026-10-24 07:00", True),  # Sat 09:00 CEST
    ("paris", "2026-10-24 23:59", False),  # Sun 01:59 CEST
    ("paris", "2026-10-25 00:00", True),  # Sun 02:00 CEST
    ("paris", "2026-10-25 00:59", True),  # Sun 02:59 CEST
    ("paris", "2026-10-25 01:00", True),  # Sun 02:00 CET: the repeated hour, open again
    ("paris", "2026-10-25 01:59", True),  # Sun 02:59 CET
    ("paris", "2026-10-25 02:00", False),  # Sun 03:00 CET
    ("paris", "2026-10-25 07:59", False),  # Sun 08:59 CET
    ("paris", "2026-10-25 08:00", True),  # Sun 09:00 CET
    ("paris", "2026-10-26 07:30", False),  # Mon 08:30 CET (the same UTC was open on Sat)
    ("paris", "2026-10-26 08:00", True),  # Mon 09:00 CET
    ("paris", "2026-10-26 16:59", True),  # Mon 17:59 CET
    ("paris", "2026-10-26 17:00", False),  # Mon 18:00 CET
    # New York, fall back on Sun 1 November 2026, 02:00 EDT -> 01:00 EST
    ("ny", "2026-10-31 12:59", False),  # Sat 08:59 EDT
    ("ny", "2026-10-31 13:00", True),  # Sat 09:00 EDT
    ("ny", "2026-10-31 22:00", False),  # Sat 18:00 EDT
    ("ny", "2026-11-01 04:59", False),  # Sun 00:59 EDT
    ("ny", "2026-11-01 05:00", True),  # Sun 01:00 EDT
    ("ny", "2026-11-01 05:59", True),  # Sun 01:59 EDT
    ("ny", "2026-11-01 06:00", True),  # Sun 01:00 EST: the repeated hour, open again
    ("ny", "2026-11-01 07:30", True),  # Sun 02:30 EST
    ("ny", "2026-11-01 08:00", False),  # Sun 03:00 EST
    ("ny", "2026-11-01 13:59", False),  # Sun 08:59 EST
    ("ny", "2026-11-01 14:00", True),  # Sun 09:00 EST
    ("ny", "2026-11-02 13:30", False),  # Mon 08:30 EST (the same UTC was open on Mon 9 March)
    ("ny", "2026-11-02 14:00", True),  # Mon 09:00 EST
    ("ny", "2026-11-02 22:59", True),  # Mon 17:59 EST
    ("ny", "2026-11-02 23:00", False),  # Mon 18:00 EST
    # a closed date in Paris, and the day before
    ("paris", "2026-12-24 10:00", True),  # Thu 11:00 CET
    ("paris", "2026-12-25 10:00", False),  # Fri 11:00 CET, closed all day
]


def test_hours_across_the_2026_daylight_saving_changes_in_paris_and_new_york(url: str) -> None:
    def given(ev: Events) -> None:
        # Given a group per zone, each with a respondent with room for every probe
        ev.at(ymd_hm("2026-03-01 00:00"))
        for zone, hours in (("paris", PARIS), ("ny", NEW_YORK)):
            ev.event("group.updated", group=zone, hours=hours)
            where = [{"attribute": "zone", "op": "eq", "value": zone}]
            targets(ev, (zone, None), rule=zone, conditions=where)
            ev.respondent(f"r-{zone}", [zone], slots=100)
        # When a conversation starts at each probed moment
        for n, (zone, moment, _) in enumerate(sorted(PROBES, key=lambda p: p[1])):
            ev.at(ymd_hm(moment))
            start(ev, f"p{n}", zone=zone)

    run = both(url, given)
    # Then it is assigned when its group is open, unrouted (closed) otherwise
    probes = sorted(PROBES, key=lambda p: p[1])
    outcome = {d["data"]["conversation"]: d for d in run.of()}
    seen = [
        (zone, moment, outcome[f"p{n}"]["type"] == ASSIGNED)
        for n, (zone, moment, _) in enumerate(probes)
    ]
    assert seen == probes
    assert {d["data"].get("code") for d in run.of("conversation.unrouted")} == {"closed"}
    assert len(run.of()) == len(probes)


# rejections


BAD_HOURS = {
    "unknown zone": {"timezone": "Mars/Olympus", "weekly": {"mon": [["09:00", "18:00"]]}},
    "end before start": {"timezone": "UTC", "weekly": {"mon": [["18:00", "09:00"]]}},
    "overlapping": {
        "timezone": "UTC",
        "weekly": {"mon": [["09:00", "12:00"], ["11:00", "13:00"]]},
    },
    "bad date": {"timezone": "UTC", "weekly": ALWAYS["weekly"], "closed": ["2026-13-01"]},
}


@pytest.mark.parametrize("bad", list(BAD_HOURS))
def test_bad_hours_are_rejected_and_the_group_keeps_its_old_hours(url: str, bad: str) -> None:
    def given(ev: Events) -> dict[str, Any]:
        # Given g1 closed all week, r1 free in it
        targets(ev, ("g1", None))
        ev.respondent("r1", ["g1"])
        ev.event("group.updated", group="g1", hours=NEVER)
        # When bad hours come, then a conversation, then valid hours and another one
        rejected = ev.event("group.updated", group="g1", hours=BAD_HOURS[bad])
        start(ev, "c1")
        ev.event("group.updated", group="g1", hours=ALWAYS)
        start(ev, "c2")
        return rejected

    run = both(url, given)
    assert brief(run.of()) == [
        ("event.rejected", None, run.given["id"]),
        ("conversation.unrouted", "c1", "closed"),  # still closed: the old hours hold
        ("conversation.assigned", "c2", ("r1", "g1", "new")),
    ]
    rejected = run.of("event.rejected")[0]["data"]
    assert rejected["type"] == "group.updated"
    assert rejected["reason"].startswith("data.hours")


BAD_RULES = {
    "both": ({"group": "g2", "targets": [{"group": "g2"}]}, "exactly one"),
    "neither": ({}, "exactly one"),
    "empty targets": ({"targets": []}, "targets"),
    "wait_s 0": ({"targets": [{"group": "g2", "wait_s": 0}]}, "wait_s"),
}


@pytest.mark.parametrize("bad", list(BAD_RULES))
def test_a_bad_rule_update_is_rejected_and_the_rule_stays(url: str, bad: str) -> None:
    fields, reason = BAD_RULES[bad]

    def given(ev: Events) -> dict[str, Any]:
        targets(ev, ("g1", None))
        ev.respondent("r1", ["g1"])
        ev.respondent("r2", ["g2"])
        rejected = ev.event("rule.updated", rule="all", priority=10, conditions=[], **fields)
        start(ev, "c1")
        return rejected

    run = both(url, given)
    assert brief(run.of()) == [
        ("event.rejected", None, run.given["id"]),
        ("conversation.assigned", "c1", ("r1", "g1", "new")),
    ]
    assert reason in run.of("event.rejected")[0]["data"]["reason"]


def test_a_priority_out_of_range_is_rejected(url: str) -> None:
    def given(ev: Events) -> list[str]:
        targets(ev, ("g1", None))
        ev.respondent("r1", ["g1"], slots=3, available=False)
        start(ev, "a")
        start(ev, "b")
        bad = [
            start(ev, "hi", priority=101)["id"],
            start(ev, "lo", priority=-101)["id"],
            ev.event("conversation.prioritized", conversation="b", priority=101)["id"],
            ev.event("conversation.prioritized", conversation="b", priority=-101)["id"],
        ]
        start(ev, "hi", priority=100)  # never created: this start is accepted
        status(ev, "r1", True)
        return bad

    run = both(url, given)
    rejected = run.of("event.rejected")
    assert [d["data"]["event_id"] for d in rejected] == run.given
    assert all("priority" in d["data"]["reason"] for d in rejected)
    assert [d["data"]["conversation"] for d in run.of(ASSIGNED)] == ["hi", "a", "b"]


def test_an_answer_deadline_of_0_is_rejected_and_the_setting_stays(url: str) -> None:
    def given(ev: Events) -> dict[str, Any]:
        ev.event("tenant.updated", answer_within_s=120)
        targets(ev, ("g1", None))
        ev.respondent("r1", ["g1"])
        ev.respondent("r2", ["g1"])
        rejected = ev.event("tenant.updated", answer_within_s=0)
        start(ev, "c1")
        return rejected

    run = both(url, given, until=START + timedelta(minutes=3))
    assert brief(run.of()) == [
        ("event.rejected", None, run.given["id"]),
        ("conversation.assigned", "c1", ("r1", "g1", "new")),
        ("conversation.assigned", "c1", ("r2", "g1", "no_answer")),
    ]
    assert "answer_within_s" in run.of("event.rejected")[0]["data"]["reason"]


# a v1 day, determinism, --until


# examples/sample-day.jsonl, and its replay by v1 (branch main at 5878f5f, `git archive main`):
# the sha256 of its decisions, one JSON object per line with sorted keys.
SAMPLE_V2_TENANTS = {"travel-4"}  # examples/make_sample_day.py's PolicySite
# The 194 routing decisions the engine before v2 (5878f5f) made of the sample day before it
# had a v2 tenant, reduced as the test below does.
V1_DECISIONS_SHA256 = "40076ff1181dd6e5242ba2d21986b74d56cd148c0f01e5b3abc303e0f777cc8f"


@pytest.fixture(scope="module")
def sample_day(tmp_path_factory: pytest.TempPathFactory) -> list[Decision]:
    """The decisions of the sample day's v1 tenants (all but its one v2 tenant, whose lines
    are merged in among theirs)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('v1day')}/day.db"
    decided = [json.loads(line) for line in replay_text(url, SAMPLE.read_bytes()).splitlines()]
    return [d for d in decided if d["tenant"] not in SAMPLE_V2_TENANTS]


def test_a_v1_day_validates_with_cause_on_queued_and_code_on_unrouted(
    sample_day: list[Decision],
) -> None:
    for decision in sample_day:
        DecisionModel.model_validate(decision)
        DATA_MODELS[decision["type"]].model_validate(decision["data"])
    kinds = {d["type"] for d in sample_day}
    assert {"conversation.queued", "conversation.unrouted"} <= kinds
    assert not kinds & POLICY_DECISIONS
    for queued in (d["data"] for d in sample_day if d["type"] == QUEUED):
        assert queued["cause"] in ("new", "transfer", "wake", "reassign")
    for unrouted in (d["data"] for d in sample_day if d["type"] == "conversation.unrouted"):
        assert (unrouted["code"], unrouted["reason"]) == ("no_rule", "no rule matched")
    for assigned in (d["data"] for d in sample_day if d["type"] == ASSIGNED):
        assert "sticky" not in assigned
        assert assigned["cause"] in ("new", "queue", "transfer", "wake", "reassign")


def test_a_v1_day_decides_exactly_what_v1_decided_but_for_cause_code_and_explain(
    sample_day: list[Decision],
) -> None:
    # Rejections of the day's unparseable lines are left out: they are dated by the line
    # before them, which the v2 tenant's lines, merged in by time, changed.
    as_v1 = []
    for decision in sample_day:
        if decision["type"] == "event.rejected":
            continue
        data = dict(decision["data"])
        data.pop("explain", None)
        if decision["type"] == QUEUED:
            del data["cause"]
        elif decision["type"] == "conversation.unrouted":
            del data["code"]
        as_v1.append(json.dumps(decision | {"data": data}, sort_keys=True) + "\n")
    digest = hashlib.sha256("".join(as_v1).encode()).hexdigest()
    assert (len(as_v1), digest) == (194, V1_DECISIONS_SHA256)


def a_v2_day(ev: Events) -> None:
    """Overflow, hours, priority, sticky, deadlines with pauses, idle close."""
    ev.event(
        "tenant.updated",
        sticky_within_s=600,
        answer_within_s=90,
        pause_on_no_answer=True,
        close_after_idle_s=900,
        reassign_after_s=400,
    )
    targets(ev, ("g1", 60), ("g2", 60), ("g3", None))
    ev.event("group.updated", group="g2", hours=PARIS, max_queue=1)
    ev.respondent("r1", ["g1"], slots=1)
    ev.respondent("r2", ["g2", "g3"], slots=1)
    ev.respondent("r3", ["g3", "g1"], slots=2)
    for n in range(12):
        start(ev, f"c{n}", visitor=f"v{n % 4}", priority=(n % 3) - 1)
        if n % 2:
            post(ev, f"c{n}", "r3")
        if n % 4 == 3:
            ev.event("conversation.prioritized", conversation=f"c{n - 1}", priority=7)
        if n % 5 == 4:
            close(ev, f"c{n - 2}")
        ev.later(seconds=37)
    status(ev, "r1", True)


def test_two_replays_of_the_same_file_give_byte_identical_decisions(
    tmp_path: Path, pg_url: str
) -> None:
    streams = [Events(tenant) for tenant in TENANTS]
    for events in streams:
        a_v2_day(events)
    lines = jsonl(sorted((e for s in streams for e in s.lines), key=lambda e: e["time"]))
    until = START + timedelta(hours=3)
    first = replay_text(f"sqlite:///{tmp_path}/first.db", lines, until)
    second = replay_text(f"sqlite:///{tmp_path}/second.db", lines, until)
    on_postgresql = replay_text(pg_url, lines, until)
    assert first == second == on_postgresql
    decisions = [json.loads(line) for line in first.splitlines()]
    assert len({d["id"] for d in decisions}) == len(decisions)
    kinds = {d["type"] for d in decisions}
    causes = {d["data"].get("cause") for d in decisions}
    assert {"conversation.closed", "respondent.paused"} <= kinds
    assert {"overflow", "no_answer", "idle"} <= causes


def replayed_by_cli(folder: Path, events: list[dict[str, Any]], *until: str) -> list[Decision]:
    """``chatroute replay day.jsonl --db ... [--until TIME]`` on a new database."""
    (folder / "day.jsonl").write_bytes(jsonl(events))
    name = "with" if until else "without"
    done = chatroute(
        "replay", "day.jsonl", "--db", f"sqlite:///{folder}/{name}.db", *until, cwd=folder
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def timeline(decisions: list[Decision]) -> list[tuple[Any, ...]]:
    return [(*b, d["time"]) for b, d in zip(brief(decisions), decisions, strict=True)]


def test_until_fires_overflow_deadline_and_idle_timers_after_the_last_event(
    tmp_path: Path,
) -> None:
    # Given shop-a: a 120 s deadline, targets g1 (60 s) then g2 with r2 free;
    # and shop-b: idle close after 600 s; each with a conversation as its last event
    a, b = Events("shop-a"), Events("shop-b")
    a.event("tenant.updated", answer_within_s=120)
    targets(a, ("g1", 60), ("g2", None))
    a.respondent("r2", ["g2"])
    b.event("tenant.updated", close_after_idle_s=600)
    targets(b, ("g1", None))
    t1 = datetime.fromisoformat(start(a, "c1")["time"])
    b.at(t1)
    start(b, "c1")
    events = sorted(a.lines + b.lines, key=lambda e: e["time"])
    # When the file is replayed without --until, and with --until an hour later
    without = replayed_by_cli(tmp_path, events)
    with_until = replayed_by_cli(tmp_path, events, "--until", at(t1, hours=1))
    # Then the timers fire only with --until, each at its due time
    assert [d["type"] for d in without] == [QUEUED, QUEUED]
    assert timeline([d for d in with_until if d["tenant"] == "shop-a"]) == [
        ("conversation.queued", "c1", ("g1", 1, "new"), at(t1)),
        ("conversation.assigned", "c1", ("r2", "g2", "overflow"), at(t1, seconds=60)),
        ("conversation.queued", "c1", ("g2", 1, "no_answer"), at(t1, seconds=180)),
    ]
    assert timeline([d for d in with_until if d["tenant"] == "shop-b"]) == [
        ("conversation.queued", "c1", ("g1", 1, "new"), at(t1)),
        ("conversation.closed", "c1", "idle", at(t1, seconds=600)),
    ]


def test_until_fires_a_deadline_armed_by_an_overflow_before_a_later_idle_close(
    tmp_path: Path,
) -> None:
    # Given a 120 s deadline and idle close after 600 s, targets g1 (60 s) then g2, r2 free
    ev = Events("shop-a")
    ev.event("tenant.updated", answer_within_s=120, close_after_idle_s=600)
    targets(ev, ("g1", 60), ("g2", None))
    ev.respondent("r2", ["g2"])
    t1 = datetime.fromisoformat(start(ev, "c1")["time"])  # the last event
    # When it is replayed with --until an hour later
    decisions = replayed_by_cli(tmp_path, ev.lines, "--until", at(t1, hours=1))
    # Then the overflow, the deadline it arms, and the idle close fire in due order
    assert timeline(decisions) == [
        ("conversation.queued", "c1", ("g1", 1, "new"), at(t1)),
        ("conversation.assigned", "c1", ("r2", "g2", "overflow"), at(t1, seconds=60)),
        ("conversation.queued", "c1", ("g2", 1, "no_answer"), at(t1, seconds=180)),
        ("conversation.closed", "c1", "idle", at(t1, seconds=600)),
    ]
