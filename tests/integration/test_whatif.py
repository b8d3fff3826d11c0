"""``chatroute whatif`` on the sample day (four tenants, the v2 policy): its baseline is
``chatroute replay`` then ``chatroute stats``; a change that changes nothing changes no figure;
one more respondent shows where the queue went."""

from __future__ import annotations

import io
import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from chatroute import bootstrap, stats
from chatroute.cli import main
from chatroute.settings import Settings
from chatroute.tools.replay import replay
from chatroute.tools.whatif import NO_GROUP, ROUTING_OR_NOT, Comparison, read_change, whatif

ROOT = Path(__file__).resolve().parents[2]
DAY = ROOT / "examples" / "sample-day.jsonl"
CHANGE = ROOT / "examples" / "whatif-change.jsonl"
UNTIL = datetime(2026, 11, 23, tzinfo=UTC)


def compare(change_lines: list[bytes], folder: Path) -> Comparison:
    return whatif(DAY, read_change(change_lines), folder, UNTIL)


def replayed(folder: Path) -> tuple[bootstrap.Runtime, list[dict[str, Any]]]:
    out = io.StringIO()
    settings = Settings(database_url=f"sqlite:///{folder}/replay.db")
    with DAY.open("rb") as lines:
        replay(settings, lines, out, UNTIL)
    return bootstrap.build(settings), [json.loads(line) for line in out.getvalue().splitlines()]


def test_the_baseline_is_what_replay_and_stats_give(tmp_path: Path) -> None:
    # Given the sample day and the shipped change
    compared = whatif(DAY, read_change(CHANGE.read_bytes().splitlines()), tmp_path, UNTIL)
    baseline = compared.baseline.figures["tenants"]
    # When the same day is replayed, and its statistics read
    rt, decisions = replayed(tmp_path)
    by_group = stats.rows(rt, "group")
    by_respondent = stats.rows(rt, "respondent")
    # Then every group's figures are the statistics'
    assert sorted(baseline) == sorted({row["tenant"] for row in by_group})
    for row in by_group:
        mine = baseline[row["tenant"]]["groups"][row["group"] or NO_GROUP]
        assert mine["conversations"] == row["conversations"]
        assert mine["queued"] == row["queued"]
        assert mine["overflowed"] == row["overflowed_out"]
        assert mine["wait_p90_s"] == row["wait_p90_s"]
        assert mine["unanswered"] == row["unanswered"]
        assert mine["commission"] == pytest.approx(row["commission"])
        for code, n in mine["unrouted"].items():
            assert row[f"unrouted_{code}"] == n
        assert sum(mine["unrouted"].values()) == row["unrouted"]
    # And every respondent's
    for row in by_respondent:
        mine = baseline[row["tenant"]]["respondents"][row["respondent"]]
        assert mine == {k: row[k] for k in ("contacts", "answered", "unanswered")}
    # And a tenant's figures are its groups' together; assigned at once, the decisions'
    first: dict[tuple[str, str], str] = {}
    for d in decisions:
        if d["type"] in ROUTING_OR_NOT:
            first.setdefault((d["tenant"], d["data"]["conversation"]), d["type"])
    at_once = Counter(t for (t, _), kind in first.items() if kind == "conversation.assigned")
    for tenant, figures in baseline.items():
        groups = figures["groups"].values()
        for key in ("conversations", "queued", "unanswered"):
            assert figures[key] == sum(g[key] for g in groups)
        assert figures["assigned_at_once"] == at_once[tenant] > 0
        assert figures["assigned_at_once"] == sum(g["assigned_at_once"] for g in groups)
    assert any(f["overflowed"] for f in baseline.values())  # the day exercises them all
    assert any(f["unrouted"] for f in baseline.values())


def test_a_change_that_changes_nothing_changes_no_figure(tmp_path: Path) -> None:
    # Given a change that sets what the day sets already: travel-4's tenant settings and
    # rules, and shop-1's respondents
    same = [
        line
        for line in DAY.read_bytes().splitlines()
        if line.startswith(b"{")
        and json.loads(line).get("time") == "2026-11-22T08:00:00Z"
        and json.loads(line)["tenant"] in ("travel-4", "shop-1")
        and json.loads(line)["type"] != "respondent.status"
    ]
    assert len(same) > 10
    # When it is compared with the day
    compared = compare(same, tmp_path)
    # Then both sides are the same
    assert compared.change.unapplied == []
    assert compared.change.figures == compared.baseline.figures
    assert compared.change.waits == compared.baseline.waits


def test_one_more_respondent_takes_the_queue_and_answers_what_the_recording_answered(
    tmp_path: Path,
) -> None:
    # Given shop-1's day, where Smartphones queued two conversations, and one more respondent
    compared = whatif(DAY, read_change(CHANGE.read_bytes().splitlines()), tmp_path, UNTIL)
    before = compared.baseline.figures["tenants"]["shop-1"]
    after = compared.change.figures["tenants"]["shop-1"]
    smartphones = before["groups"]["Smartphones"], after["groups"]["Smartphones"]
    # Then nothing waits in Smartphones any more, and fred took conversations
    assert smartphones[0]["queued"] > 0 and smartphones[1]["queued"] == 0
    assert smartphones[1]["assigned_at_once"] > smartphones[0]["assigned_at_once"]
    assert after["conversations"] == before["conversations"]
    assert before["respondents"].get("fred") is None
    fred = after["respondents"]["fred"]
    # And he answered them when the recording says they were answered: the recording's
    # answers are whoever holds the conversation's, so no contact goes unanswered for it
    assert fred["contacts"] > 0 and fred["unanswered"] == 0
    assert after["unanswered"] <= before["unanswered"]
    # And the tenants the change leaves alone are as they were
    shop_2 = compared.change.figures["tenants"]["shop-2"]
    assert shop_2 == compared.baseline.figures["tenants"]["shop-2"]


def test_the_command_prints_the_contracts_json_and_a_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = [str(DAY), "--change", str(CHANGE), "--until", "2026-11-23T00:00:00Z"]
    assert main(["whatif", *common, "--json", "--keep", str(tmp_path)]) == 0
    compared = json.loads(capsys.readouterr().out)
    assert sorted(compared) == ["baseline", "change"]
    tenant = compared["change"]["tenants"]["travel-4"]
    assert sorted(tenant) == sorted(
        [
            "conversations",
            "assigned_at_once",
            "queued",
            "unrouted",
            "overflowed",
            "wait_p50_s",
            "wait_p90_s",
            "unanswered",
            "commission",
            "groups",
            "respondents",
        ]
    )
    assert sorted(tenant["groups"]["Bookings"]) == sorted(set(tenant) - {"groups", "respondents"})
    assert (tmp_path / "baseline.db").exists() and (tmp_path / "change.db").exists()
    assert main(["whatif", *common]) == 0
    table = capsys.readouterr().out
    assert "tenant travel-4" in table and "  group Bookings" in table
    assert "assigned at once" in table and "fred" in table


def test_bad_input_is_refused_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "none.jsonl"
    assert main(["whatif", str(DAY), "--change", str(missing)]) == 2
    assert f"no such file: {missing}" in capsys.readouterr().err
    wrong = tmp_path / "wrong.jsonl"
    started = next(
        line for line in DAY.read_bytes().splitlines() if b"conversation.started" in line
    )
    wrong.write_bytes(started + b"\n")
    assert main(["whatif", str(DAY), "--change", str(wrong)]) == 2
    assert "line 1:" in capsys.readouterr().err
    elsewhere = tmp_path / "elsewhere.jsonl"
    line = json.loads(CHANGE.read_bytes().splitlines()[0])
    elsewhere.write_text(json.dumps({**line, "tenant": "nobody"}) + "\n")
    assert main(["whatif", str(DAY), "--change", str(elsewhere), "--json"]) == 0
    assert "no event of tenant nobody: its change was not applied" in capsys.readouterr().err
