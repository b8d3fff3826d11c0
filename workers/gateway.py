"""The gateway: AMQP in (validate, record in the inbox, nudge, then ack). The gateway process
also runs the outbox relay (``workers.relay``) in a thread.

``chat.gateway`` has a single active consumer: events are recorded in exactly the order they
reached ``chat.events``; other gateway processes stand by and take over on failure.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

from pika.adapters.blocking_connection import BlockingChannel

from chatroute import amqp, cloudevents_amqp, intake, logs
from chatroute.amqp import (
    GATEWAY_QUEUE,
    connect,
    declare_topology,
)
from chatroute.bootstrap import Runtime
from workers.broker import OUTAGES, keep_alive, outage

log = logs.get("chatroute.gateway")

# How long a batch may gather messages: the latency a batch adds, at most.
BATCH_WINDOW_S = 0.005


class Gateway:
    """Consumes ``chat.gateway`` in batches: one transaction and one ack per batch."""

    def __init__(self, rt: Runtime, amqp_url: str, nudge: Callable[[str], object]) -> None:
        self.rt = rt
        self.amqp_url = amqp_url
        self.nudge = nudge

    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop``. An outage closes the connection, so the batch in hand (not
        acknowledged) is delivered again, to this gateway or another; the inbox drops what a
        committed hand-off already recorded."""
        while not stop.is_set():
            try:
                self._consume(stop)
            except OUTAGES as error:
                log.warning("gateway_reconnecting", **outage(error))
                amqp.wait(stop, 1.0, _keep_nudges_alive)

    def _consume(self, stop: threading.Event) -> None:
        connection = connect(self.amqp_url)
        try:
            channel = declare_topology(connection, self.rt.settings.queue_type)
            channel.basic_qos(prefetch_count=self.rt.settings.gateway_prefetch)
            log.info("gateway_consuming", queue=GATEWAY_QUEUE)
            while not stop.is_set():
                self._take_batch(channel)  # a BATCH_WINDOW_S wait at most when idle
                _keep_nudges_alive()
        finally:
            if connection.is_open:
                with contextlib.suppress(*OUTAGES):
                    connection.close()

    def _take_batch(self, channel: BlockingChannel) -> None:
        """Up to ``batch_size`` messages, gathered for at most ``BATCH_WINDOW_S``: a steady
        stream must not wait for a full batch (at 500 events/s, 200 take 400 ms). The wait for
        a next message is the window too: a lone event, at a low rate, waits no longer."""
        batch: list[tuple[Any, Any, bytes]] = []
        limit = self.rt.settings.batch_size
        closes = time.monotonic() + BATCH_WINDOW_S
        messages = channel.consume(GATEWAY_QUEUE, inactivity_timeout=BATCH_WINDOW_S)
        for method, properties, body in messages:
            if method is not None:
                batch.append((method, properties, body))
            if method is None or len(batch) >= limit or time.monotonic() >= closes:
                break
        if batch:
            self._hand_off(channel, batch)

    def _hand_off(self, channel: BlockingChannel, batch: list[tuple[Any, Any, bytes]]) -> None:
        messages = [cloudevents_amqp.incoming(*message) for message in batch]
        tenants = intake.ingest(self.rt, messages)
        for tenant in sorted(tenants):
            self.nudge(tenant)
        # Only now is the hand-off durable (inbox committed, nudges confirmed).
        channel.basic_ack(batch[-1][0].delivery_tag, multiple=True)
        log.debug("gateway_batch", events=len(batch), tenants=len(tenants))


def _keep_nudges_alive() -> None:
    """The gateway nudges through dramatiq's connection of this thread, idle between events."""
    keep_alive("gateway")
