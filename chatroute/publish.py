"""``chatroute publish``: send a JSON-lines file of events to ``chat.events``, as a frontend
would (routing key = type, persistent, publisher confirms)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pika

from chatroute.amqp import EVENT_CONTENT_TYPE, EVENTS_EXCHANGE, channel_with_topology, connect


def routing_key(body: bytes) -> str:
    """The event's ``type``; a body without one is still published (the gateway rejects it)."""
    try:
        kind = json.loads(body).get("type")
    except (ValueError, AttributeError):
        return "invalid"
    return kind if isinstance(kind, str) and kind else "invalid"


def publish_bodies(bodies: Iterable[bytes], amqp_url: str) -> int:
    connection = connect(amqp_url)
    try:
        channel = channel_with_topology(connection)
        channel.confirm_delivery()
        count = 0
        for body in bodies:
            channel.basic_publish(
                EVENTS_EXCHANGE,
                routing_key(body),
                body,
                pika.BasicProperties(
                    content_type=EVENT_CONTENT_TYPE, delivery_mode=pika.DeliveryMode.Persistent
                ),
            )
            count += 1
        return count
    finally:
        connection.close()


def publish_file(path: Path, amqp_url: str) -> int:
    with path.open("rb") as lines:
        bodies = (line.rstrip(b"\r\n") for line in lines if line.strip())
        return publish_bodies(bodies, amqp_url)
