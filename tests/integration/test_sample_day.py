"""The sample day (``examples/sample-day.jsonl``) is what frontends would send: respondents
post only in conversations they hold, answer at their own pace (but the one who never
answers), and the only rejections are the two deliberate ones. Its fourth site, on the
routing policy of contract v2, makes every decision kind v2 adds; the three v1 sites send and
are decided exactly what they were before it came. Checked on a replay as ``./dev demo`` runs
it (``--until`` the next midnight), against its decisions."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from chatroute import bootstrap
from chatroute.settings import Settings
from chatroute.stats import rows
from chatroute.tools.replay import replay

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "sample-day.jsonl"
UNTIL = datetime(2026, 11, 23, tzinfo=UTC)  # as ./dev demo replays it
V1_TENANTS = ("shop-1", "shop-2", "bank-7")
POLICY_TENANT = "travel-4"
SILENT = "sami"  # the v2 site's respondent who never answers
# Decisions after which nobody holds the conversation.
RELEASES = {
    "conversation.queued",
    "conversation.pending",
    "conversation.snoozed",
    "conversation.unrouted",
    "conversation.closed",
}
# Every decision type of contract v1, and each kind v2 adds (see ``kind``).
V1_TYPES = {
    "conversation.assigned",
    "conversation.queued",
    "conversation.pending",
    "conversation.snoozed",
    "conversation.woken",
    "conversation.unrouted",
    "visitor.notify",
    "event.rejected",
}
V2_KINDS = {
    "conversation.assigned/overflow",
    "conversation.assigned/no_answer",
    "conversation.assigned/new/sticky",
    "conversation.queued/overflow",
    "conversation.queued/no_answer",
    "conversation.unrouted/no_rule",
    "conversation.unrouted/closed",
    "conversation.unrouted/queue_full",
    "conversation.unrouted/wait_timeout",
    "conversation.closed/idle",
    "respondent.paused/no_answer",
}
# What the v1 sites were before the v2 site came (d5032d1), as sha256 digests (``digest``):
# their event lines in the sample day, and their decisions as the engine made them before
# routing policy v2 (5878f5f), with the envelope fields and data fields of contract v1 only.
V1_EVENT_LINES = {
    "shop-1": "a1ebc6fd9398498fc169b6487049971d51bf0f369da1b7919fbf5f68abc7c2fd",
    "shop-2": "0eefd163fc7738ab22476153810d110afa94ae9af8a61cacb93820df31bffd64",
    "bank-7": "d2d10f6df8d3054aa4cf2d0bb32b0f7943450f3bb0cc684d355665f3a25f0b74",
}
V1_DECISIONS = {
    "shop-1": "83fe51befecb511d94a4a56ca56a5f181141854fcfb62ade860b9a607cb02fa6",
    "shop-2": "fa9988e5f9b8bb0df44aaf72b8a202736ceca3d119be6474d96bda800c5a72ec",
    "bank-7": "e842e1480603bbd0b36f034be3b7aeeccf6d73acfc48cada4e17741f94664aa1",
}
V1_ENVELOPE = ("id", "type", "time", "tenant", "causationid")
V1_DATA = {
    "conversation.assigned": (
        "conversation",
        "respondent",
        "group",
        "cause",
        "comment",
        "from_respondent",
    ),
    "conversation.queued": ("conversation", "group", "position"),
    "conversation.pending": ("conversation", "respondent", "group", "reassign_at"),
    "conversation.snoozed": ("conversation", "respondent", "until", "keep"),
    "conversation.woken": ("conversation", "cause"),
    "conversation.unrouted": ("conversation", "reason"),
    "visitor.notify": ("conversation", "unread"),
}


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('sample')}/day.db"
    out = io.StringIO()
    with SAMPLE.open("rb") as lines:
        replay(Settings(database_url=url), lines, out, until=UNTIL)
    rt = bootstrap.build(Settings(database_url=url))
    yield {
        "decisions": [json.loads(line) for line in out.getvalue().splitlines()],
        "stats": rows(rt, "respondent"),
        "groups": rows(rt, "group"),
    }
    rt.engine.dispose()


def events() -> list[dict[str, Any]]:
    return [json.loads(line) for _, line in event_lines(SAMPLE.read_text())]


def event_lines(text: str) -> list[tuple[str, str]]:
    """(tenant, line) of each line that is an event (has a type), in file order."""
    found = []
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if "type" in event:
            found.append((event["tenant"], line))
    return found


def kind(decision: dict[str, Any]) -> str:
    """type, then /cause, /code or /reason when it has one, then /sticky when it is."""
    data = decision["data"]
    parts = [decision["type"]]
    if decision["type"] != "event.rejected":
        parts += [str(data[k]) for k in ("cause", "code", "reason") if k in data][:1]
    if data.get("sticky"):
        parts.append("sticky")
    return "/".join(parts)


def digest(lines: list[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def v1_form(decision: dict[str, Any]) -> str:
    """The decision with contract v1's fields only, as one canonical line."""
    kept: dict[str, Any] = {key: decision[key] for key in V1_ENVELOPE}
    fields = V1_DATA[decision["type"]]
    kept["data"] = {key: decision["data"][key] for key in fields if key in decision["data"]}
    return json.dumps(kept, sort_keys=True)


def generator() -> ModuleType:
    return example("make_sample_day")


def example(name: str) -> ModuleType:
    """``examples/<name>.py`` (examples/ is no package)."""
    spec = importlib.util.spec_from_file_location(name, SAMPLE.with_name(f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    # (after the last event, only timers decide: by --until)
    for tenant, queue in by_tenant.items():
        assert all(d["causationid"].startswith("timer:") for d in queue[seen[tenant] :])


def test_respondents_answer_at_their_own_pace(day: dict[str, Any]) -> None:
    # (a member of a group closed all day has no contact)
    talked = [r for r in day["stats"] if r["contacts"]]
    delays = [r["first_response_avg_s"] for r in talked if r["respondent"] != SILENT]
    assert None not in delays
    assert len(set(delays)) > len(delays) / 2
    assert max(delays) - min(delays) > 60
    # but the one who never answers: every contact of theirs went unanswered
    (silent,) = [r for r in day["stats"] if r["respondent"] == SILENT]
    assert silent["first_response_avg_s"] is None
    assert silent["contacts"] == silent["unanswered"] > 0


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


def test_the_file_is_what_the_generator_writes_every_time() -> None:
    written = generator().lines()
    assert written == SAMPLE.read_text().splitlines()
    assert generator().lines() == written


def test_the_replay_makes_every_v1_decision_type_and_every_v2_kind(day: dict[str, Any]) -> None:
    kinds = Counter(kind(d) for d in day["decisions"])
    types = Counter(d["type"] for d in day["decisions"])
    assert not V1_TYPES - set(types), types
    assert not {k for k in V2_KINDS if not kinds[k]}, kinds
    # Made by the v2 site only, and only its silent respondent is paused
    v2 = [
        d
        for d in day["decisions"]
        if kind(d) in V2_KINDS and kind(d) != "conversation.unrouted/no_rule"
    ]
    assert {d["tenant"] for d in v2} == {POLICY_TENANT}
    paused = {d["data"]["respondent"] for d in day["decisions"] if d["type"] == "respondent.paused"}
    assert paused == {SILENT}


def test_the_v2_site_sends_every_v2_event_and_field() -> None:
    site = [e for e in events() if e["tenant"] == POLICY_TENANT]
    types = Counter(e["type"] for e in site)
    assert types["group.updated"] >= 3 and types["conversation.prioritized"] >= 1
    assert any(e["data"].get("priority") for e in site if e["type"] == "conversation.started")
    (settings,) = [e["data"] for e in site if e["type"] == "tenant.updated"]
    assert {
        "sticky_within_s",
        "answer_within_s",
        "pause_on_no_answer",
        "close_after_idle_s",
    } <= set(settings)
    chains = [e["data"]["targets"] for e in site if e["type"] == "rule.updated"]
    assert max(len(targets) for targets in chains) == 3
    hours = [e["data"].get("hours") for e in site if e["type"] == "group.updated"]
    assert any(h and h.get("closed") for h in hours)
    assert any(h and any(len(shifts) == 2 for shifts in h["weekly"].values()) for h in hours)
    caps = {e["data"].get("max_queue") for e in site if e["type"] == "group.updated"}
    assert 0 in caps and any(cap for cap in caps)
    # Returning visitors: some visitors start more than one conversation
    visitors = Counter(e["data"]["visitor"] for e in site if e["type"] == "conversation.started")
    assert max(visitors.values()) > 1


def test_a_prioritized_queued_conversation_is_announced_again(day: dict[str, Any]) -> None:
    prioritized = {e["id"] for e in events() if e["type"] == "conversation.prioritized"}
    again = [d for d in day["decisions"] if d["causationid"] in prioritized]
    assert again and {d["type"] for d in again} == {"conversation.queued"}


def test_the_v1_sites_send_what_they_sent_before_the_v2_site_came() -> None:
    lines = event_lines(SAMPLE.read_text())
    for tenant in V1_TENANTS:
        assert digest([line for t, line in lines if t == tenant]) == V1_EVENT_LINES[tenant]


def test_the_v1_sites_are_decided_as_before_but_for_v2_fields(day: dict[str, Any]) -> None:
    for tenant in V1_TENANTS:
        decided = [
            d for d in day["decisions"] if d["tenant"] == tenant and d["type"] != "event.rejected"
        ]
        assert digest([v1_form(d) for d in decided]) == V1_DECISIONS[tenant], tenant
        # the fields v2 adds to them: why it was queued, and a code for unrouted
        causes = {d["data"]["cause"] for d in decided if d["type"] == "conversation.queued"}
        codes = {d["data"]["code"] for d in decided if d["type"] == "conversation.unrouted"}
        assert causes <= {"new", "transfer", "wake", "reassign"} and codes == {"no_rule"}
        assert not [d for d in decided if kind(d) in V2_KINDS - {"conversation.unrouted/no_rule"}]


def test_commission_is_a_decimal_in_every_group_row(day: dict[str, Any]) -> None:
    # the rows of conversations no rule matched included (group null, no contact)
    assert any(row["group"] is None for row in day["groups"])
    assert all(isinstance(row["commission"], float) for row in day["groups"])


def test_the_readme_shows_the_counts_dev_demo_prints(day: dict[str, Any]) -> None:
    lines = [json.dumps(d) for d in day["decisions"]]
    printed = example("decision_counts").counts(lines)
    readme = (ROOT / "README.md").read_text()
    shown = readme.split("`./dev demo` prints the decisions' counts")[1].split("```text\n")[1]
    assert shown.split("```")[0].splitlines() == printed
