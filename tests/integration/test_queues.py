"""``chatroute queues``: each group of a tenant now, from the database a replay (or the
pipeline) wrote; on SQLite here, on PostgreSQL through the gauges' test."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from chatroute.settings import Settings
from chatroute.tools.replay import replay
from tests.builders import START, Events, jsonl, rfc3339
from tests.integration.test_cli import chatroute

AT = START + timedelta(hours=1)
ONE_HOUR_A_MONDAY = {"timezone": "UTC", "weekly": {"mon": [["09:00", "10:00"]]}}  # START: a Sunday


def two_tenants() -> list[dict[str, Any]]:
    """shop-1: G full with two waiting, H declared and closed, X named by a rule only;
    bank-7: a G of its own, with room."""
    shop, bank = Events("shop-1"), Events("bank-7")
    shop.rule("all", "G")
    shop.event(
        "rule.updated", rule="x", targets=[{"group": "X"}], priority=1,
        conditions=[{"attribute": "page", "op": "eq", "value": "x"}],
    )  # fmt: skip
    shop.event("group.updated", group="H", hours=ONE_HOUR_A_MONDAY)
    shop.respondent("a", ["G"], slots=2)
    shop.respondent("b", ["G", "H"], slots=1, available=False)
    for conversation in ("c1", "c2", "c3", "c4"):
        shop.later(minutes=5).start(conversation)
    bank.rule("all", "G")
    bank.respondent("z", ["G"], slots=3)
    bank.start("k1")
    return [*shop.lines, *bank.lines]


@pytest.fixture
def database(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/q.db"
    replay(Settings(database_url=url), io.BytesIO(jsonl(two_tenants())).readlines(), io.StringIO())
    return url


def queues(database: str, tmp_path: Path, *extra: str) -> str:
    done = chatroute("queues", "--db", database, "--tenant", "shop-1", *extra, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_each_group_of_the_tenant_with_its_queue_and_its_free_slots(
    database: str, tmp_path: Path
) -> None:
    rows = json.loads(queues(database, tmp_path, "--at", rfc3339(AT), "--json"))
    third_start = START + timedelta(minutes=15, seconds=9)  # c3, the first to wait
    assert rows == [
        {
            "group": "G",
            "open": True,
            "waiting": 2,
            "longest_wait_s": (AT - third_start).total_seconds(),
            "available": 1,
            "free_slots": 0,
        },
        {
            "group": "H",
            "open": False,
            "waiting": 0,
            "longest_wait_s": None,
            "available": 0,
            "free_slots": 0,
        },
        {
            "group": "X",
            "open": True,
            "waiting": 0,
            "longest_wait_s": None,
            "available": 0,
            "free_slots": 0,
        },
    ]


def test_the_table_and_the_time_it_is_judged_at(database: str, tmp_path: Path) -> None:
    table = queues(database, tmp_path, "--at", rfc3339(AT)).splitlines()
    assert table[0].split() == [
        "group", "open", "waiting", "longest_wait_s", "available", "free_slots",
    ]  # fmt: skip
    assert table[1].split() == ["G", "yes", "2", "2691", "1", "0"]
    assert table[2].split() == ["H", "no", "0", "-", "0", "0"]
    # A Monday at 9:30, H is open; without --at, now (waits are then as long as since START)
    monday = START + timedelta(days=1, minutes=-30)
    rows = json.loads(queues(database, tmp_path, "--at", rfc3339(monday), "--json"))
    assert [r["open"] for r in rows] == [True, True, True]
    rows = json.loads(queues(database, tmp_path, "--json"))
    assert rows[0]["longest_wait_s"] > (AT - START).total_seconds()


def test_an_unknown_tenant_has_no_group(database: str, tmp_path: Path) -> None:
    done = chatroute("queues", "--db", database, "--tenant", "nobody", "--json", cwd=tmp_path)
    assert done.returncode == 0 and json.loads(done.stdout) == []
