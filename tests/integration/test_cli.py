"""The command line as a user runs it: a new database, decisions on stdout, logs on stderr."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from tests.builders import Events, jsonl, rfc3339

ROOT = Path(__file__).resolve().parents[2]
STATS_KEYS = [
    "tenant",
    "respondent",
    "contacts",
    "answered",
    "unanswered",
    "transfers_out",
    "snoozes",
    "satisfaction_count",
    "satisfaction_avg",
    "commission",
    "first_response_avg_s",
]


def chatroute(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``chatroute`` in ``cwd`` with no CHATROUTE_* setting but those of ``env``."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CHATROUTE_")},
        "PYTHONPATH": str(ROOT),
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_replay_then_stats_on_the_default_database(tmp_path: Path) -> None:
    # Given a file of events with a bad line in the middle
    shop = Events("shop-1")
    shop.event("tenant.updated", commission={"mode": "percent", "rate": 0.1})
    shop.rule("all", "G")
    shop.respondent("a", ["G"], slots=1)
    shop.respondent("b", ["G"], slots=1)
    shop.start("c1")
    shop.event("message.posted", conversation="c1", author="respondent", respondent="a")
    shop.event("conversation.sale", conversation="c1", amount=200)
    shop.event("conversation.rated", conversation="c1", score=4)
    shop.start("c2")
    shop.event("conversation.closed", conversation="c1")
    (tmp_path / "events.jsonl").write_bytes(
        jsonl(shop.lines[:5]) + b"{oops\n" + jsonl(shop.lines[5:])
    )
    # When it is replayed with no --db, in a fresh folder
    replayed = chatroute("replay", "events.jsonl", cwd=tmp_path)
    # Then decisions are JSON lines on stdout, logs JSON on stderr, in sqlite:///chatroute.db
    assert replayed.returncode == 0, replayed.stderr
    decisions = [json.loads(line) for line in replayed.stdout.splitlines()]
    assert [d["type"] for d in decisions] == [
        "event.rejected",
        "conversation.assigned",
        "conversation.assigned",
    ]
    assert all(json.loads(line) for line in replayed.stderr.splitlines())
    assert (tmp_path / "chatroute.db").exists()
    stats = chatroute("stats", "--json", cwd=tmp_path)
    assert stats.returncode == 0, stats.stderr
    rows = json.loads(stats.stdout)
    assert [list(row) for row in rows] == [STATS_KEYS, STATS_KEYS]
    a, b = rows
    assert (a["respondent"], a["contacts"], a["answered"], a["unanswered"]) == ("a", 1, 1, 0)
    assert (a["satisfaction_count"], a["satisfaction_avg"], a["commission"]) == (1, 4.0, 20.0)
    assert (b["respondent"], b["contacts"], b["answered"], b["unanswered"]) == ("b", 1, 0, 1)
    table = chatroute("stats", "--tenant", "shop-1", cwd=tmp_path)
    assert table.stdout.splitlines()[0].split() == STATS_KEYS


def test_replay_of_a_missing_file_says_so(tmp_path: Path) -> None:
    result = chatroute("replay", "nope.jsonl", cwd=tmp_path)
    assert result.returncode == 2 and "no such file" in result.stderr


def test_a_stamped_replay_receives_each_line_when_its_stamp_says(tmp_path: Path) -> None:
    # Given a conversation whose frontend dated it a day ahead, stamped with when it came in
    shop = Events("shop-1")
    shop.rule("all", "G")
    shop.respondent("a", ["G"])
    came_in = shop.now + timedelta(minutes=1)
    shop.at(came_in + timedelta(days=1)).start("c1")
    stamps = [None] * (len(shop.lines) - 1) + [rfc3339(came_in)]
    lines = [
        json.dumps({"body": json.dumps(event), "received_at": stamp})
        for event, stamp in zip(shop.lines, stamps, strict=True)
    ]
    (tmp_path / "stamped.jsonl").write_text("\n".join(lines) + "\n")
    # When it is replayed --stamped
    replayed = chatroute("replay", "--stamped", "stamped.jsonl", cwd=tmp_path)
    # Then the conversation was decided 5 s after it came in, not a day later
    assert replayed.returncode == 0, replayed.stderr
    [assigned] = [json.loads(line) for line in replayed.stdout.splitlines()]
    assert assigned["time"] == rfc3339(came_in + timedelta(seconds=5))
    # And a line that is not stamped is refused, naming its number
    (tmp_path / "bad.jsonl").write_text(lines[0] + "\n" + json.dumps(shop.lines[1]) + "\n")
    refused = chatroute("replay", "--stamped", "bad.jsonl", cwd=tmp_path)
    assert refused.returncode == 2 and "line 2: not a stamped line" in refused.stderr


COMMANDS = ["replay", "whatif", "stats", "report", "queues", "explain", "route", "history", "prune",
            "access", "gateway", "publish", "worker", "sweeper", "health",
            "migrate"]  # fmt: skip


def test_help_says_what_chatroute_is_and_what_each_command_does(tmp_path: Path) -> None:
    # When a new user asks for help, on an 80-column terminal
    result = chatroute("--help", cwd=tmp_path, env={"COLUMNS": "80"})
    # Then it opens with a sentence about chatroute, not a docstring's fragment ...
    assert result.returncode == 0, result.stderr
    _usage, description, listing, *_ = result.stdout.split("\n\n")
    assert description.startswith("chatroute routes the conversations of live-chat frontends")
    assert "``" not in result.stdout
    # ... and gives each command one line that says what it does
    lines = listing.splitlines()[2:]  # after "positional arguments:" and "COMMAND"
    assert [line.split()[0] for line in lines] == COMMANDS
    assert all(re.fullmatch(r" {4}[a-z]+ {2,}[a-z].{10,}", line) for line in lines), lines


@pytest.mark.parametrize("command", [["gateway"], ["publish", "events.jsonl"]])
def test_commands_needing_a_broker_say_which_setting(command: list[str], tmp_path: Path) -> None:
    result = chatroute(*command, cwd=tmp_path)
    assert result.returncode == 2
    assert f"chatroute {command[0]}: set --amqp, CHATROUTE_AMQP_URL or CHATROUTE_AMQP_URL_FILE" in (
        result.stderr
    )


DEPLOYED = [
    ["gateway"],
    ["worker"],
    ["sweeper"],
    ["health"],
    ["migrate"],
    ["prune", "--older-than-days", "14"],
    ["access", "list"],
]


@pytest.mark.parametrize("command", DEPLOYED)
def test_deployed_processes_have_no_default_database(command: list[str], tmp_path: Path) -> None:
    # Given a broker but no database setting
    result = chatroute(*command, cwd=tmp_path, env={"CHATROUTE_AMQP_URL": "amqp://mq"})
    # Then the process refuses to start, saying what to set, and opens no ./chatroute.db
    assert result.returncode == 2, result.stderr
    assert "no database configured: set CHATROUTE_DATABASE_URL" in result.stderr
    assert not (tmp_path / "chatroute.db").exists()


def test_a_secret_file_that_cannot_be_read_stops_the_command(tmp_path: Path) -> None:
    env = {"CHATROUTE_DATABASE_URL_FILE": str(tmp_path / "missing")}
    result = chatroute("stats", cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert f"CHATROUTE_DATABASE_URL_FILE: cannot read {tmp_path / 'missing'}" in result.stderr


def test_a_database_url_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "url").write_text(f"sqlite:///{tmp_path}/from-file.db\n")
    result = chatroute("migrate", cwd=tmp_path, env={"CHATROUTE_DATABASE_URL_FILE": "url"})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "from-file.db").exists()


def test_history_shows_snoozes_and_reopenings_in_order(tmp_path: Path) -> None:
    # Given a conversation snoozed until the visitor replies, who then replies
    shop = Events("shop-1")
    shop.rule("all", "G")
    shop.respondent("a", ["G"], slots=1)
    shop.start("c1")
    shop.event("message.posted", conversation="c1", author="respondent", respondent="a")
    shop.event("conversation.snoozed", conversation="c1", respondent="a")
    shop.later(minutes=45)
    shop.event("message.posted", conversation="c1", author="visitor")
    shop.start("c2")
    (tmp_path / "events.jsonl").write_bytes(jsonl(shop.lines))
    assert chatroute("replay", "events.jsonl", cwd=tmp_path).returncode == 0
    # When its history is asked for
    result = chatroute("history", "--tenant", "shop-1", "--conversation", "c1", cwd=tmp_path)
    # Then it lists events and decisions in order, marking the snooze and the reopening
    assert result.returncode == 0, result.stderr
    entries = json.loads(result.stdout)["timeline"]
    assert [(e["kind"], e["type"], e.get("mark")) for e in entries] == [
        ("event", "conversation.started", None),
        ("decision", "conversation.assigned", None),
        ("event", "message.posted", None),
        ("event", "conversation.snoozed", None),
        ("decision", "conversation.snoozed", "snoozed"),
        ("event", "message.posted", None),
        ("decision", "conversation.woken", "reopened"),
        ("decision", "conversation.assigned", None),
    ]
    missing = chatroute("history", "--tenant", "shop-1", "--conversation", "nope", cwd=tmp_path)
    assert missing.returncode == 1 and "no conversation 'nope'" in missing.stderr


def test_history_places_timer_decisions_before_later_events(tmp_path: Path) -> None:
    shop = Events("shop-1")
    shop.rule("all", "G")
    shop.respondent("a", ["G"], slots=1)
    shop.start("c1")
    until = shop.now + timedelta(hours=1)
    shop.event("conversation.snoozed", conversation="c1", respondent="a", until=rfc3339(until))
    shop.later(hours=2)
    shop.event("conversation.closed", conversation="c1")
    (tmp_path / "events.jsonl").write_bytes(jsonl(shop.lines))
    assert chatroute("replay", "events.jsonl", cwd=tmp_path).returncode == 0
    result = chatroute("history", "--tenant", "shop-1", "--conversation", "c1", cwd=tmp_path)
    entries = json.loads(result.stdout)["timeline"]
    assert [(e["type"], e.get("mark")) for e in entries][-3:] == [
        ("conversation.woken", "reopened"),
        ("conversation.assigned", None),
        ("conversation.closed", None),
    ]
    assert entries[-3]["cause"].startswith("timer:")
