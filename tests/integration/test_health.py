"""``chatroute health --role R``: ready when the database and broker answer and R's work is on
time; each kind fails on its own backlog, with the figures in its output."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert, update

from chatroute import apply, bootstrap, intake, stats
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
    intake.ingest(rt, [intake.Incoming(json.dumps(e).encode()) for e in shop.lines])
    apply.apply_tenant(rt, "shop-1")
    # Then the stats worker is late by that long, and only it
    report = check(settings, "stats", NOW)
    assert report["stats_lag_s"] == pytest.approx(LATE_S + 30)
    assert ready(settings) == {"gateway": False, "worker": True, "sweeper": True, "stats": False}
    assert report["live"] is True
    # When it counts the change, it is on time again
    stats.fold_tenant(rt, "shop-1")
    assert check(settings, "stats", NOW)["stats_lag_s"] == 0


def deliver(settings: Settings, at: datetime, events: list[dict[str, object]]) -> None:
    """``events`` taken in and applied at ``at``, as the gateway and a worker would."""
    rt = bootstrap.build(settings, VirtualClock(at), migrate=True)
    intake.ingest(rt, [intake.Incoming(json.dumps(e).encode()) for e in events])
    for tenant in {str(e["tenant"]) for e in events}:
        apply.apply_tenant(rt, tenant)
    rt.engine.dispose()


def three_tenants_with_statistics(url: str, now: datetime) -> None:
    """Three tenants counted by the stats worker, two of them changed since: the oldest
    change not counted is shop-2's, 90 s before ``now`` (shop-3's is 40 s old).

    shop-1's checkpoint is far above the others' and its changes are long counted: a lag read
    against another tenant's checkpoint (shop-1's or theirs) finds no change, or shop-1's."""
    settings = Settings(database_url=url)
    shops = {tenant: Events(tenant) for tenant in ("shop-1", "shop-2", "shop-3")}
    for shop in shops.values():
        shop.rule("all", "G")
        shop.respondent("a", ["G"], slots=10)
    for n in range(6):
        shops["shop-1"].start(f"c{n}")
    for tenant in ("shop-2", "shop-3"):
        shops[tenant].start("c0")
    deliver(settings, now - timedelta(seconds=600), [e for s in shops.values() for e in s.lines])
    rt = bootstrap.build(settings)
    for tenant in shops:
        stats.fold_tenant(rt, tenant)
    for tenant, age in (("shop-2", 90), ("shop-3", 40)):
        posted = shops[tenant].event(
            "message.posted", conversation="c0", author="respondent", respondent="a"
        )
        deliver(settings, now - timedelta(seconds=age), [posted])
    with rt.engine.begin() as connection:  # the relay sent every decision
        connection.execute(update(tables.outbox).values(sent_at=now - timedelta(seconds=600)))
    rt.engine.dispose()


def test_the_stats_lag_is_the_oldest_change_not_counted_across_tenants(db_url: str) -> None:
    # Given three tenants with statistics, two of them changed since they were counted
    three_tenants_with_statistics(db_url, NOW)
    # Then every role sees the database, the stats worker is late by shop-2's change, and
    # only it is not ready
    reports = {role: check(Settings(database_url=db_url), role, NOW) for role in ROLES}
    assert {role: r["database"] for role, r in reports.items()} == dict.fromkeys(ROLES, True)
    assert {role: r["stats_lag_s"] for role, r in reports.items()} == dict.fromkeys(ROLES, 90)
    assert {role: r["ready"] for role, r in reports.items()} == {
        "gateway": True, "worker": True, "sweeper": True, "stats": False,
    }  # fmt: skip


def test_the_command_reports_each_role_with_three_tenants_counted(
    db_url: str, tmp_path: Path
) -> None:
    # Given three tenants with statistics, shop-2 changed 90 s ago and not counted since
    three_tenants_with_statistics(db_url, datetime.now(UTC))
    env = {"CHATROUTE_DATABASE_URL": db_url}
    for role in ROLES:
        # When ops ask for each role's health
        result = chatroute("health", "--role", role, cwd=tmp_path, env=env)
        # Then it read the database, and only the stats worker is late (by shop-2's change)
        report = json.loads(result.stdout)
        assert report["database"] is True, report
        assert report["stats_lag_s"] == pytest.approx(90, abs=30)
        late = (False, 1) if role == "stats" else (True, 0)
        assert (report["ready"], result.returncode) == late, report


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
