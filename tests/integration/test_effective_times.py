"""A frontend's clock never runs the engine's timers (contract v2, Time; issue 13 item 12).

Each event is applied at its effective time: its ``time`` moved to within the tenant's
``clock_skew_s`` of when it was received, and never before the tenant's previous effective
time. These tests replay events stamped with the moments they were received.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prometheus_client.core import CollectorRegistry

from chatroute import bootstrap, history, metrics
from chatroute.settings import Settings
from chatroute.tools.replay import replay
from tests.builders import START, Events, rfc3339
from tests.integration.test_transfers import stats, transfer

Decision = dict[str, Any]
SKEW = timedelta(seconds=5)


class Received:
    """Events with the moment each was received: by default, when they say they happened."""

    def __init__(self, shop: Events) -> None:
        self.shop = shop
        self.stamps: dict[str, datetime] = {}

    def at(self, received: datetime, event: dict[str, Any]) -> dict[str, Any]:
        self.stamps[event["id"]] = received
        return event

    def lines(self) -> list[tuple[bytes, datetime]]:
        return [
            (json.dumps(e).encode(), self.stamps.get(e["id"], _time(e))) for e in self.shop.lines
        ]


def _time(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["time"].replace("Z", "+00:00"))


def run(tmp_path: Path, received: Received, until: datetime) -> list[Decision]:
    out = io.StringIO()
    settings = Settings(database_url=f"sqlite:///{tmp_path}/replay.db")
    replay(settings, received.lines(), out, until=until)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def of(decisions: list[Decision], conversation: str) -> list[Decision]:
    return [d for d in decisions if d["data"].get("conversation") == conversation]


def at(decision: Decision) -> datetime:
    return datetime.fromisoformat(decision["time"].replace("Z", "+00:00"))


def waiting_day() -> tuple[Events, Received]:
    """Two conversations snoozed for 3 h and 5 h and one pending for an unavailable respondent."""
    shop = Events("shop-1")
    shop.rule("all", "G")
    shop.respondent("a", ["G"], slots=5)
    shop.respondent("u", ["G"], slots=5, available=False)
    for conversation, hours in (("c1", 3), ("c2", 5)):
        shop.start(conversation)
        until = rfc3339(shop.now + timedelta(hours=hours))
        shop.event("conversation.snoozed", conversation=conversation, respondent="a", until=until)
    shop.start("c3")
    transfer(shop, "c3", "a", to_respondent="u")
    return shop, Received(shop)


def assigned_to_a() -> Events:
    """c1 assigned to a; b is free too, and u unavailable."""
    shop = Events("shop-1")
    shop.rule("all", "G")
    shop.respondent("a", ["G"])
    shop.respondent("b", ["G"])
    shop.respondent("u", ["G"], available=False)
    shop.start("c1")
    return shop


def test_an_event_dated_two_days_ahead_wakes_nothing_early(tmp_path: Path) -> None:
    # Given snoozes and a pending transfer waiting
    shop, received = waiting_day()
    # When a conversation starts whose frontend's clock runs two days ahead
    moment = shop.now + timedelta(minutes=1)
    received.at(moment, shop.at(moment + timedelta(days=2)).event(
        "conversation.started", conversation="c4", visitor="v4", attributes={}
    ))  # fmt: skip
    decisions = run(tmp_path, received, until=moment + timedelta(minutes=10))
    # Then nothing woke or was reassigned, and c4 was decided at most 5 s after it came in
    assert not [d for d in decisions if d["type"] == "conversation.woken"]
    assert not [d for d in decisions if d["data"].get("cause") == "reassign"]
    [assigned] = of(decisions, "c4")
    assert at(assigned) == moment + SKEW
    # And the snoozes wake when they are due by the engine's clock, not before
    (tmp_path / "later").mkdir()
    later = run(tmp_path / "later", received, until=moment + timedelta(hours=3))
    [woken] = [d for d in later if d["type"] == "conversation.woken"]
    assert woken["data"]["conversation"] == "c1"
    assert at(woken) == START + timedelta(hours=3, seconds=5)  # c1 was snoozed at START + 5 s


def test_a_transfer_dated_2099_is_reassigned_a_day_after_it_came_in(tmp_path: Path) -> None:
    # Given a conversation assigned to a
    shop = assigned_to_a()
    received = Received(shop)
    # When a transfers it to the unavailable u from a frontend whose clock says 2099
    moment = shop.now + timedelta(minutes=1)
    received.at(moment, shop.at(datetime(2099, 1, 1, tzinfo=UTC)).event(
        "conversation.transferred", conversation="c1", respondent="a", to_respondent="u"
    ))  # fmt: skip
    decisions = run(tmp_path, received, until=moment + timedelta(hours=25))
    # Then it is held until a day after it came in, and reassigned then, once
    pending = [d for d in decisions if d["type"] == "conversation.pending"]
    assert [d["data"]["reassign_at"] for d in pending] == [
        rfc3339(moment + SKEW + timedelta(days=1))
    ]
    reassigned = [d for d in decisions if d["data"].get("cause") == "reassign"]
    assert [(d["data"]["respondent"], at(d)) for d in reassigned] == [
        ("b", moment + SKEW + timedelta(days=1))
    ]


def test_a_rejected_future_event_fires_no_timer(tmp_path: Path) -> None:
    shop, received = waiting_day()
    # When a respondent who does not hold c3 transfers it, dated a day ahead
    moment = shop.now + timedelta(minutes=1)
    received.at(moment, shop.at(moment + timedelta(days=1)).event(
        "conversation.transferred", conversation="c3", respondent="nobody", to_group="G"
    ))  # fmt: skip
    decisions = run(tmp_path, received, until=moment + timedelta(minutes=1))
    # Then it is rejected, and nothing woke
    assert decisions[-1]["type"] == "event.rejected"
    assert at(decisions[-1]) == moment + SKEW
    assert not [d for d in decisions if d["type"] == "conversation.woken"]


def test_a_transfer_dated_25_hours_ago_waits_its_day(tmp_path: Path) -> None:
    # Given c1 assigned to a a minute ago
    shop = assigned_to_a()
    started = shop.now
    received = Received(shop)
    # When a transfers it to the unavailable u, from a clock 25 hours behind
    moment = started + timedelta(minutes=1)
    received.at(moment, shop.at(moment - timedelta(hours=25)).event(
        "conversation.transferred", conversation="c1", respondent="a", to_respondent="u"
    ))  # fmt: skip
    decisions = run(tmp_path, received, until=moment + timedelta(hours=1))
    # Then it is held for a day from when it came in (less the skew), not reassigned at once
    [pending] = [d for d in decisions if d["type"] == "conversation.pending"]
    assert pending["data"]["reassign_at"] == rfc3339(moment - SKEW + timedelta(days=1))
    assert not [d for d in decisions if d["data"].get("cause") == "reassign"]
    # And a's contact ended after it started
    figures = stats(tmp_path, "replay")
    assert (figures["a"]["contacts"], figures["a"]["transfers_out"]) == (1, 1)


def test_a_reply_after_a_2099_dated_start_has_a_positive_first_response(tmp_path: Path) -> None:
    shop = Events("shop-1")
    shop.rule("all", "G")
    shop.respondent("a", ["G"])
    received = Received(shop)
    moment = shop.now + timedelta(minutes=1)
    # Given a conversation started by a frontend whose clock says 2099
    received.at(moment, shop.at(datetime(2099, 1, 1, tzinfo=UTC)).event(
        "conversation.started", conversation="c1", visitor="v1", attributes={}
    ))  # fmt: skip
    # When a answers a minute later, from a right clock
    shop.at(moment + timedelta(minutes=1)).event(
        "message.posted", conversation="c1", author="respondent", respondent="a"
    )
    run(tmp_path, received, until=moment + timedelta(minutes=2))
    # Then the first response took 55 s: a minute, less the 5 s the start was moved ahead
    assert stats(tmp_path, "replay")["a"]["first_response_avg_s"] == 55.0


def test_a_tenant_may_trust_its_clocks_further(tmp_path: Path) -> None:
    shop = Events("shop-1")
    shop.event("tenant.updated", clock_skew_s=3600)
    shop.rule("all", "G")
    shop.respondent("a", ["G"])
    received = Received(shop)
    moment = shop.now + timedelta(minutes=1)
    ahead = moment + timedelta(minutes=30)
    received.at(moment, shop.at(ahead).start("c1") or shop.lines[-1])
    decisions = run(tmp_path, received, until=moment + timedelta(minutes=1))
    assert [at(d) for d in of(decisions, "c1")] == [ahead]


def test_history_shows_both_times_and_a_metric_counts_the_moved_events(tmp_path: Path) -> None:
    # Given two tenants: one whose frontend's clock runs a day ahead, one whose clock is right
    bad, good = Events("shop-1"), Events("shop-2")
    for shop in (bad, good):
        shop.rule("all", "G")
        shop.respondent("a", ["G"])
    received = Received(bad)
    moment = bad.now + timedelta(minutes=1)
    for n in (1, 2):
        received.at(moment, bad.at(moment + timedelta(days=1)).event(
            "conversation.started", conversation=f"c{n}", visitor="v", attributes={}
        ))  # fmt: skip
    good.start("c1")
    lines = received.lines() + Received(good).lines()
    out = io.StringIO()
    settings = Settings(database_url=f"sqlite:///{tmp_path}/replay.db")
    replay(settings, sorted(lines, key=lambda line: line[1]), out, until=moment)
    rt = bootstrap.build(settings)
    # When the history of a moved event is asked for
    [started, assigned] = history.timeline(rt, "shop-1", "c1")
    # Then it shows when the engine took it to happen and the time it carried
    assert started["at"] == rfc3339(moment + SKEW)
    assert started["time"] == rfc3339(moment + timedelta(days=1))
    assert assigned["at"] == started["at"]
    # And the metric counts the moved events of each tenant
    registry = CollectorRegistry()
    registry.register(metrics.EngineCollector(rt))
    for tenant, moved in (("shop-1", 2), ("shop-2", 0)):
        sample = registry.get_sample_value(
            "chatroute_events_time_adjusted_total", {"tenant": tenant}
        )
        assert sample == moved
    rt.engine.dispose()
