"""Every AMQP name of the contract, the topology declaration, and connections (pika)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pika
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import ChannelClosedByBroker

EVENTS_EXCHANGE = "chat.events"
DECISIONS_EXCHANGE = "chat.decisions"
REJECTED_QUEUE = "chat.events.rejected"
# Bound to chat.events with "#"; a single active consumer keeps arrival order.
GATEWAY_QUEUE = "chat.gateway"
EVENT_CONTENT_TYPE = "application/cloudevents+json"
NOT_FOUND = 404
# Unless the URL asks for another (``?heartbeat=N``): the silence after which RabbitMQ closes
# a connection, and after which the client gives up on a broker that went quiet.
HEARTBEAT_S = 30
# pika's blocking connections send and answer heartbeats only inside their own calls: a
# process waiting on something else has its connections do so at least this often, in time
# for heartbeat timeouts of 2 s and more.
KEEP_ALIVE_S = 0.5


def connect(url: str) -> pika.BlockingConnection:
    params = pika.URLParameters(url)
    if params.heartbeat is None:  # None would accept the broker's own (60 s by default)
        params.heartbeat = HEARTBEAT_S
    params.blocked_connection_timeout = 60
    return pika.BlockingConnection(params)


def wait(stop: threading.Event, seconds: float, keep_alive: Callable[[], object]) -> bool:
    """``stop.wait(seconds)`` in slices, calling ``keep_alive`` (which services the waiting
    thread's AMQP connections) at least every ``KEEP_ALIVE_S``; True when ``stop`` is set."""
    deadline = time.monotonic() + seconds
    while not stop.is_set():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        keep_alive()
        stop.wait(min(remaining, KEEP_ALIVE_S))
    return True


def channel_with_topology(connection: pika.BlockingConnection) -> BlockingChannel:
    """A channel of ``connection`` where the contract's topology exists: declared only when
    missing, so that a user without configure permission (a frontend's) can publish where the
    broker's definitions made it."""
    channel = connection.channel()
    try:
        channel.queue_declare(GATEWAY_QUEUE, passive=True)
        return channel
    except ChannelClosedByBroker as error:
        if error.reply_code != NOT_FOUND:
            raise
    channel = connection.channel()  # the refusal closed the first one
    declare_topology(channel)
    return channel


def declare_topology(channel: BlockingChannel) -> None:
    """Declare the contract's exchanges and queues (idempotent)."""
    channel.exchange_declare(EVENTS_EXCHANGE, exchange_type="topic", durable=True)
    channel.exchange_declare(DECISIONS_EXCHANGE, exchange_type="topic", durable=True)
    channel.queue_declare(GATEWAY_QUEUE, durable=True, arguments={"x-single-active-consumer": True})
    channel.queue_bind(GATEWAY_QUEUE, EVENTS_EXCHANGE, routing_key="#")
    channel.queue_declare(REJECTED_QUEUE, durable=True)
