"""``chatroute health --role R``: ready when the database and broker answer and R's work is on
time; each kind fails on its own backlog, with the figures in its output."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert

from chatroute import bootstrap, service, stats
from chatroute.clock import VirtualClock
from chatroute.health import LATE_S, ROLES, check
from chatroute.settings import Settings
from chatroute.store import tables
from tests.builders import Events
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
    return {role: check(settings, role, NOW)["ready"] for role in ROLES}


def test_an_idle_engine_is_ready_in_every_role(settings: Settings) -> None:
    assert ready(settings) == {"gateway": True, "worker": True, "sweeper": True, "stats": True}
    assert check(settings, "worker", NOW)["outbox_backlog"] == 0


def test_each_role_fails_on_its_own_late_work(settings: Settings) -> None:
    timer = dict(tenant="t", timer_id="w", kind="wake", conversation_id="c", due=LATE)
    add(settings, tables.timers, timer | {"state": "armed"})
    assert ready(settings) == {"gateway": True, "worker": True, "sweeper": False, "stats": True}
    assert all(check(settings, role, NOW)["live"] for role in ROLES)
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


def test_the_stats_worker_is_late_by_its_oldest_change_not_counted(db_url: str) -> None:
    # Given a conversation assigned a while ago, and no stats worker since
    settings = Settings(database_url=db_url)
    shop = Events("shop-1")
    shop.rule("all", "G")
    shop.respondent("a", ["G"], slots=1)
    shop.start("c1")
    rt = bootstrap.build(settings, VirtualClock(LATE), migrate=True)
    service.ingest(rt, [service.Incoming(json.dumps(e).encode()) for e in shop.lines])
    service.apply_tenant(rt, "shop-1")
    # Then the stats worker is late by that long, and only it
    report = check(settings, "stats", NOW)
    assert report["stats_lag_s"] == pytest.approx(LATE_S + 30)
    assert ready(settings) == {"gateway": False, "worker": True, "sweeper": True, "stats": False}
    assert report["live"] is True
    # When it counts the change, it is on time again
    stats.fold_tenant(rt, "shop-1")
    assert check(settings, "stats", NOW)["stats_lag_s"] == 0


def test_live_asks_only_whether_the_services_answer(tmp_path: Path) -> None:
    # Given a timer long overdue
    env = {"CHATROUTE_DATABASE_URL": f"sqlite:///{tmp_path}/h.db"}
    assert chatroute("migrate", cwd=tmp_path, env=env).returncode == 0
    overdue = dict(tenant="t", timer_id="w", kind="wake", conversation_id="c", due=LATE)
    add(Settings(database_url=env["CHATROUTE_DATABASE_URL"]), tables.timers,
        overdue | {"state": "armed"})  # fmt: skip
    # Then the sweeper is live but not ready
    assert chatroute("health", "--role", "sweeper", cwd=tmp_path, env=env).returncode == 1
    live = chatroute("health", "--role", "sweeper", "--live", cwd=tmp_path, env=env)
    assert live.returncode == 0 and json.loads(live.stdout)["live"] is True
