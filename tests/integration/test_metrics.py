"""Prometheus metrics: decisions and rejections counted once the broker committed them, and
state gauges (queues, holds, timers, backlogs) read from the database at scrape time."""

from __future__ import annotations

import io
import json
import socket
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from chatroute import bootstrap, metrics
from chatroute.amqp import DECISIONS_EXCHANGE
from chatroute.clock import VirtualClock
from chatroute.settings import Settings
from chatroute.store.outbox import OutgoingMessage
from chatroute.tools.replay import replay
from tests.builders import Events, jsonl
from tests.integration.test_health import NOW, three_tenants_with_statistics
from tests.integration.test_queues import AT, two_tenants


def decision(kind: str, data: dict[str, object]) -> OutgoingMessage:
    body = json.dumps({"type": kind, "data": data}).encode()
    return OutgoingMessage(1, "d", DECISIONS_EXCHANGE, f"shop-1.{kind}", body, None)


def test_reasons_lose_their_particulars() -> None:
    assert metrics.reason_kind("unknown conversation 'c9'") == "unknown conversation"
    assert metrics.reason_kind("data.score: Input should be less than 6") == "data.score"
    assert metrics.reason_kind("event larger than 64 KiB (70074 bytes)") == "event larger than KiB"
    assert metrics.reason_kind("set aside: 3 tries ended the worker process") == "set aside"


@pytest.mark.parametrize("hostile", ["a:b", "a'b", 'a"b', "a'b\"c:d", "x.y: z", "(", "7"])
def test_ids_from_the_body_never_become_labels(hostile: str) -> None:
    # Found by the fuzz: "unknown conversation \"a'b\"" kept part of the id, so a frontend
    # could make a new time series with each odd id
    assert metrics.reason_kind(f"unknown conversation {hostile!r}") == "unknown conversation"
    holds = f"respondent {hostile!r} does not hold conversation {hostile!r}"
    assert metrics.reason_kind(holds) == "respondent does not hold conversation"
    assert metrics.reason_kind(f"data.attributes.{hostile}: Input") == "data.attributes"


def test_published_decisions_are_counted_by_type_and_rejections_by_reason() -> None:
    def value(name: str, labels: dict[str, str]) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = value("chatroute_decisions_published_total", {"type": "conversation.assigned"})
    rejected = value("chatroute_events_rejected_total", {"reason": "unknown respondent"})
    metrics.published(
        [
            decision("conversation.assigned", {"conversation": "c1"}),
            decision("event.rejected", {"reason": "unknown respondent 'r9'"}),
            OutgoingMessage(2, "copy:d", "", "chat.events.rejected", b"garbage", None),
        ]
    )
    assert (
        value("chatroute_decisions_published_total", {"type": "conversation.assigned"})
        == before + 1
    )
    assert (
        value("chatroute_events_rejected_total", {"reason": "unknown respondent"}) == rejected + 1
    )


def queued_shop(tmp_path: Path) -> bootstrap.Runtime:
    shop = Events("shop-1")
    shop.rule("all", "G")
    shop.respondent("a", ["G"], slots=1)
    for n in range(4):
        shop.start(f"c{n}")  # c0 -> a, three queued
    shop.event(
        "conversation.snoozed", conversation="c0", respondent="a", until="2030-01-01T00:00:00Z"
    )
    settings = Settings(database_url=f"sqlite:///{tmp_path}/m.db")
    replay(settings, io.BytesIO(jsonl(shop.lines)).readlines(), io.StringIO())
    return bootstrap.build(settings)


def test_state_gauges_come_from_the_database(tmp_path: Path) -> None:
    rt = queued_shop(tmp_path)
    registry = CollectorRegistry()
    registry.register(metrics.EngineCollector(rt))
    # the snooze freed a's slot: c1 went to a, c2 and c3 wait; c0 sleeps until 2030
    assert (
        registry.get_sample_value("chatroute_queue_length", {"tenant": "shop-1", "group": "G"}) == 2
    )
    assert registry.get_sample_value("chatroute_timers_pending") == 1
    assert registry.get_sample_value("chatroute_outbox_backlog") == 0
    assert registry.get_sample_value("chatroute_timer_lag_seconds") == 0
    assert registry.get_sample_value("chatroute_stats_lag_seconds") == 0  # replay folded


def test_the_endpoint_serves_them(tmp_path: Path) -> None:
    rt = queued_shop(tmp_path)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    metrics.serve(rt, port)
    page = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    assert 'chatroute_queue_length{group="G",tenant="shop-1"} 2.0' in page
    assert "chatroute_decisions_published_total" in page


def test_the_stats_lag_is_the_oldest_change_not_counted_across_tenants(db_url: str) -> None:
    # Given three tenants with statistics, shop-2 changed 90 s ago and not counted since
    three_tenants_with_statistics(db_url, NOW)
    rt = bootstrap.build(Settings(database_url=db_url), VirtualClock(NOW))
    registry = CollectorRegistry()
    registry.register(metrics.EngineCollector(rt))
    # When Prometheus scrapes
    page = generate_latest(registry).decode()
    # Then the stats lag is shop-2's, and nothing else is late
    assert "chatroute_stats_lag_seconds 90.0" in page
    assert "chatroute_oldest_unapplied_seconds 0.0" in page
    assert "chatroute_outbox_backlog 0.0" in page


def group_gauges(rt: bootstrap.Runtime) -> dict[tuple[str, str, str], float]:
    registry = CollectorRegistry()
    registry.register(metrics.EngineCollector(rt))
    return {
        (sample.name, sample.labels.get("tenant", ""), sample.labels.get("group", "")): sample.value
        for family in registry.collect()
        for sample in family.samples
        if sample.name.startswith(("chatroute_group_", "chatroute_queue_length"))
    }


def test_group_gauges_are_chatroute_queues_figures_for_every_tenant(db_url: str) -> None:
    # Given two tenants on PostgreSQL (shop-1: G full, two waiting, H closed, X a rule's)
    settings = Settings(database_url=db_url)
    replay(settings, io.BytesIO(jsonl(two_tenants())).readlines(), io.StringIO())
    # When Prometheus scrapes an hour after the start
    found = group_gauges(bootstrap.build(settings, VirtualClock(AT)))
    # Then each group of each tenant has its figures
    assert found[("chatroute_queue_length", "shop-1", "G")] == 2
    assert found[("chatroute_group_longest_wait_seconds", "shop-1", "G")] == 2691
    assert found[("chatroute_group_available", "shop-1", "G")] == 1
    assert found[("chatroute_group_free_slots", "shop-1", "G")] == 0
    assert found[("chatroute_group_open", "shop-1", "H")] == 0
    assert found[("chatroute_group_open", "shop-1", "X")] == 1
    assert found[("chatroute_group_free_slots", "bank-7", "G")] == 2  # z: 3 slots, k1 on one
    assert found[("chatroute_group_longest_wait_seconds", "bank-7", "G")] == 0  # none waits
    assert found[("chatroute_group_series_dropped", "", "")] == 0


def test_group_series_are_bounded_the_longest_queues_first(db_url: str) -> None:
    # Given four groups in all, and room for two in the gauges
    settings = Settings(database_url=db_url)
    replay(settings, io.BytesIO(jsonl(two_tenants())).readlines(), io.StringIO())
    rt = bootstrap.build(settings.with_(metrics_groups=2), VirtualClock(AT))
    # When Prometheus scrapes
    found = group_gauges(rt)
    # Then shop-1's G (two waiting) is there, with one other, and two groups were left out
    groups = {(tenant, group) for name, tenant, group in found if name == "chatroute_group_open"}
    assert len(groups) == 2 and ("shop-1", "G") in groups
    assert found[("chatroute_group_series_dropped", "", "")] == 2
