"""Durable timers on the real pipeline: they fire once each, also across worker crashes."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.builders import Events, rfc3339
from tests.e2e.harness import DecisionLog, Pipeline, lines, rabbitmqctl, wait_until

pytestmark = pytest.mark.services

HOLDS = 40
REASSIGN_AFTER_S = 4


def test_reassignment_timers_fire_once_each_while_workers_are_killed(
    pg_url: str,
    vhost,
    tmp_path: Path,
) -> None:
    # Given holds for an unavailable respondent, due for reassignment in a few seconds
    pipeline = Pipeline(pg_url, vhost.url, tmp_path, processes=2, threads=2)
    log = DecisionLog(vhost.url)
    pipeline.start()
    shop = Events("shop-1", now=datetime.now(UTC), step=timedelta(milliseconds=1))
    shop.event("tenant.updated", reassign_after_s=REASSIGN_AFTER_S)
    shop.rule("all", "G")
    shop.respondent("a", ["G"], slots=HOLDS)
    shop.respondent("b", ["G"], slots=HOLDS, available=False)
    for n in range(HOLDS):
        shop.start(f"c{n:02d}")
        shop.event(
            "conversation.transferred",
            conversation=f"c{n:02d}",
            respondent="a",
            to_respondent="b",
            comment="billing",
        )
    try:
        pipeline.publish(lines(shop.lines))
        wait_until(lambda: pending(log) == HOLDS, 60, "pending holds")
        # When every worker process is killed before the timers are due, and comes back late
        wait_until(lambda: len(pipeline.worker_pids()) >= 2, 30, "worker processes")
        for pid in pipeline.worker_pids():
            os.kill(pid, signal.SIGKILL)
        time.sleep(REASSIGN_AFTER_S + 1)
        wait_until(lambda: reassigned(log) >= HOLDS, 60, "reassignments")
        time.sleep(3)  # a second firing would show up by now
    finally:
        pipeline.stop()
        log.stop()
    # Then each hold was reassigned exactly once, to another member of the group
    causes = Counter(
        d["data"]["conversation"] for d in log.decisions if d["data"].get("cause") == "reassign"
    )
    assert len(causes) == HOLDS and set(causes.values()) == {1}
    assert max(Counter(d["id"] for d in log.decisions).values()) == 1
    assert {
        d["data"]["respondent"] for d in log.decisions if d["data"].get("cause") == "reassign"
    } == {"a"}


def pending(log: DecisionLog) -> int:
    return sum(1 for d in log.decisions if d["type"] == "conversation.pending")


def reassigned(log: DecisionLog) -> int:
    return sum(1 for d in log.decisions if d["data"].get("cause") == "reassign")


@pytest.fixture
def short_consumer_timeout() -> Iterator[None]:
    """RabbitMQ closes a channel holding an unacked message longer than this (default 30 min)."""
    rabbitmqctl("eval", "application:set_env(rabbit, consumer_timeout, 15000).")
    yield
    rabbitmqctl("eval", "application:set_env(rabbit, consumer_timeout, 1800000).")


def test_timers_of_several_hops_fire_once_with_a_short_consumer_timeout_and_workers_down(
    pg_url: str,
    vhost,
    tmp_path: Path,
    short_consumer_timeout: None,
) -> None:
    # Given a's conversations snoozed for 20 s while a goes away: each wakes (hop 1), waits
    # pending for a (hop 2) and is reassigned to b 15 s later (hop 3)
    pipeline = Pipeline(pg_url, vhost.url, tmp_path, processes=2, threads=2)
    log = DecisionLog(vhost.url)
    pipeline.start()
    shop = Events("shop-1", now=datetime.now(UTC), step=timedelta(milliseconds=1))
    shop.event("tenant.updated", reassign_after_s=15)
    shop.rule("all", "G")
    shop.respondent("a", ["G"], slots=10)
    shop.respondent("b", ["G"], slots=10, available=False)
    until = rfc3339(shop.now + timedelta(seconds=20))
    for n in range(10):
        shop.start(f"c{n}")
        shop.event("conversation.snoozed", conversation=f"c{n}", respondent="a", until=until)
    shop.event("respondent.status", respondent="b", status="available")
    shop.event("respondent.status", respondent="a", status="unavailable")
    try:
        pipeline.publish(lines(shop.lines))
        wait_until(lambda: count(log, "conversation.snoozed") == 10, 30, "snoozes")
        # When every worker is down past the wake time (timers overdue), then comes back
        pipeline.kill_workers()
        time.sleep(25)
        pipeline.start_workers()
        wait_until(lambda: reassigned(log) >= 10, 90, "reassignments")
        time.sleep(20)  # past consumer_timeout: a held message would have killed a channel
    finally:
        pipeline.stop()
        log.stop()
    # Then every hop fired exactly once per conversation
    for kind in ("conversation.woken", "conversation.pending"):
        assert count(log, kind) == 10, kind
    assert reassigned(log) == 10
    assert max(Counter(d["id"] for d in log.decisions).values()) == 1


def count(log: DecisionLog, kind: str) -> int:
    return sum(1 for d in log.decisions if d["type"] == kind)
