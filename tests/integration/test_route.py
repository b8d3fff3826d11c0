"""``chatroute route`` and ``chatroute explain`` on a database a replay wrote, on SQLite and on
PostgreSQL: route answers what starting the conversation then decides, and changes nothing."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from chatroute import bootstrap
from chatroute.errors import Rejected
from chatroute.route import route
from chatroute.settings import Settings
from chatroute.store import tables
from chatroute.tools.replay import replay
from tests.builders import Events, jsonl, rfc3339
from tests.integration.test_cli import chatroute

NEVER: dict[str, Any] = {"timezone": "UTC", "weekly": {}}
PHONES = {"page": "phones"}


def shop(tenant: str) -> Events:
    """Phones: a (2 slots), b (1 slot, busy), c away; a closed target before them for "night"
    pages; d answered visitor v-old; Desk: nobody, and its queue holds one."""
    ev = Events(tenant)
    ev.event(
        "rule.updated", rule="phones", priority=1,
        targets=[{"group": "Night"}, {"group": "Phones"}],
        conditions=[{"attribute": "page", "op": "eq", "value": "phones"}],
    )  # fmt: skip
    ev.event(
        "rule.updated", rule="desk", priority=2, targets=[{"group": "Desk"}],
        conditions=[{"attribute": "page", "op": "eq", "value": "desk"}],
    )  # fmt: skip
    ev.event("group.updated", group="Night", hours=NEVER)
    ev.event("tenant.updated", sticky_within_s=3600)
    ev.respondent("a", ["Phones"], slots=2)
    ev.respondent("b", ["Phones"])
    ev.respondent("c", ["Phones"], available=False)
    ev.respondent("d", ["Phones", "Desk"], slots=3)
    ev.event("conversation.started", conversation="x1", visitor="v-old", attributes=PHONES)
    ev.event("message.posted", conversation="x1", author="respondent", respondent="a")
    ev.event("conversation.closed", conversation="x1")
    ev.event("conversation.started", conversation="x2", visitor="v2", attributes=PHONES)
    ev.event("conversation.started", conversation="x3", visitor="v3", attributes=PHONES)
    ev.event("respondent.status", respondent="d", status="unavailable")
    ev.event("conversation.started", conversation="x4", visitor="v4", attributes={"page": "desk"})
    return ev


@pytest.fixture
def day(db_url: str) -> Iterator[tuple[str, datetime]]:
    """A database that holds two tenants' replayed day, and a time just after it."""
    tenants = [shop("shop-1"), shop("shop-2")]
    lines = sorted((e for ev in tenants for e in ev.lines), key=lambda e: e["time"])
    replay(Settings(database_url=db_url), io.BytesIO(jsonl(lines)).readlines(), io.StringIO())
    yield db_url, tenants[0].now + timedelta(seconds=1)


def everything(url: str) -> dict[str, list[tuple[Any, ...]]]:
    rt = bootstrap.build(Settings(database_url=url))
    try:
        with rt.engine.connect() as connection:
            return {
                table.name: sorted(map(tuple, connection.execute(select(table))), key=repr)
                for table in tables.metadata.sorted_tables
            }
    finally:
        rt.engine.dispose()


def started_now(url: str, at: datetime, visitor: str, attributes: dict[str, str]) -> dict[str, Any]:
    """What the engine decides when the conversation does start: the replay goes on."""
    ev = Events("shop-1").at(at)
    started = ev.event(
        "conversation.started", conversation="n1", visitor=visitor, attributes=attributes
    )
    started["id"] = "shop-1-the-new-one"  # the day's ids are taken
    out = io.StringIO()
    replay(Settings(database_url=url), io.BytesIO(jsonl(ev.lines)).readlines(), out)
    decisions = [json.loads(line) for line in out.getvalue().splitlines()]
    (placed,) = [d for d in decisions if d["data"].get("conversation") == "n1"]
    return dict(placed["data"])


CASES = {
    # Night skipped (closed), then a chosen: b is full, c and d away
    "assigned": ("v-new", PHONES),
    "sticky": ("v-old", PHONES),
    "queued": ("v-new", {"page": "desk"}),
    "unrouted": ("v-new", {"page": "elsewhere"}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_route_answers_what_the_conversation_then_gets_and_changes_nothing(
    day: tuple[str, datetime], case: str
) -> None:
    url, at = day
    visitor, attributes = CASES[case]
    before = everything(url)
    rt = bootstrap.build(Settings(database_url=url))
    try:
        answer = route(rt, "shop-1", attributes, at, visitor=visitor)
    finally:
        rt.engine.dispose()
    assert everything(url) == before  # not a row changed, in any table
    assert answer is not None
    decided = started_now(url, at, visitor, attributes)
    assert answer["explain"] == decided["explain"]
    assert (answer["respondent"], answer["position"], answer.get("code")) == (
        decided.get("respondent"),
        decided.get("position"),
        decided.get("code"),
    )
    assert answer["group"] == decided.get("group")
    assert (answer["rule"], answer["target"]) == (
        decided["explain"]["rule"],
        decided["explain"]["target"],
    )


def test_what_each_case_looks_like(day: tuple[str, datetime]) -> None:
    url, at = day
    rt = bootstrap.build(Settings(database_url=url))
    try:
        answers = {
            case: route(rt, "shop-1", attributes, at, visitor=visitor)
            for case, (visitor, attributes) in CASES.items()
        }
    finally:
        rt.engine.dispose()
    brief = {
        case: (a["rule"], a["target"], a["group"], a["respondent"], a["position"], a.get("code"))
        for case, a in answers.items()
        if a is not None
    }
    assert brief == {
        "assigned": ("phones", 1, "Phones", "a", None, None),
        "sticky": ("phones", 1, "Phones", "a", None, None),
        "queued": ("desk", 0, "Desk", None, 2, None),
        "unrouted": (None, None, None, None, None, "no_rule"),
    }
    assigned = answers["assigned"]
    assert assigned is not None
    assert assigned["explain"]["skipped"] == [{"group": "Night", "why": "closed"}]
    assert assigned["explain"]["eligible"] == 1
    assert assigned["explain"]["ineligible"] == {"excluded": 0, "unavailable": 2, "full": 1}


def test_the_command_line(day: tuple[str, datetime], tmp_path: Path) -> None:
    url, at = day
    common = ("--db", url, "--tenant", "shop-1", "--at", rfc3339(at))
    as_json = chatroute("route", *common, "--attr", "page=phones", "--json", cwd=tmp_path)
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["respondent"] == "a"
    text = chatroute("route", *common, "--attr", "page=desk", cwd=tmp_path)
    assert text.stdout.splitlines()[0] == "queued in Desk at position 2"
    assert "ineligible: 0 excluded, 1 unavailable, 0 full" in text.stdout
    unknown = chatroute("route", "--db", url, "--tenant", "nobody", cwd=tmp_path)
    assert (unknown.returncode, unknown.stderr.strip()) == (
        1,
        "chatroute route: no tenant 'nobody'",
    )
    bad = chatroute("route", *common, "--attr", "page", cwd=tmp_path)
    assert bad.returncode == 2 and "is not KEY=VALUE" in bad.stderr


def test_a_priority_the_event_could_not_have_is_refused(day: tuple[str, datetime]) -> None:
    url, at = day
    rt = bootstrap.build(Settings(database_url=url))
    try:
        with pytest.raises(Rejected):
            route(rt, "shop-1", PHONES, at, priority=10**9)
    finally:
        rt.engine.dispose()


def test_explain_shows_a_conversations_decisions_with_their_reasons(
    day: tuple[str, datetime], tmp_path: Path
) -> None:
    url, _ = day
    args = ("--db", url, "--tenant", "shop-1", "--conversation", "x3")
    as_json = chatroute("explain", *args, "--json", cwd=tmp_path)
    assert as_json.returncode == 0, as_json.stderr
    document = json.loads(as_json.stdout)
    (decision,) = document["decisions"]
    assert (document["tenant"], document["conversation"]) == ("shop-1", "x3")
    assert decision["type"] == "conversation.assigned"
    assert decision["data"]["explain"]["rule"] == "phones"
    text = chatroute("explain", *args, cwd=tmp_path)
    respondent = decision["data"]["respondent"]
    assert text.stdout.splitlines()[:3] == [
        f"{decision['at']}  assigned to {respondent} in Phones (new)",
        "    rule phones, target 1",
        "    skipped Night: closed",
    ]
    missing = chatroute("explain", "--db", url, "--tenant", "shop-2", "--conversation", "zz",
                        cwd=tmp_path)  # fmt: skip
    assert missing.returncode == 1 and "no decision about conversation 'zz'" in missing.stderr
