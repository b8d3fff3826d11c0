"""The chaos run's traffic (``benchmarks.workload``): the ``CHAOS`` sites use the routing
policy of contract v2, mostly validly; the default profile, which feeds the benchmarks, sends
exactly what it sent before v2 (fast, no services)."""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from benchmarks.workload import CHAOS, DAY_PROFILE, day, hours_around, straddle
from chatroute.domain import hours, lifecycle
from chatroute.domain.memory import InMemoryTenantView
from chatroute.errors import Rejected
from schemas.events import parse_event, to_command

V2_TYPES = {"group.updated", "conversation.prioritized"}
V2_FIELDS = {
    "conversation.started": {"priority"},
    "rule.updated": {"targets"},
    "tenant.updated": {"sticky_within_s", "answer_within_s", "close_after_idle_s"},
}


def v2(event: dict[str, Any]) -> set[str]:
    """The new event types and fields an event uses."""
    fields = V2_FIELDS.get(event["type"], set()) & event["data"].keys()
    return {event["type"]} & V2_TYPES | {f"{event['type']}.{f}" for f in fields}


def digest(events: list[dict[str, Any]]) -> str:
    lines = "".join(json.dumps(e, sort_keys=True) + "\n" for e in events)
    return hashlib.sha256(lines.encode()).hexdigest()


def test_the_default_profile_sends_what_it_sent_before_the_routing_policy() -> None:
    # Given the default profile (the benchmarks' day), as before v2
    events = day(400, tenants=2, respondents=40, seed=3, span=timedelta(hours=1))
    # Then the same events, byte for byte, as the simulator made before it knew v2
    assert (len(events), digest(events)) == (
        2093,
        "2ca4197fb8b8cba8528dd20a0f1adf95b671aa4b52bca5e0250f34fd479acfbd",
    )
    assert not any(v2(e) for e in events)
    assert DAY_PROFILE.policy(0).v1


def replay(events: list[dict[str, Any]]) -> tuple[Counter[str], Counter[str]]:
    """Each site's events through the domain, in order: decisions by kind, and rejections."""
    views: dict[str, InMemoryTenantView] = {}
    kinds: Counter[str] = Counter()
    rejected: Counter[str] = Counter()
    for event in events:
        view = views.setdefault(event["tenant"], InMemoryTenantView(event["tenant"]))
        at = datetime.fromisoformat(event["time"].replace("Z", "+00:00"))
        decisions = lifecycle.fire_due(view, at)
        try:
            decisions += lifecycle.handle(view, to_command(parse_event(json.dumps(event))), at)
        except Rejected as error:
            rejected[f"{event['type']}: {error}"] += 1
        for decision in decisions:
            data = decision.data
            why = data.get("cause") or data.get("code") or data.get("reason")
            sticky = "+sticky" if data.get("sticky") else ""
            kinds[f"{decision.type}/{why}{sticky}"] += 1
    return kinds, rejected


def test_the_chaos_sites_use_the_routing_policy_and_their_events_stay_valid() -> None:
    # Given the chaos run's traffic (its short size), at some moment
    start = datetime(2026, 12, 1, 10, 0, 40, tzinfo=UTC)
    span = timedelta(seconds=40)
    events = day(700, tenants=5, respondents=30, span=span, profile=CHAOS, start=start)
    # Then it has the new events and settings, on the v2 sites only
    by_site: dict[str, set[str]] = defaultdict(set)
    for event in events:
        by_site[event["tenant"]] |= v2(event)
    assert by_site["site-0"] == by_site["site-4"] == set()  # v1 routing
    assert by_site["site-1"] == {
        "group.updated",
        "rule.updated.targets",
        "conversation.started.priority",
        "conversation.prioritized",
        "tenant.updated.sticky_within_s",
    }
    assert by_site["site-2"] == {
        "conversation.started.priority",
        "conversation.prioritized",
        "tenant.updated.sticky_within_s",
        "tenant.updated.answer_within_s",
        "tenant.updated.close_after_idle_s",
    }
    assert by_site["site-3"] == {
        "group.updated",
        "rule.updated.targets",
        "tenant.updated.answer_within_s",
        "tenant.updated.close_after_idle_s",
    }
    returning = Counter(
        (e["tenant"], e["data"]["visitor"]) for e in events if e["type"] == "conversation.started"
    )
    assert max(returning.values()) > 1
    # And replayed through the domain, it yields every new decision, with few rejections
    kinds, rejected = replay(events)
    assert {
        "conversation.assigned/new+sticky",
        "conversation.assigned/overflow",
        "conversation.assigned/no_answer",
        "conversation.queued/overflow",
        "conversation.queued/no_answer",
        "conversation.unrouted/no_rule",
        "conversation.unrouted/closed",
        "conversation.unrouted/queue_full",
        "conversation.unrouted/wait_timeout",
        "conversation.closed/idle",
        "respondent.paused/no_answer",
    } <= kinds.keys()
    assert sum(rejected.values()) <= len(events) // 100, rejected


@pytest.mark.parametrize("past_the_minute_s", [0, 1.5, 20, 31.9, 45, 59.9])
def test_conversations_start_while_a_minute_begins(past_the_minute_s: float) -> None:
    # Given a day of 40 s opening at some second of a minute
    opens = datetime(2026, 12, 1, 10, 0, tzinfo=UTC) + timedelta(seconds=past_the_minute_s)
    span = timedelta(seconds=40)
    starts, boundary = straddle(opens, span)
    # Then a minute begins 15 to 85% into it, the day opening at most 32 s later
    assert boundary.second == boundary.microsecond == 0
    assert span * 0.15 <= boundary - starts <= span * 0.85
    assert timedelta(0) <= starts - opens <= timedelta(seconds=32)
    # A long day needs no delay
    assert straddle(opens, timedelta(hours=1))[0] == opens


@pytest.mark.parametrize(
    "boundary",
    [
        datetime(2026, 12, 1, 10, 1, tzinfo=UTC),
        datetime(2026, 12, 6, 23, 0, tzinfo=UTC),  # midnight in Paris, a Sunday into Monday
        datetime(2026, 3, 29, 1, 0, tzinfo=UTC),  # Paris springs forward
        datetime(2026, 10, 25, 1, 0, tzinfo=UTC),  # Paris falls back
    ],
)
def test_a_split_shift_in_paris_closes_for_the_minute_that_begins(boundary: datetime) -> None:
    shift = hours.parse(hours_around("Europe/Paris", "split", boundary))
    assert shift is not None
    second = timedelta(seconds=1)
    assert shift.is_open(boundary - second)
    assert not shift.is_open(boundary) and not shift.is_open(boundary + 59 * second)
    assert shift.is_open(boundary + 60 * second)


@pytest.mark.parametrize("timezone", ["Asia/Kolkata", "America/New_York", "Pacific/Chatham"])
def test_hours_open_or_close_at_the_minute_that_begins(timezone: str) -> None:
    boundary = datetime(2026, 12, 1, 10, 1, tzinfo=UTC)
    second = timedelta(seconds=1)
    opens = hours.parse(hours_around(timezone, "opens", boundary))
    closes = hours.parse(hours_around(timezone, "closes", boundary))
    assert opens is not None and closes is not None
    assert not opens.is_open(boundary - second) and opens.is_open(boundary)
    assert closes.is_open(boundary - second) and not closes.is_open(boundary)
