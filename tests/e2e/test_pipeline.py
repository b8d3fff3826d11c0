"""The real pipeline: RabbitMQ, PostgreSQL, the gateway, 4 worker processes and the sweeper.

Given events published to ``chat.events`` by concurrent publishers, when the pipeline runs,
then every event is accounted for (applied or rejected), no decision comes twice, and no
respondent ever holds more conversations than their slots (checked from the decision log).
"""

from __future__ import annotations

import io
import json
import os
import signal
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import create_engine, func, select

from chatroute.amqp import DECISIONS_EXCHANGE
from chatroute.domain.model import TimerState
from chatroute.settings import Settings
from chatroute.store import tables
from chatroute.tools.replay import replay
from schemas.events import best_effort_identity
from tests.builders import Events
from tests.e2e.harness import (
    DecisionLog,
    Pipeline,
    Vhost,
    lines,
    received_times,
    stamped,
    wait_until,
)

pytestmark = pytest.mark.services

TENANTS = ("alpha", "beta", "gamma")
RESPONDENTS = 10
SLOTS = 3
CONVERSATIONS = 700  # per tenant: 2,100 in all


def make_pipeline(pg_url: str, vhost: Vhost, tmp_path: Path, **kw: int) -> Pipeline:
    return Pipeline(pg_url, vhost.url, tmp_path, **kw)


def configuration(tenant: str) -> Events:
    events = Events(tenant)
    events.rule("all", "Support")
    for n in range(RESPONDENTS):
        events.respondent(f"r{n:02d}", ["Support"], slots=SLOTS)
    return events


def inbox_states(database_url: str) -> Counter[str]:
    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    c = tables.inbox.c
    with engine.connect() as connection:
        rows = connection.execute(select(c.state, func.count()).group_by(c.state)).all()
    engine.dispose()
    return Counter({state: count for state, count in rows})


def check_slots(decisions: list[dict[str, Any]], closes: dict[str, tuple[str, str]]) -> None:
    """Replays the decision log per tenant: nobody ever above ``SLOTS``, nobody assigned twice."""
    holder: dict[tuple[str, str], str] = {}
    load: Counter[tuple[str, str]] = Counter()
    for decision in decisions:
        tenant, data = decision["tenant"], decision["data"]
        closed = closes.get(decision["causationid"])
        if closed is not None and (tenant, closed[1]) in holder:
            load[(tenant, holder.pop((tenant, closed[1])))] -= 1
        if decision["type"] == "conversation.assigned":
            key = (tenant, data["conversation"])
            assert key not in holder, f"{key} assigned twice"
            holder[key] = data["respondent"]
            load[(tenant, data["respondent"])] += 1
            assert load[(tenant, data["respondent"])] <= SLOTS, f"{data['respondent']} overbooked"


def workload() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Configuration, then 2,100 starts, then closes of the first conversations assigned."""
    setup: list[dict[str, Any]] = []
    starts: list[dict[str, Any]] = []
    for tenant in TENANTS:
        events = configuration(tenant)
        setup += events.lines
        events.lines = []
        for n in range(CONVERSATIONS):
            events.start(f"c{n:04d}")
        starts += events.lines
    return setup, starts, []


def test_concurrent_conversations_are_each_decided_once_within_slots(
    pg_url: str, vhost: Vhost, tmp_path: Path
) -> None:
    # Given the pipeline with 4 worker processes and three configured tenants
    pipeline = make_pipeline(pg_url, vhost, tmp_path, processes=4, threads=2)
    log = DecisionLog(vhost.url)
    pipeline.start()
    setup, starts, _ = workload()
    try:
        pipeline.publish(lines(setup))
        wait_until(lambda: inbox_states(pg_url)["applied"] == len(setup), 60, "configuration")
        # When 2,100 conversations start at once from 4 publishers
        pipeline.publish(lines(starts), publishers=4)
        expected = len(starts)
        wait_until(lambda: len(log.decisions) >= expected, 180, "a decision per conversation")
        # And then every assigned conversation closes, from 2 publishers
        assigned = [d for d in log.decisions if d["type"] == "conversation.assigned"]
        closes = close_events(assigned)
        pipeline.publish(lines(closes), publishers=2)
        wait_until(
            lambda: inbox_states(pg_url)["applied"] == len(setup) + expected + len(closes),
            180,
            "closes applied",
        )
        wait_until(lambda: len(log.decisions) >= expected + len(closes), 60, "dequeues")
    finally:
        pipeline.stop()
        log.stop()
    # Then every event was applied, decisions are unique, and slots held throughout
    ids = Counter(d["id"] for d in log.decisions)
    assert max(ids.values()) == 1
    assert inbox_states(pg_url) == Counter({"applied": len(setup) + len(starts) + len(closes)})
    assert len(assigned) == len(TENANTS) * RESPONDENTS * SLOTS
    per_conversation = Counter(
        (d["tenant"], d["data"]["conversation"])
        for d in log.decisions
        if d["causationid"] in {e["id"] for e in starts}
    )
    assert len(per_conversation) == len(starts) and max(per_conversation.values()) == 1
    check_slots(log.decisions, {e["id"]: (e["tenant"], e["data"]["conversation"]) for e in closes})
    dequeued = [d for d in log.decisions if d["data"].get("cause") == "queue"]
    assert len(dequeued) == len(closes)
    queued = sorted(
        (d["tenant"], d["data"]["position"])
        for d in log.decisions
        if d["type"] == "conversation.queued"
    )
    for tenant in TENANTS:
        positions = [p for t, p in queued if t == tenant]
        assert positions == list(range(1, CONVERSATIONS - RESPONDENTS * SLOTS + 1))


def close_events(assigned: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_tenant: dict[str, Events] = defaultdict(lambda: Events())
    closes = []
    for decision in assigned:
        tenant = decision["tenant"]
        if tenant not in by_tenant:
            by_tenant[tenant] = Events(tenant)
            by_tenant[tenant].at(by_tenant[tenant].now.replace(hour=11))
            by_tenant[tenant]._ids = iter(range(100_000, 200_000))  # type: ignore[assignment]
        closes.append(
            by_tenant[tenant].event(
                "conversation.closed", conversation=decision["data"]["conversation"]
            )
        )
    return closes


def test_sigkill_of_a_worker_loses_no_event_and_duplicates_no_decision(
    pg_url: str, vhost: Vhost, tmp_path: Path
) -> None:
    pipeline = make_pipeline(pg_url, vhost, tmp_path, processes=2, threads=2)
    log = DecisionLog(vhost.url)
    pipeline.start()
    setup, starts, _ = workload()
    try:
        pipeline.publish(lines(setup))
        wait_until(lambda: len(pipeline.worker_pids()) >= 2, 60, "worker processes")
        # When a worker process is killed while 2,100 conversations are being routed
        pipeline.publish(lines(starts[: len(starts) // 2]), publishers=2)
        victim = pipeline.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        pipeline.publish(lines(starts[len(starts) // 2 :]), publishers=2)
        total = len(setup) + len(starts)
        wait_until(lambda: inbox_states(pg_url)["applied"] == total, 240, "every event applied")
        wait_until(lambda: len(log.decisions) >= len(starts), 60, "every decision published")
    finally:
        pipeline.stop()
        log.stop()
    # Then nothing was lost and nothing doubled
    assert inbox_states(pg_url) == Counter({"applied": total})
    assert max(Counter(d["id"] for d in log.decisions).values()) == 1
    assert len(log.decisions) == len(starts)
    check_slots(log.decisions, {})


SAMPLE_DAY = "2026-11-22"
# The sample day is published at once, so its v2 site's timers (overflow waits, answer
# deadlines, idle closes) are shortened to fire during the test, all after the last event was
# received: each lasts QUICK_S plus a second per minute it lasts on the sample day (so their
# order stays), and the test compares what was decided up to CUTOFF_S after that event.
QUICK_S = 20
CUTOFF_S = 60
SKEW_S = 5  # clock_skew_s: the sample day does not set it
QUICK = ("wait_s", "answer_within_s", "close_after_idle_s")


def test_replay_and_pipeline_decide_the_same(pg_url: str, vhost: Vhost, tmp_path: Path) -> None:
    # Given the sample day, dated days before it is published: the engine takes each event at
    # its effective time (within clock_skew_s of when it was received); its v2 site's timers
    # shortened and its hours made independent of the time of day the test runs
    sample = Path(__file__).resolve().parents[2] / "examples" / "sample-day.jsonl"
    lines = [line.rstrip(b"\n") for line in sample.open("rb") if line.strip()]
    bodies = quick_timers(lines, datetime.now(UTC))
    # When it goes through the real pipeline with one worker process and one thread, and the
    # timers due up to CUTOFF_S after the last event was received fire
    pipeline = make_pipeline(pg_url, vhost, tmp_path, processes=1, threads=1)
    log = DecisionLog(vhost.url)
    pipeline.start()
    try:
        pipeline.publish(bodies)
        wait_until(lambda: settled(pg_url, bodies[-1], log), 120, "every event applied")
        stamps = received_times(pg_url)
        cutoff = max(stamps.values()) + timedelta(seconds=CUTOFF_S)
        wait_until(
            lambda: fired_by(pg_url, cutoff) and settled(pg_url, bodies[-1], log),
            CUTOFF_S + 60,
            "the timers due by the cutoff",
        )
    finally:
        pipeline.stop()
        log.stop()
    # And the same events are replayed, each stamped with when the pipeline received it, up
    # to the cutoff
    out = io.StringIO()
    replay(
        Settings(database_url=f"sqlite:///{tmp_path}/replay.db"),
        stamped(bodies, stamps),
        out,
        until=cutoff,
    )
    replayed = [json.loads(line) for line in out.getvalue().splitlines()]
    decided = [d for d in log.decisions if decision_time(d) <= cutoff]
    # (every timer fell due after the last event was received: one due while events still
    # arrive could fire before an event received after it but dated earlier, which a replay
    # applies first)
    took = max(stamps.values()) - min(stamps.values())
    assert took < timedelta(seconds=QUICK_S - SKEW_S), f"receiving the day took {took}"

    # Then each tenant gets the same decisions, in the same order, with the same ids and
    # times; the gateway rejects an invalid event when it arrives, so rejections are compared
    # as a set (and are stamped with the clock's time: virtual in the replay)
    assert per_tenant(decided) == per_tenant(replayed)
    assert rejections(decided) == rejections(replayed)
    # And the decisions carry the engine's times, not the sample day's
    assert not [d for d in log.decisions if d["time"].startswith(SAMPLE_DAY)]
    # And the v2 site's timers fired
    fired = Counter(kind(d) for d in decided if d["causationid"].startswith("timer:"))
    for expected in ("overflow", "wait_timeout", "no_answer", "respondent.paused", "idle"):
        assert fired[expected], (expected, fired)


def quick_timers(lines: list[bytes], now: datetime) -> list[bytes]:
    """``lines`` with every duration of ``QUICK`` shortened (see ``QUICK_S``), and every
    group's hours open all week, except that a group closed on the sample day is closed from
    the day before ``now`` to the day after (in its timezone)."""
    out = []
    for line in lines:
        try:
            event = json.loads(line)
            data = event["data"]
        except (ValueError, KeyError, TypeError):
            out.append(line)
            continue
        if not isinstance(data, dict):
            out.append(line)
            continue
        for key in QUICK:
            if isinstance(data.get(key), int):
                data[key] = quick(data[key])
        for target in data.get("targets") or []:
            if isinstance(target.get("wait_s"), int):
                target["wait_s"] = quick(target["wait_s"])
        if isinstance(data.get("hours"), dict):
            data["hours"] = all_week(data["hours"], now)
        out.append(json.dumps(event, separators=(",", ":")).encode())
    return out


def quick(seconds: int) -> int:
    return QUICK_S + seconds // 60


def all_week(hours: dict[str, Any], now: datetime) -> dict[str, Any]:
    zone = hours["timezone"]
    local = now.astimezone(ZoneInfo(zone)).date()
    closed = SAMPLE_DAY in hours.get("closed", [])
    dates = [(local + timedelta(days=n)).isoformat() for n in (-1, 0, 1)] if closed else []
    days = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    return {"timezone": zone, "weekly": {d: [["00:00", "24:00"]] for d in days}, "closed": dates}


def fired_by(database_url: str, moment: datetime) -> bool:
    """The wall clock is past ``moment`` and no timer due by then is still armed."""
    if datetime.now(UTC) <= moment:
        return False
    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    t = tables.timers.c
    with engine.connect() as connection:
        armed = connection.scalar(
            select(func.count()).where(t.state == TimerState.ARMED, t.due <= moment)
        )
    engine.dispose()
    return not armed


def decision_time(decision: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(decision["time"].replace("Z", "+00:00"))


def kind(decision: dict[str, Any]) -> str:
    """The decision's code or cause, else its type."""
    data = decision["data"]
    return str(data.get("code") or data.get("cause") or decision["type"])


def settled(database_url: str, last: bytes, log: DecisionLog) -> bool:
    """The pipeline has taken ``last`` (published last) in, applied everything and published
    every decision it recorded."""
    tenant, event_id, _ = best_effort_identity(last)
    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    i, o = tables.inbox.c, tables.outbox.c
    with engine.connect() as connection:
        took = connection.scalar(
            select(func.count()).where(i.tenant == tenant, i.event_id == event_id)
        )
        waiting = connection.scalar(select(func.count()).where(i.state == "new"))
        decided = connection.scalar(
            select(func.count()).where(o.exchange == DECISIONS_EXCHANGE, o.sent_at.is_not(None))
        )
        unsent = connection.scalar(select(func.count()).where(o.sent_at.is_(None)))
    engine.dispose()
    return bool(took) and not waiting and not unsent and len(log.decisions) >= (decided or 0)


def per_tenant(decisions: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for d in decisions:
        if d["type"] != "event.rejected":
            grouped[d["tenant"]].append(d)
    return dict(grouped)


def rejections(decisions: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return sorted(
        (d["id"], d["tenant"], json.dumps(d["data"], sort_keys=True))
        for d in decisions
        if d["type"] == "event.rejected"
    )
