"""The outbox relay: publishes decisions in commit order, one relay at a time (the store's
relay lock), woken by PostgreSQL notifications; the loop, the lock's use and the publisher.
It runs as a thread of the gateway process."""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Protocol

import pika
from pika.adapters.blocking_connection import BlockingChannel

from chatroute import amqp, logs, metrics
from chatroute.amqp import DECISIONS_EXCHANGE, EVENT_CONTENT_TYPE, connect, declare_topology
from chatroute.bootstrap import Runtime
from chatroute.store import outbox
from chatroute.store.outbox import OutgoingMessage
from workers.broker import OUTAGES, outage

log = logs.get("chatroute.relay")


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

    def __init__(self, amqp_url: str, queue_type: str) -> None:
        self.amqp_url = amqp_url
        self.queue_type = queue_type
        self._connection: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None

    def _ensure_channel(self) -> BlockingChannel:
        if self._channel is None or not self._channel.is_open:
            self.close()  # a channel the broker closed may leave its connection open
            self._connection = connect(self.amqp_url)
            self._channel = declare_topology(self._connection, self.queue_type)
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
