"""Prometheus metrics of the engine, served by the gateway and the sweeper.

Counters are counted where the thing happened for good: decisions once RabbitMQ committed
them (so a rolled-back or retried transaction counts nothing). Gauges of state (queues,
holds, timers, backlogs) are read from the database at scrape time, from indexed queries,
so any one process reports the whole engine.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence

from prometheus_client import Counter, start_http_server
from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

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

    def collect(self) -> Iterator[Metric]:
        state = reads.gauges(self.rt.engine, self.rt.clock.now())
        queues, holds, adjusted, late = state.queues, state.holds, state.adjusted, state.late
        queue = GaugeMetricFamily(
            "chatroute_queue_length", "Conversations queued", labels=["tenant", "group"]
        )
        for tenant, group, n in queues:
            queue.add_metric([tenant, group], n)
        yield queue
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
