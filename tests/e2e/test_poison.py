"""A poison event (#6): its handling kills the worker process every time (SIGKILL, which
dramatiq never counts). It ends after a bounded number of tries, rejected with its reason and
kept in ``chat.events.rejected``; the conversation's later events and other tenants go on."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from chatroute.store import attempts, tables
from tests.builders import Events
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


def test_an_event_that_kills_its_worker_is_set_aside_and_the_rest_goes_on(
    pg_url: str, vhost: Vhost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop = Events("shop-1")
    shop.rule("all", "G")
    shop.respondent("a", ["G"], slots=5)
    shop.start("c1")
    poison = shop.event("message.posted", conversation="c1", author="respondent", respondent="a")
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
