"""``chatroute health --role R``: ready when the database and broker answer and R's work is on
time; each kind fails on its own backlog, with the figures in its output."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert

from chatroute import bootstrap
from chatroute.health import LATE_S, check
from chatroute.settings import Settings
from chatroute.store import tables
from tests.integration.test_cli import chatroute

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
LATE = NOW - timedelta(seconds=LATE_S + 30)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/h.db")
    bootstrap.build(settings, migrate=True)
    return settings


def add(settings: Settings, table: tables.Table, row: dict[str, object]) -> None:
    with bootstrap.build(settings).engine.begin() as connection:
        connection.execute(insert(table), [row])


def ready(settings: Settings) -> dict[str, bool]:
    return {role: check(settings, role, NOW)["ready"] for role in ("gateway", "worker", "sweeper")}


def test_an_idle_engine_is_ready_in_every_role(settings: Settings) -> None:
    assert ready(settings) == {"gateway": True, "worker": True, "sweeper": True}
    assert check(settings, "worker", NOW)["outbox_backlog"] == 0


def test_each_role_fails_on_its_own_late_work(settings: Settings) -> None:
    timer = dict(tenant="t", timer_id="w", kind="wake", conversation_id="c", due=LATE)
    add(settings, tables.timers, timer | {"state": "armed"})
    assert ready(settings) == {"gateway": True, "worker": True, "sweeper": False}
    assert check(settings, "sweeper", NOW)["timer_lag_s"] == pytest.approx(LATE_S + 30)
    decision = dict(decision_id="d", tenant="t", exchange="chat.decisions", routing_key="t.x")
    add(settings, tables.outbox, decision | {"body": b"{}", "created_at": LATE})
    assert ready(settings)["gateway"] is False
    assert check(settings, "gateway", NOW)["outbox_backlog"] == 1
    add(settings, tables.inbox, {"tenant": "t", "event_id": "e", "type": "message.posted",
                                 "event_time": LATE, "received_at": LATE, "body": "{}",
                                 "state": "new"})  # fmt: skip
    assert ready(settings)["worker"] is False


def test_a_database_that_does_not_answer_fails_the_check(tmp_path: Path) -> None:
    report = check(Settings(database_url="postgresql://nobody@127.0.0.1:1/none"), "worker", NOW)
    assert (report["database"], report["ready"]) == (False, False)


def test_the_command_prints_the_figures_and_exits_by_readiness(tmp_path: Path) -> None:
    env = {"CHATROUTE_DATABASE_URL": f"sqlite:///{tmp_path}/h.db"}
    assert chatroute("migrate", cwd=tmp_path, env=env).returncode == 0
    result = chatroute("health", "--role", "sweeper", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["role"] == "sweeper" and report["ready"] is True and report["timer_lag_s"] == 0
