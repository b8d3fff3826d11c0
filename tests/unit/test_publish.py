"""``chatroute publish`` keeps trying while the broker is away, and gives up in the end."""

from __future__ import annotations

import time

import pika
import pytest

from chatroute.publish import Publisher, routing_key


def test_a_publisher_retries_then_gives_up_when_the_broker_stays_away() -> None:
    # Given a broker that never answers (nothing listens on port 1)
    publisher = Publisher("amqp://guest:guest@127.0.0.1:1/%2F", retry_s=0.05, give_up_after_s=0.3)
    started = time.monotonic()
    # When an event is published, it is tried again, then the publisher gives up
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        publisher.publish(b'{"type": "conversation.started"}')
    assert publisher.retries >= 3
    assert 0.3 <= time.monotonic() - started < 5


def test_the_routing_key_is_the_type_or_invalid() -> None:
    assert routing_key(b'{"type": "conversation.closed"}') == "conversation.closed"
    assert routing_key(b"not json") == routing_key(b'{"type": 3}') == "invalid"
