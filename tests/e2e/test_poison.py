"""A poison event (#6): its handling kills the worker process every time (SIGKILL, which
dramatiq never counts). It ends after a bounded number of tries, rejected with its reason and
kept in ``chat.events.rejected``; the conversation's later events and other tenants go on."""

from __future__ import annotations

import io
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select

from chatroute.settings import Settings
from chatroute.store import attempts, tables
from chatroute.tools.replay import replay
from tests.builders import Events, rfc3339
from tests.e2e.harness import DecisionLog, Pipeline, Vhost, lines, wait_until

pytestmark = pytest.mark.services


def inbox(database: str) -> dict[str, tuple[str, str | None, int]]:
    engine = create_engine(database.replace("postgresql://", "postgresql+psycopg://"))
    c = tables.inbox.c
    with engine.connect() as connection:
        rows = connection.execute(select(c.event_id, c.state, c.reason, c.attempts)).all()
    engine.dispose()
    return {event_id: (state, reason, n) for event_id, state, reason, n in rows}


def settled(database: str) -> bool:
    return {state for state, _, _ in inbox(database).values()} <= {"applied", "rejected"}


def assigned(log: DecisionLog) -> set[str]:
    return {
        d["data"]["conversation"] for d in log.decisions if d["type"] == "conversation.assigned"
    }


def poisoned() -> tuple[Events, dict[str, Any]]:
    """shop-1 with conversation c1 assigned to a, and the event of c1 that will kill workers."""
    shop = Events("shop-1")
    shop.rule("all", "G")
    shop.respondent("a", ["G"], slots=5)
    shop.start("c1")
    poison = shop.event("message.posted", conversation="c1", author="respondent", respondent="a")
    return shop, poison


def test_an_event_that_kills_its_worker_is_set_aside_and_the_rest_goes_on(
    pg_url: str, vhost: Vhost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop, poison = poisoned()
    shop.event("conversation.closed", conversation="c1")
    shop.start("c2")
    other = Events("shop-2")
    other.rule("all", "G")
    other.respondent("z", ["G"])
    other.start("d1")
    monkeypatch.setenv("CHATROUTE_FAULT_KILL_ON", poison["id"])
    pipeline = Pipeline(pg_url, vhost.url, tmp_path, processes=2, threads=2)
    decisions = DecisionLog(vhost.url)
    pipeline.start()
    try:
        pipeline.publish(lines(shop.lines + other.lines))
        wait_until(lambda: settled(pg_url), 120, "every event applied or set aside")
        wait_until(lambda: len(assigned(decisions)) == 3, 30, "the assignments published")
    finally:
        pipeline.stop()
        decisions.stop()
    rows = inbox(pg_url)
    state, reason, tries = rows.pop(poison["id"])
    assert (state, tries) == ("rejected", attempts.MAX_ATTEMPTS)
    assert reason == f"set aside: {attempts.MAX_ATTEMPTS} tries ended the worker process"
    assert {state for state, _, _ in rows.values()} == {"applied"}
    assert assigned(decisions) == {"c1", "c2", "d1"}
    rejected = [d["data"] for d in decisions.decisions if d["type"] == "event.rejected"]
    assert rejected == [{"event_id": poison["id"], "type": "message.posted", "reason": reason}]
    assert "event_set_aside_after_crashes" in (tmp_path / "worker.log").read_text()


def test_a_poison_event_does_not_set_aside_the_events_its_crashes_cut_short_beside_it(
    pg_url: str, vhost: Vhost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given one worker process with two threads, a poison event in shop-1, and shop-2 busy
    # with conversations whose tries run beside it (a SIGKILL ends them too)
    shop, poison = poisoned()
    busy = Events("shop-2")
    busy.rule("all", "G")
    busy.respondent("z", ["G"], slots=100)
    for n in range(60):
        busy.start(f"d{n}")
        busy.event("message.posted", conversation=f"d{n}", author="visitor")
    monkeypatch.setenv("CHATROUTE_FAULT_KILL_ON", poison["id"])
    pipeline = Pipeline(pg_url, vhost.url, tmp_path, processes=1, threads=2)
    pipeline.start()
    try:
        half = len(busy.lines) // 2
        published = busy.lines[:half] + shop.lines + busy.lines[half:]
        pipeline.publish(lines(published))

        def all_settled() -> bool:
            return len(inbox(pg_url)) == len(published) and settled(pg_url)

        wait_until(all_settled, 180, "every event applied or set aside")
    finally:
        pipeline.stop()
    # Then only the poison is set aside: shop-2's events, tried alone once a crash beside them
    # counted them, are all applied
    rows = inbox(pg_url)
    assert rows.pop(poison["id"])[:1] == ("rejected",)
    assert {event_id for event_id, (state, _, _) in rows.items() if state != "applied"} == set()
    assert max(n for _, _, n in rows.values()) < attempts.MAX_ATTEMPTS


def timers(database: str) -> dict[str, tuple[str, int]]:
    engine = create_engine(database.replace("postgresql://", "postgresql+psycopg://"))
    t = tables.timers.c
    with engine.connect() as connection:
        rows = connection.execute(select(t.timer_id, t.state, t.attempts)).all()
    engine.dispose()
    return {timer_id: (state, n) for timer_id, state, n in rows}


def wake_timers(shop: Events, folder: Path) -> list[str]:
    """The ids the wake timers of ``shop``'s events get (replayed: ids are deterministic)."""
    replay(Settings(database_url=f"sqlite:///{folder}/ids.db"), lines(shop.lines), io.StringIO())
    with sqlite3.connect(folder / "ids.db") as connection:
        query = "SELECT timer_id FROM timers WHERE kind = 'wake' ORDER BY timer_id"
        return [timer_id for (timer_id,) in connection.execute(query)]


def conversations(now: datetime) -> Events:
    """Three conversations of shop-1, assigned to its one respondent."""
    shop = Events("shop-1", now=now, step=timedelta(milliseconds=1))
    shop.rule("all", "G")
    shop.respondent("a", ["G"], slots=5)
    for n in range(3):
        shop.start(f"c{n}")
    return shop


def snooze(shop: Events, now: datetime) -> None:
    """The three snoozed until 3 s after ``now``, so that they wake together."""
    shop.at(now)
    until = rfc3339(now + timedelta(seconds=3))
    for n in range(3):
        shop.event("conversation.snoozed", conversation=f"c{n}", respondent="a", until=until)


def test_a_timer_that_kills_its_worker_is_set_aside_and_the_tenant_goes_on(
    pg_url: str, vhost: Vhost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given three snoozes that wake at the same moment, the second's wake killing its worker
    # process every time, and a conversation that starts after the wakes
    now = datetime.now(UTC)
    ids = conversations(now)
    snooze(ids, now)
    first, poison, last = wake_timers(ids, tmp_path)
    monkeypatch.setenv("CHATROUTE_FAULT_KILL_ON", f"timer:{poison}")
    pipeline = Pipeline(pg_url, vhost.url, tmp_path, processes=2, threads=2)
    decisions = DecisionLog(vhost.url)
    pipeline.start()
    shop = conversations(datetime.now(UTC))
    try:
        pipeline.publish(lines(shop.lines))
        wait_until(lambda: len(assigned(decisions)) == 3, 60, "the pipeline running")
        # (snoozed once it runs: a snooze applied after its wake time would fire it in its own
        # transaction, and the snooze would be the one set aside)
        published = len(shop.lines)
        snooze(shop, datetime.now(UTC))
        pipeline.publish(lines(shop.lines[published:]))
        wait_until(lambda: timers(pg_url).get(poison, ("",))[0] == "failed", 120, "set aside")
        published = len(shop.lines)
        shop.at(datetime.now(UTC)).start("c9")
        pipeline.publish(lines(shop.lines[published:]))
        wait_until(lambda: "c9" in assigned(decisions), 30, "the tenant going on")
    finally:
        pipeline.stop()
        decisions.stop()
    # Then the poison timer is set aside after its tries (the others, tried in batches it
    # ended, count those tries too), the others fired once each
    states = timers(pg_url)
    assert states[poison] == ("failed", attempts.MAX_ATTEMPTS)
    assert {states[first][0], states[last][0]} == {"fired"}
    woken = [
        d["data"]["conversation"] for d in decisions.decisions if d["type"] == "conversation.woken"
    ]
    assert sorted(woken) == ["c0", "c2"]
    assert "timer_set_aside_after_crashes" in (tmp_path / "worker.log").read_text()
