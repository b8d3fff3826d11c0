"""Statistics on the real pipeline (issue 5): with several worker processes and the stats
worker, a run where every event is delivered more than once gives the same figures as a run
where each is delivered once, and both equal ``chatroute replay``'s."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from chatroute import bootstrap
from chatroute.settings import Settings
from chatroute.stats import Window, rows, stale_tenants
from chatroute.tools.replay import replay
from tests.builders import Events
from tests.conftest import fresh_pg_database
from tests.e2e.harness import Pipeline, Vhost, lines, wait_until
from tests.e2e.test_pipeline import inbox_states

pytestmark = pytest.mark.services

CONVERSATIONS = 60  # per tenant


def workload(tenant: str, commission: dict[str, Any]) -> list[dict[str, Any]]:
    """Everything goes to a first; a transfers every third to b (pending until b comes),
    b sends every sixth back (A -> B -> A); answers, snoozes, replies, sales, ratings, a
    re-rating and closes."""
    # Delivered twice, minutes apart, so dated an hour ahead, and the tenant trusts its
    # frontend's clock: statistics follow the events' own times in every delivery (only the
    # first event, applied before it sets clock_skew_s, is moved, and it decides nothing).
    shop = Events(tenant, now=datetime.now(UTC) + timedelta(hours=1))
    shop.event("tenant.updated", commission=commission, clock_skew_s=TRUSTED_CLOCK_S)
    shop.rule("all", "G")
    shop.respondent("a", ["G"], slots=1000)
    shop.respondent("b", ["G"], slots=1000, available=False)
    ids = [f"c{n:03d}" for n in range(CONVERSATIONS)]
    for cid in ids:
        shop.start(cid)
    for n, cid in enumerate(ids):
        if n % 2 == 0:
            shop.event("message.posted", conversation=cid, author="respondent", respondent="a")
        if n % 3 == 0:
            shop.event(
                "conversation.transferred", conversation=cid, respondent="a", to_respondent="b"
            )
    shop.event("respondent.status", respondent="b", status="available")
    for n, cid in enumerate(ids):
        holder = "b" if n % 3 == 0 else "a"
        if n % 6 == 0:
            shop.event(
                "conversation.transferred", conversation=cid, respondent="b", to_respondent="a"
            )
            holder = "a"
        elif n % 3 == 0 and n % 4 == 0:
            shop.event("message.posted", conversation=cid, author="respondent", respondent="b")
        if n % 5 == 0:
            shop.event("conversation.snoozed", conversation=cid, respondent=holder)
            shop.event("message.posted", conversation=cid, author="visitor")
        if n % 4 == 1:
            shop.event("conversation.sale", conversation=cid, amount=float(10 + n))
        if n % 2 == 1:
            shop.event("conversation.rated", conversation=cid, score=1 + n % 5)
        if n % 7 == 0:
            shop.event("conversation.rated", conversation=cid, score=5)
        if n % 3 != 2:
            shop.event("conversation.closed", conversation=cid)
    return shop.lines


TRUSTED_CLOCK_S = 2**31 - 1  # the largest setting: about 68 years


@pytest.fixture
def events() -> list[dict[str, Any]]:
    return workload("north", {"mode": "percent", "rate": 0.1}) + workload(
        "south", {"mode": "per_contact", "amount": 1.5}
    )


def all_rows(settings: Settings) -> dict[str, list[dict[str, Any]]]:
    rt = bootstrap.build(settings)
    return {by: rows(rt, by, Window()) for by in ("respondent", "group", "day")}


def pipeline_stats(
    database: str, vhost: Vhost, log_dir: Path, bodies: list[bytes], expected_events: int
) -> dict[str, list[dict[str, Any]]]:
    pipeline = Pipeline(database, vhost.url, log_dir, processes=3, threads=2)
    pipeline.start()
    try:
        pipeline.publish(bodies)
        wait_until(
            lambda: inbox_states(database).get("applied", 0) == expected_events,
            120,
            "every event applied",
        )
        rt = bootstrap.build(Settings(database_url=database))
        wait_until(lambda: stale_tenants(rt) == [], 60, "the stats worker to catch up")
    finally:
        pipeline.stop()
    return all_rows(Settings(database_url=database))


def test_every_event_delivered_twice_gives_the_same_stats_as_once(
    events: list[dict[str, Any]], pg_url: str, tmp_path: Path, vhost: Vhost
) -> None:
    oracle = Settings(database_url=f"sqlite:///{tmp_path}/oracle.db")
    replay(oracle, io.BytesIO(b"\n".join(lines(events)) + b"\n").readlines(), io.StringIO())
    expected = all_rows(oracle)
    assert sum(r["transfers_out"] for r in expected["respondent"]) > CONVERSATIONS // 2
    assert sum(r["satisfaction_count"] for r in expected["respondent"]) > CONVERSATIONS // 2

    once = pipeline_stats(pg_url, vhost, tmp_path, lines(events), len(events))
    assert once == expected

    # Each event twice in a row, then the whole stream once more after it was applied.
    bodies = [body for body in lines(events) for _ in (0, 1)] + lines(events)
    second = Vhost()
    try:
        with fresh_pg_database() as database:
            twice = pipeline_stats(database, second, tmp_path, bodies, len(events))
    finally:
        second.delete()
    assert twice == expected
