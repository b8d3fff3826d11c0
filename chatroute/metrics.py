"""Prometheus metrics of the engine, served by the gateway and the sweeper.

Counters are counted where the thing happened for good: decisions once RabbitMQ committed
them (so a rolled-back or retried transaction counts nothing). Gauges of state (queues,
holds, timers, backlogs) are read from the database at scrape time, from indexed queries,
so any one process reports the whole engine.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import datetime

from prometheus_client import Counter, start_http_server
from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from chatroute import queues
from chatroute.amqp import DECISIONS_EXCHANGE
from chatroute.bootstrap import Runtime
from chatroute.errors import reason_kind
from chatroute.store import reads
from chatroute.store.outbox import OutgoingMessage

DECISIONS = Counter(
    "chatroute_decisions_published_total", "Decisions RabbitMQ committed, by type", ["type"]
)
REJECTED = Counter(
    "chatroute_events_rejected_total",
    "Events rejected (event.rejected published), by kind of reason",
    ["reason"],
)


def published(messages: Sequence[OutgoingMessage]) -> None:
    """Count a batch the broker committed."""
    for message in messages:
        if message.exchange != DECISIONS_EXCHANGE:
            continue
        kind = message.routing_key.split(".", 1)[1]
        DECISIONS.labels(kind).inc()
        if kind == "event.rejected":
            REJECTED.labels(reason_kind(json.loads(message.body)["data"]["reason"])).inc()


class EngineCollector(Collector):
    """State gauges, read at each scrape."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.groups = rt.settings.metrics_groups

    def collect(self) -> Iterator[Metric]:
        now = self.rt.clock.now()
        state = reads.gauges(self.rt.engine, now)
        holds, adjusted, late = state.holds, state.adjusted, state.late
        yield from group_gauges(reads.group_states(self.rt.engine), now, self.groups)
        held = GaugeMetricFamily("chatroute_pending_holds", "Pending holds", labels=["tenant"])
        for tenant, n in holds:
            held.add_metric([tenant], n)
        yield held
        moved = CounterMetricFamily(
            "chatroute_events_time_adjusted",
            "Events applied at another time than their own (a sender's clock off by more than "
            "clock_skew_s, or out of order)",
            labels=["tenant"],
        )
        for tenant, n in adjusted:
            moved.add_metric([tenant], n)
        yield moved
        yield GaugeMetricFamily("chatroute_timers_pending", "Armed timers", value=state.armed)
        yield GaugeMetricFamily(
            "chatroute_timer_lag_seconds", "How late the most overdue timer is",
            value=late["timer_lag_s"],
        )  # fmt: skip
        yield GaugeMetricFamily(
            "chatroute_outbox_backlog", "Decisions not sent yet", value=late["outbox_backlog"]
        )
        yield GaugeMetricFamily(
            "chatroute_oldest_unapplied_seconds", "Age of the oldest event not applied",
            value=late["oldest_unapplied_s"],
        )  # fmt: skip
        yield GaugeMetricFamily(
            "chatroute_stats_lag_seconds", "Age of the oldest change not counted in statistics",
            value=late["stats_lag_s"],
        )  # fmt: skip


def serve(rt: Runtime, port: int) -> None:
    """Expose the counters and the state gauges on ``port`` (``/metrics``)."""
    REGISTRY.register(EngineCollector(rt))
    start_http_server(port)


GROUP_GAUGES = (
    ("chatroute_queue_length", "Conversations queued in the group", "waiting"),
    ("chatroute_group_open", "1 when the group is within its hours, else 0", "open"),
    (
        "chatroute_group_longest_wait_seconds",
        "How long the group's longest waiting conversation has waited (0: none waits)",
        "longest_wait_s",
    ),
    ("chatroute_group_available", "Available members of the group, full or not", "available"),
    ("chatroute_group_free_slots", "Free slots of the group's available members", "free_slots"),
)


def group_gauges(states: list[reads.GroupState], now: datetime, most: int) -> Iterator[Metric]:
    """``chatroute queues``' figures of every tenant's groups, the ``most`` longest queues
    (by conversations waiting, then by wait) with series of their own; how many groups were
    left out is ``chatroute_group_series_dropped``."""
    ranked = sorted(states, key=lambda g: (-g.waiting, g.first_joined or now, g.tenant, g.group))
    rows = [(g.tenant, queues.row(g, now)) for g in ranked[:most]]
    for name, help_text, key in GROUP_GAUGES:
        family = GaugeMetricFamily(name, help_text, labels=["tenant", "group"])
        for tenant, row in rows:
            family.add_metric([tenant, row["group"]], float(row[key] or 0))
        yield family
    yield GaugeMetricFamily(
        "chatroute_group_series_dropped",
        "Groups left out of the group gauges (CHATROUTE_METRICS_GROUPS)",
        value=max(0, len(states) - most),
    )
