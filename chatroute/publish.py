"""``chatroute publish``: send a JSON-lines file of events to ``chat.events``, as a frontend
would (routing key = type, persistent, publisher confirms).

An event whose confirm never came (the connection or the broker went away) is published again
once the broker answers: it may then arrive twice, which the engine treats as one event (same
tenant and id). So a broker restart loses nothing and doubles nothing.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable
from pathlib import Path

import pika
from pika.adapters.blocking_connection import BlockingChannel

from chatroute import logs
from chatroute.amqp import (
    EVENT_CONTENT_TYPE,
    EVENTS_EXCHANGE,
    channel_with_topology,
    connect,
    node_urls,
)
from chatroute.settings import QUORUM

log = logs.get("chatroute.publish")


def routing_key(body: bytes) -> str:
    """The event's ``type``; a body without one is still published (the gateway rejects it)."""
    try:
        kind = json.loads(body).get("type")
    except (ValueError, AttributeError):
        return "invalid"
    return kind if isinstance(kind, str) and kind else "invalid"


class Publisher:
    """One connection with publisher confirms; ``publish`` returns once the broker confirmed.

    On a lost connection it reconnects every ``retry_s`` and publishes the event again, and
    gives up (re-raising) when the broker stayed away for ``give_up_after_s``.
    """

    def __init__(
        self,
        amqp_url: str,
        retry_s: float = 0.5,
        give_up_after_s: float = 60.0,
        queue_type: str = QUORUM,
    ) -> None:
        self.amqp_url = amqp_url
        self.queue_type = queue_type  # of the queues it declares when the topology is missing
        self.retry_s = retry_s
        self.give_up_after_s = give_up_after_s
        self._connection: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None
        self.retries = 0  # publishes that had to be made again
        # user_id names the publisher (RabbitMQ checks it is the connection's user): a
        # deployment that maps publishers to tenants (store.publishers) takes its events.
        # (Not known here when the broker names the user from a client certificate.)
        first = node_urls(amqp_url)[0]  # every node of a cluster knows the same users
        user = getattr(pika.URLParameters(first).credentials, "username", None)
        self.properties = pika.BasicProperties(
            content_type=EVENT_CONTENT_TYPE,
            delivery_mode=pika.DeliveryMode.Persistent,
            user_id=user,
        )

    def publish(self, body: bytes) -> None:
        failing_since: float | None = None
        while True:
            try:
                key = routing_key(body)
                self._ready().basic_publish(EVENTS_EXCHANGE, key, body, self.properties)
                return
            except (pika.exceptions.AMQPError, OSError) as error:
                self._drop()
                failing_since = failing_since or time.monotonic()
                if time.monotonic() - failing_since > self.give_up_after_s:
                    raise
                self.retries += 1
                log.warning("publish_retrying", error=type(error).__name__)
                time.sleep(self.retry_s)

    def _ready(self) -> BlockingChannel:
        if self._channel is None or not self._channel.is_open:
            self._drop()
            self._connection = connect(self.amqp_url)
            self._channel = channel_with_topology(self._connection, self.queue_type)
            self._channel.confirm_delivery()
        return self._channel

    def _drop(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            with contextlib.suppress(pika.exceptions.AMQPError, OSError):
                connection.close()  # it was going away anyway

    def close(self) -> None:
        self._drop()


def publish_bodies(bodies: Iterable[bytes], amqp_url: str, queue_type: str = QUORUM) -> int:
    publisher = Publisher(amqp_url, queue_type=queue_type)
    try:
        count = 0
        for body in bodies:
            publisher.publish(body)
            count += 1
        return count
    finally:
        publisher.close()


def publish_file(path: Path, amqp_url: str, queue_type: str = QUORUM) -> int:
    with path.open("rb") as lines:
        bodies = (line.rstrip(b"\r\n") for line in lines if line.strip())
        return publish_bodies(bodies, amqp_url, queue_type)
