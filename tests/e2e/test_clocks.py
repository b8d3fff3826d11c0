"""A frontend's clock never runs the engine's timers, on the real pipeline (issue 13 item 12).

Given conversations snoozed for hours and one pending for an unavailable respondent, events
dated days ahead, in 2099 and a day behind go through RabbitMQ, the gateway, a worker and
the sweeper: nothing wakes early, nothing is reassigned at once or never, every decision is
dated within the tenant's clock skew of when its cause arrived, and the pipeline decides
what a replay of the same events, stamped with the moments they were received, decides.
"""

from __future__ import annotations

import io
import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from chatroute.settings import Settings
from chatroute.tools.replay import replay
from tests.builders import Events, rfc3339
from tests.e2e.harness import (
    Pipeline,
    Vhost,
    lines,
    received_times,
    running,
    stamped,
    wait_until,
)
from tests.e2e.test_pipeline import per_tenant

pytestmark = pytest.mark.services

SKEW = timedelta(seconds=5)
LATE = timedelta(seconds=30)  # far more than any event takes to arrive here


def waiting(tenant: str, now: datetime) -> Events:
    """Two conversations snoozed for 1 h and 2 h, one pending for the unavailable u."""
    shop = Events(tenant, now=now, step=timedelta(milliseconds=1))
    shop.rule("all", "G")
    shop.respondent("a", ["G"], slots=10)
    shop.respondent("u", ["G"], slots=10, available=False)
    for conversation, hours in (("c1", 1), ("c2", 2)):
        shop.start(conversation)
        until = rfc3339(shop.now + timedelta(hours=hours))
        shop.event("conversation.snoozed", conversation=conversation, respondent="a", until=until)
    for conversation in ("c3", "c5", "c6"):
        shop.start(conversation)
    shop.event("conversation.transferred", conversation="c3", respondent="a", to_respondent="u")
    return shop


def off_clocks(shop: Events, now: datetime) -> None:
    """Events from frontends whose clocks are two days ahead, in 2099, and a day behind."""
    shop.at(now + timedelta(days=2)).start("c4")
    shop.at(datetime(2099, 1, 1, tzinfo=UTC)).event(
        "conversation.transferred", conversation="c5", respondent="a", to_respondent="u"
    )
    shop.at(now - timedelta(hours=25)).event(
        "conversation.transferred", conversation="c6", respondent="a", to_respondent="u"
    )


def time_of(decision: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(decision["time"].replace("Z", "+00:00"))


def test_off_clocks_neither_wake_nor_reassign_early(
    pg_url: str, vhost: Vhost, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    shops = [waiting("north", now), waiting("south", now)]
    pipeline = Pipeline(pg_url, vhost.url, tmp_path, processes=1, threads=2)
    with running(pipeline, vhost.url) as log:
        pipeline.publish(lines(shops[0].lines + shops[1].lines))
        # When south's frontends send events with clocks far off, and north's carry on
        sent = datetime.now(UTC)
        off_clocks(shops[1], sent)
        shops[0].at(sent).start("c7")
        pipeline.publish(lines(shops[1].lines[-3:] + shops[0].lines[-1:]))
        # (8 decisions a tenant for the waiting ones, then 3 for south and 1 for north)
        wait_until(lambda: len(log.decisions) >= 20, 60, "the decisions")
        done = datetime.now(UTC)
    assert len(log.decisions) == 20
    decisions = per_tenant(log.decisions)
    south = decisions["south"]
    # Then nothing woke and nothing was reassigned
    assert not [d for d in log.decisions if d["type"] == "conversation.woken"]
    assert not [d for d in log.decisions if d["data"].get("cause") == "reassign"]
    # And every decision is dated when its cause arrived, give or take the skew
    assert all(now - SKEW <= time_of(d) <= done + SKEW for d in log.decisions)
    # And the transfers from the wrong clocks wait a day from their arrival, not from 2099
    # or from yesterday
    holds = {
        d["data"]["conversation"]: datetime.fromisoformat(d["data"]["reassign_at"][:-1] + "+00:00")
        for d in south
        if d["type"] == "conversation.pending"
    }
    assert set(holds) == {"c3", "c5", "c6"}
    for conversation in ("c5", "c6"):
        assert sent - SKEW + timedelta(days=1) <= holds[conversation]
        assert holds[conversation] <= done + SKEW + timedelta(days=1)
    # And a replay of what the pipeline received decides the same, to the millisecond
    bodies = lines(shops[0].lines + shops[1].lines)
    out = io.StringIO()
    stamps = received_times(pg_url)
    replay(Settings(database_url=f"sqlite:///{tmp_path}/replay.db"), stamped(bodies, stamps), out)
    replayed = [json.loads(line) for line in out.getvalue().splitlines()]
    assert per_tenant(replayed) == decisions


def test_an_event_received_after_a_timer_fell_due_comes_after_it_in_pipeline_and_replay(
    pg_url: str, vhost: Vhost, tmp_path: Path
) -> None:
    # Given a conversation snoozed until 6 s from now, on two tenants
    now = datetime.now(UTC)
    until = now + timedelta(seconds=6)
    first: list[bytes] = []
    second: list[bytes] = []
    for tenant in ("shop-1", "shop-2"):
        shop = Events(tenant, now=now, step=timedelta(milliseconds=1))
        shop.rule("all", "G")
        shop.respondent("a", ["G"], slots=1)
        shop.start("c1")
        shop.event("conversation.snoozed", conversation="c1", respondent="a", until=rfc3339(until))
        first += lines(shop.lines)
        # and the visitor's reply from a frontend whose clock is a day behind, so its time
        # is taken as received - clock_skew_s: before the wake was due
        late = Events(tenant, now=now - timedelta(days=1), _ids=itertools.count(1000))
        late.event("message.posted", conversation="c1", author="visitor")
        second += lines(late.lines)
    pipeline = Pipeline(pg_url, vhost.url, tmp_path, processes=1, threads=1)
    with running(pipeline, vhost.url) as log:
        pipeline.publish(first)
        wait_until(lambda: len(of_type(log.decisions, "conversation.snoozed")) == 2, 30, "snoozed")
        # When the reply arrives 2 s after the wake fell due (within the skew)
        wait_until(lambda: datetime.now(UTC) >= until + timedelta(seconds=2), 30, "due")
        pipeline.publish(second)
        wait_until(lambda: len(of_type(log.decisions, "conversation.woken")) == 2, 30, "woken")
    # Then the timer woke it (it was due first) and the replay of the stamped events agrees
    assert {d["data"]["cause"] for d in of_type(log.decisions, "conversation.woken")} == {"timer"}
    out = io.StringIO()
    replay(
        Settings(database_url=f"sqlite:///{tmp_path}/replay.db"),
        stamped(first + second, received_times(pg_url)),
        out,
    )
    replayed = [json.loads(line) for line in out.getvalue().splitlines()]
    assert per_tenant(log.decisions) == per_tenant(replayed)


def of_type(decisions: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in decisions if d["type"] == kind]
