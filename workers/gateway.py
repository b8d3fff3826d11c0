"""The gateway: AMQP in (validate, record in the inbox, nudge, then ack) and the outbox relay.

``chat.gateway`` has a single active consumer: events are recorded in exactly the order they
reached ``chat.events``; other gateway processes stand by and take over on failure.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import pika
from pika.adapters.blocking_connection import BlockingChannel

from chatroute import amqp, cloudevents_amqp, logs, metrics, service
from chatroute.amqp import (
    DECISIONS_EXCHANGE,
    EVENT_CONTENT_TYPE,
    GATEWAY_QUEUE,
    connect,
    declare_topology,
)
from chatroute.bootstrap import Runtime
from chatroute.store import outbox
from chatroute.store.outbox import OutgoingMessage
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
            channel = connection.channel()
            declare_topology(channel)
            channel.basic_qos(prefetch_count=self.rt.settings.gateway_prefetch)
            log.info("gateway_consuming", queue=GATEWAY_QUEUE)
            while not stop.is_set():
                self._take_batch(channel)  # a 20 ms wait at most when idle
                _keep_nudges_alive()
        finally:
            if connection.is_open:
                with contextlib.suppress(*OUTAGES):
                    connection.close()

    def _take_batch(self, channel: BlockingChannel) -> None:
        """Up to ``batch_size`` messages, gathered for at most ``BATCH_WINDOW_S``: a steady
        stream must not wait for a full batch (at 500 events/s, 200 take 400 ms)."""
        batch: list[tuple[Any, Any, bytes]] = []
        limit = self.rt.settings.batch_size
        closes = time.monotonic() + BATCH_WINDOW_S
        for method, properties, body in channel.consume(GATEWAY_QUEUE, inactivity_timeout=0.02):
            if method is not None:
                batch.append((method, properties, body))
            if method is None or len(batch) >= limit or time.monotonic() >= closes:
                break
        if batch:
            self._hand_off(channel, batch)

    def _hand_off(self, channel: BlockingChannel, batch: list[tuple[Any, Any, bytes]]) -> None:
        messages = [cloudevents_amqp.incoming(*message) for message in batch]
        tenants = service.ingest(self.rt, messages)
        for tenant in sorted(tenants):
            self.nudge(tenant)
        # Only now is the hand-off durable (inbox committed, nudges confirmed).
        channel.basic_ack(batch[-1][0].delivery_tag, multiple=True)
        log.debug("gateway_batch", events=len(batch), tenants=len(tenants))


def _keep_nudges_alive() -> None:
    """The gateway nudges through dramatiq's connection of this thread, idle between events."""
    keep_alive("gateway")


class Publisher(Protocol):
    """What the relay publishes with: a batch at a time, and ``keep_alive`` called at least
    every ``amqp.KEEP_ALIVE_S`` while the relay waits."""

    def __call__(self, messages: list[OutgoingMessage]) -> None: ...

    def keep_alive(self) -> None: ...


class AmqpPublisher:
    """Publishes a batch of outbox messages in one AMQP transaction; returns once committed.

    RabbitMQ answers ``tx.commit`` once every message of the batch is routed and, being
    persistent, written to its durable queues: the guarantee of publisher confirms, for one
    round trip per batch instead of one per message.
    """

    def __init__(self, amqp_url: str) -> None:
        self.amqp_url = amqp_url
        self._connection: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None

    def _ensure_channel(self) -> BlockingChannel:
        if self._channel is None or not self._channel.is_open:
            self.close()  # a channel the broker closed may leave its connection open
            self._connection = connect(self.amqp_url)
            self._channel = self._connection.channel()
            declare_topology(self._channel)
            self._channel.tx_select()
        return self._channel

    def __call__(self, messages: list[OutgoingMessage]) -> None:
        try:
            self._publish(messages)
        except OUTAGES:
            # A half-done transaction must not be committed with the next batch: start afresh.
            self.close()
            raise
        metrics.published(messages)

    def keep_alive(self) -> None:
        """Send and answer heartbeats between batches, else RabbitMQ closes the connection
        once the outbox stayed empty for a heartbeat timeout, and the next batch waits for a
        reconnection. A connection the broker closed is logged and made anew by that batch."""
        if self._connection is None:
            return
        try:
            self._connection.process_data_events(time_limit=0)
        except OUTAGES as error:
            log.warning("amqp_connection_lost", role="relay", **outage(error))
            self.close()

    def _publish(self, messages: list[OutgoingMessage]) -> None:
        channel = self._ensure_channel()
        for message in messages:
            channel.basic_publish(
                exchange=message.exchange,
                routing_key=message.routing_key,
                body=message.body,
                properties=pika.BasicProperties(
                    content_type=EVENT_CONTENT_TYPE
                    if message.exchange == DECISIONS_EXCHANGE
                    else None,
                    delivery_mode=pika.DeliveryMode.Persistent,
                    message_id=message.decision_id,
                    headers=message.headers,
                ),
            )
        channel.tx_commit()

    def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            with contextlib.suppress(*OUTAGES):
                connection.close()


def relay(rt: Runtime, publish: Publisher, stop: threading.Event) -> None:
    """Publish the outbox in commit order while this process holds the relay lock."""
    while not stop.is_set():
        try:
            with outbox.leading(rt.engine) as connection:
                if connection is not None:
                    _relay_while_leader(rt, connection, publish, stop)
                else:
                    amqp.wait(stop, 1.0, publish.keep_alive)
        except OUTAGES as error:
            log.warning("relay_reconnecting", **outage(error))
            amqp.wait(stop, 1.0, publish.keep_alive)
        except Exception:
            log.exception("relay_failed")
            amqp.wait(stop, 1.0, publish.keep_alive)


def _relay_while_leader(
    rt: Runtime,
    connection: Any,
    publish: Publisher,
    stop: threading.Event,
) -> None:
    log.info("relay_leading")
    wait = outbox.waiter(connection, rt.settings.relay_interval_s)
    while not stop.is_set():
        if outbox.relay_once(connection, publish, rt.clock.now()) == 0:
            # A notification ends the wait at once; a quiet outbox ends it every 0.5 s at
            # most (outbox.IDLE_LOOK_S), often enough for the publisher's heartbeats.
            publish.keep_alive()
            wait()
