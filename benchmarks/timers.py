"""Timer lateness on the real pipeline, with many timers pending.

    python -m benchmarks.timers --pending 100000 --due 1000 --tenants 10

Arms ``--pending`` far-future timers (rows, as the engine stores them), then, through the
real pipeline, ``--due`` snoozes whose wake-up falls in the same second, spread over
``--tenants``. Lateness is the time from that second to each ``conversation.woken`` decision
reaching ``chat.decisions``. Prints p50/p99/max, and what a pending timer costs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, insert, text

from benchmarks.pipeline import fresh_database, with_redis
from chatroute.store import tables
from tests.builders import Events, rfc3339
from tests.e2e.harness import DecisionLog, Pipeline, Vhost, lines, wait_until


def arm_far_timers(database: str, count: int) -> None:
    """``count`` armed timers a year away, for a tenant of their own."""
    engine = create_engine(database.replace("postgresql://", "postgresql+psycopg://"))
    due = datetime.now(UTC) + timedelta(days=365)
    rows = [
        {
            "tenant": "idle",
            "timer_id": f"wake:c{n}:{n}",
            "kind": "wake",
            "conversation_id": f"c{n}",
            "due": due + timedelta(seconds=n),
            "respondent": "r",
            "state": "armed",
        }
        for n in range(count)
    ]
    with engine.begin() as connection:
        for start in range(0, count, 10_000):
            connection.execute(insert(tables.timers), rows[start : start + 10_000])
    engine.dispose()


def snoozes(
    tenants: int, due: int, wake_at: datetime
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Each tenant's configuration, then its conversations, each snoozed until ``wake_at``."""
    setup: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for t in range(tenants):
        shop = Events(f"timers-{t}", now=datetime.now(UTC), step=timedelta(milliseconds=1))
        shop.rule("all", "G")
        shop.respondent("a", ["G"], slots=due)
        setup += shop.lines
        shop.lines = []
        for n in range(due // tenants):
            shop.start(f"c{n}")
            shop.event(
                "conversation.snoozed", conversation=f"c{n}", respondent="a", until=rfc3339(wake_at)
            )
        events += shop.lines
    return setup, events


def timer_cost(database: str) -> dict[str, float]:
    engine = create_engine(database.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as connection:
        size = connection.scalar(text("SELECT pg_total_relation_size('timers')"))
        rows = connection.scalar(text("SELECT count(*) FROM timers"))
    engine.dispose()
    return {"timer_rows": float(rows), "bytes_per_timer": size / max(rows, 1)}


def measure(pending: int, due: int, tenants: int, lead_s: float) -> dict[str, float]:
    vhost, database = Vhost(), fresh_database()
    log_dir = Path(tempfile.mkdtemp(prefix="chatroute-timers-"))
    pipeline = with_redis(Pipeline(database, vhost.url, log_dir, processes=2, threads=2))
    decisions = DecisionLog(vhost.url)
    pipeline.start()
    try:
        arm_far_timers(database, pending)
        wake_at = (datetime.now(UTC) + timedelta(seconds=lead_s)).replace(microsecond=0)
        setup, events = snoozes(tenants, due, wake_at)
        pipeline.publish(lines(setup))
        pipeline.publish(lines(events), publishers=2)
        snoozed = lambda: sum(d["type"] == "conversation.snoozed" for d in decisions.decisions)  # noqa: E731
        wait_until(lambda: snoozed() >= due, lead_s, "snoozes applied before the wake-up")
        woke = lambda: sum(d["type"] == "conversation.woken" for d in decisions.decisions)  # noqa: E731
        wait_until(lambda: woke() >= due, lead_s + 120, "every snooze woken")
        woken = {
            d["id"]: arrived - wake_at.timestamp()
            for d, arrived in zip(decisions.decisions, decisions.arrived, strict=False)
            if d["type"] == "conversation.woken"
        }
        cost = timer_cost(database)
    finally:
        pipeline.stop()
        decisions.stop()
        vhost.delete()
    late = sorted(woken.values())
    return {
        "pending": float(pending),
        "due": float(due),
        "woken": float(len(late)),
        "p50_ms": 1000 * statistics.median(late),
        "p99_ms": 1000 * late[int(0.99 * (len(late) - 1))],
        "max_ms": 1000 * late[-1],
        **cost,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pending", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=1000)
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--lead-s", type=float, default=60.0)
    args = parser.parse_args()
    figures = measure(args.pending, args.due, args.tenants, args.lead_s)
    print("timers: " + " ".join(f"{k}={v:.0f}" for k, v in figures.items()), flush=True)


if __name__ == "__main__":
    main()
