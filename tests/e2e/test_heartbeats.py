"""Idle AMQP connections stay open: every process answers RabbitMQ's heartbeats while it
waits for something else (PostgreSQL notifications, a sweep's interval, the next batch)."""

from __future__ import annotations

import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from structlog.testing import capture_logs

from chatroute import amqp, logs
from chatroute.settings import QUORUM
from tests.builders import Events
from tests.e2e.harness import DecisionLog, Pipeline, lines, rabbitmqctl, wait_until
from workers import broker, relay

pytestmark = pytest.mark.services

HEARTBEAT_S = 2
IDLE_S = 5 * HEARTBEAT_S  # RabbitMQ closes a silent connection after two or three timeouts
STATS_INTERVAL_S = 2  # the sweeper's stats nudges: its connection exists after one
LATENCY_S = 0.5  # a decision takes tens of milliseconds; a reconnection takes a second


def connections(vhost: str, column: str = "timeout") -> dict[str, str]:
    """The vhost's AMQP connections by name (client and server ports), with ``column`` of
    each (``timeout``: the heartbeat timeout it negotiated)."""
    out = subprocess.run(
        ["rabbitmqctl", "-q", "list_connections", "--no-table-headers", "vhost", "name", column],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    rows = (line.split("\t") for line in out.splitlines() if line.strip())
    return {name: value for host, name, value in rows if host == vhost}


def complaints(log_dir: Path) -> list[str]:
    """Log lines of the engine's processes (and dramatiq's) about a lost connection."""
    words = ("reconnecting", "connection_lost", "connection error")
    return [
        f"{log.name}: {line}"
        for log in sorted(log_dir.glob("*.log"))
        for line in log.read_text(errors="replace").splitlines()
        if any(word in line for word in words)
    ]


def test_idle_connections_survive_heartbeat_timeouts(pg_url: str, vhost, tmp_path: Path) -> None:
    # Given the pipeline on connections with a 2 s heartbeat timeout, having decided once
    log = DecisionLog(vhost.url)
    theirs = set(connections(vhost.name))  # the decision log's own
    pipeline = Pipeline(pg_url, f"{vhost.url}?heartbeat={HEARTBEAT_S}", tmp_path, 1, 1)
    shop = Events("shop-1", now=datetime.now(UTC), step=timedelta(milliseconds=1))
    shop.rule("all", "G")
    shop.respondent("a", ["G"], slots=2)
    shop.start("c1")
    pipeline.start()
    try:
        pipeline.publish(lines(shop.lines))
        wait_until(lambda: log.has("conversation.assigned"), 60, "the first decision")
        decided = time.monotonic()
        # Seen at once, those the workers opened when they started, not idle for long yet;
        # and once the sweeper had the decision counted (its nudges' connection)
        before = connections(vhost.name)
        time.sleep(max(0.0, decided + STATS_INTERVAL_S + 0.5 - time.monotonic()))
        before = {k: v for k, v in (before | connections(vhost.name)).items() if k not in theirs}
        # When nothing happens for several heartbeat timeouts, then an event comes
        time.sleep(max(0.0, decided + STATS_INTERVAL_S + IDLE_S - time.monotonic()))
        shop.start("c2")
        published = time.time()
        pipeline.publish(lines(shop.lines[-1:]))
        wait_until(lambda: len(log.decisions) >= 2, 30, "the second decision")
        latency = log.arrived[1] - published
        after = {k: v for k, v in connections(vhost.name).items() if k not in theirs}
    finally:
        pipeline.stop()
        log.stop()
    # Then every engine connection used the client's heartbeat and is still the same one,
    # nobody logged a lost connection, and the decision came as fast as usual
    assert len(before) >= 5, before  # gateway, relay, their nudges, worker, sweeper
    assert set(before.values()) == {str(HEARTBEAT_S)}, before
    assert set(before) - set(after) == set(), "RabbitMQ closed these connections"
    assert complaints(tmp_path) == []
    assert latency < LATENCY_S


def test_a_connection_the_broker_closes_is_logged_with_its_role(
    vhost, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the relay's publisher and a gateway's nudging connection (dramatiq's), both idle
    publisher = relay.AmqpPublisher(vhost.url, QUORUM)
    publisher([])
    nudging = RabbitmqBroker(url=vhost.url)
    monkeypatch.setattr(broker, "_installed", nudging)
    assert nudging.connection.is_open
    # Loggers no earlier test used (and structlog cached): capture_logs sees what they log
    monkeypatch.setattr(broker, "log", logs.get("chatroute.broker"))
    monkeypatch.setattr(relay, "log", logs.get("chatroute.relay"))
    # When RabbitMQ closes them, as it does those that missed their heartbeats
    for pid in connections(vhost.name, "pid").values():
        rabbitmqctl("close_connection", pid, "missed heartbeats, say")

    def keep_alive() -> None:
        publisher.keep_alive()
        broker.keep_alive("gateway")

    with capture_logs() as logged:
        amqp.wait(threading.Event(), 1.0, keep_alive)
    # Then each is logged once, naming its role, and the next batch goes out on a new one
    lost = [(e["event"], e["role"], e["error"]) for e in logged if e["log_level"] == "warning"]
    assert lost == [
        ("amqp_connection_lost", "relay", "ConnectionClosedByBroker"),
        ("amqp_connection_lost", "gateway", "ConnectionClosedByBroker"),
    ]
    publisher([])
    publisher.close()
    nudging.close()
