"""The sample day (``examples/sample-day.jsonl``) is what frontends would send: respondents
post only in conversations they hold, answer at their own pace, and the only rejections are
the two deliberate ones. Checked on a replay, against its decisions."""

from __future__ import annotations

import importlib.util
import io
import json
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chatroute import bootstrap
from chatroute.settings import Settings
from chatroute.stats import rows
from workers.replay import replay

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "sample-day.jsonl"
# Decisions after which nobody holds the conversation.
RELEASES = {
    "conversation.queued",
    "conversation.pending",
    "conversation.snoozed",
    "conversation.unrouted",
}


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('sample')}/day.db"
    out = io.StringIO()
    with SAMPLE.open("rb") as lines:
        replay(Settings(database_url=url), lines, out)
    rt = bootstrap.build(Settings(database_url=url))
    yield {
        "decisions": [json.loads(line) for line in out.getvalue().splitlines()],
        "stats": rows(rt, "respondent"),
        "groups": rows(rt, "group"),
    }
    rt.engine.dispose()


def events() -> list[dict[str, Any]]:
    found = []
    for line in SAMPLE.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if "type" in event:
            found.append(event)
    return found


def test_respondents_post_only_in_conversations_they_hold(day: dict[str, Any]) -> None:
    # Given the decisions of each tenant in the order they were made
    by_tenant: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for decision in day["decisions"]:
        if decision["type"] != "event.rejected":
            by_tenant[decision["tenant"]].append(decision)
    holders: dict[tuple[str, str], str | None] = {}
    seen: dict[str, int] = defaultdict(int)
    checked = 0

    def apply(decision: dict[str, Any]) -> None:
        key = (decision["tenant"], decision["data"].get("conversation", ""))
        if decision["type"] == "conversation.assigned":
            holders[key] = decision["data"]["respondent"]
        elif decision["type"] in RELEASES:
            holders[key] = None

    # When the events are walked in file order, each after the timers due by its time and
    # followed by what it decided
    for event in events():
        tenant, queue = event["tenant"], by_tenant[event["tenant"]]
        while (
            seen[tenant] < len(queue)
            and queue[seen[tenant]]["causationid"].startswith("timer:")
            and queue[seen[tenant]]["time"] <= event["time"]
        ):
            apply(queue[seen[tenant]])
            seen[tenant] += 1
        data = event["data"]
        # Then every respondent message, transfer and snooze comes from the holder
        if "respondent" in data and event["type"] in (
            "message.posted",
            "conversation.transferred",
            "conversation.snoozed",
        ):
            holder = holders.get((tenant, data["conversation"]))
            assert data["respondent"] == holder, (event["id"], holder)
            checked += 1
        while seen[tenant] < len(queue) and queue[seen[tenant]]["causationid"] == event["id"]:
            apply(queue[seen[tenant]])
            seen[tenant] += 1
    assert checked > 100
    assert all(seen[t] == len(queue) for t, queue in by_tenant.items())


def test_respondents_answer_at_their_own_pace(day: dict[str, Any]) -> None:
    delays = [r["first_response_avg_s"] for r in day["stats"]]
    assert None not in delays
    assert len(set(delays)) > len(delays) / 2
    assert max(delays) - min(delays) > 60


def test_the_day_has_transfers_snoozes_and_two_deliberate_rejections(
    day: dict[str, Any],
) -> None:
    types = [d["type"] for d in day["decisions"]]
    causes = {d["data"]["cause"] for d in day["decisions"] if d["type"] == "conversation.assigned"}
    assert {"new", "transfer", "wake", "reassign"} <= causes
    assert "conversation.snoozed" in types and "visitor.notify" in types
    rejected = [d["data"] for d in day["decisions"] if d["type"] == "event.rejected"]
    assert sorted(r["event_id"] or "" for r in rejected) == ["", "broken-1"]
    assert sum(r["transfers_out"] for r in day["stats"]) > 0


def test_the_day_is_in_time_order_on_2026_11_22() -> None:
    times = [e["time"] for e in events()]
    assert times == sorted(times)
    assert {t[:10] for t in times} == {"2026-11-22"}
    assert len({e["tenant"] for e in events()}) >= 3


def test_the_file_is_what_the_generator_writes() -> None:
    spec = importlib.util.spec_from_file_location(
        "make_sample_day", SAMPLE.with_name("make_sample_day.py")
    )
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    assert generator.lines() == SAMPLE.read_text().splitlines()


def test_commission_is_a_decimal_in_every_group_row(day: dict[str, Any]) -> None:
    # the rows of conversations no rule matched included (group null, no contact)
    assert any(row["group"] is None for row in day["groups"])
    assert all(isinstance(row["commission"], float) for row in day["groups"])
