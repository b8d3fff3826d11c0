"""Every AMQP name of the contract, the topology declaration, and connections (pika)."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Callable

import pika
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import ChannelClosedByBroker

from chatroute import logs
from chatroute.errors import SettingsError
from chatroute.settings import CLASSIC, QUORUM

log = logs.get("chatroute.amqp")

EVENTS_EXCHANGE = "chat.events"
DECISIONS_EXCHANGE = "chat.decisions"
REJECTED_QUEUE = "chat.events.rejected"
# Bound to chat.events with "#"; a single active consumer keeps arrival order.
GATEWAY_QUEUE = "chat.gateway"
EVENT_CONTENT_TYPE = "application/cloudevents+json"
NOT_FOUND = 404
PRECONDITION_FAILED = 406
# Unless the URL asks for another (``?heartbeat=N``): the silence after which RabbitMQ closes
# a connection, and after which the client gives up on a broker that went quiet.
HEARTBEAT_S = 30
# pika's blocking connections send and answer heartbeats only inside their own calls: a
# process waiting on something else has its connections do so at least this often, in time
# for heartbeat timeouts of 2 s and more.
KEEP_ALIVE_S = 0.5


def node_urls(url: str) -> list[str]:
    """The URLs ``url`` holds: one, or a cluster's nodes separated by ``;`` (as dramatiq reads
    them), in a random order, so that a deployment's connections spread over the nodes; a
    connection tries them in that order until one answers."""
    urls = [part.strip() for part in url.split(";") if part.strip()]
    if not urls:
        raise SettingsError(f"no RabbitMQ URL in {url!r}")
    random.shuffle(urls)
    return urls


def connect(url: str) -> pika.BlockingConnection:
    """A connection to the first node of ``url`` (see ``node_urls``) that answers."""
    nodes = [pika.URLParameters(node) for node in node_urls(url)]
    for params in nodes:
        if params.heartbeat is None:  # None would accept the broker's own (60 s by default)
            params.heartbeat = HEARTBEAT_S
        params.blocked_connection_timeout = 60
    return pika.BlockingConnection(resolving(nodes))


def resolving(nodes: list[pika.ConnectionParameters]) -> list[pika.ConnectionParameters]:
    """Those of ``nodes`` whose host name resolves now (all of them when none does).

    pika, given several nodes, tries the next when one refuses or times out, but gives up at
    the first whose name does not resolve: a node of a cluster that is down has no name in
    Docker's DNS."""
    found = []
    for node in nodes:
        try:
            socket.getaddrinfo(node.host, node.port)
        except OSError:
            continue
        found.append(node)
    return found or nodes


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


def channel_with_topology(connection: pika.BlockingConnection, queue_type: str) -> BlockingChannel:
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
    return declare_topology(connection, queue_type)  # the refusal closed the first channel


def declare_topology(connection: pika.BlockingConnection, queue_type: str) -> BlockingChannel:
    """Declare the contract's exchanges and queues (idempotent); return an open channel."""
    channels = _Channels(connection)
    channels().exchange_declare(EVENTS_EXCHANGE, exchange_type="topic", durable=True)
    channels().exchange_declare(DECISIONS_EXCHANGE, exchange_type="topic", durable=True)
    declare_queue(channels, GATEWAY_QUEUE, queue_type, gateway_arguments)
    channels().queue_bind(GATEWAY_QUEUE, EVENTS_EXCHANGE, routing_key="#")
    declare_queue(channels, REJECTED_QUEUE, queue_type, lambda kind: typed(kind, {}))
    return channels()


def typed(queue_type: str, arguments: dict[str, object]) -> dict[str, object]:
    """``arguments`` for a queue of ``queue_type``. A classic queue is declared without
    ``x-queue-type``, exactly as before quorum queues: a queue made then still matches."""
    return {**arguments, "x-queue-type": QUORUM} if queue_type == QUORUM else arguments


def gateway_arguments(queue_type: str) -> dict[str, object]:
    arguments: dict[str, object] = {"x-single-active-consumer": True}
    if queue_type == QUORUM:
        # RabbitMQ 4 drops a message a quorum queue delivered 20 times (its default delivery
        # limit, reached by one that crashed every gateway taking it): kept here instead.
        arguments |= {
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": REJECTED_QUEUE,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }
    return typed(queue_type, arguments)


class _Channels:
    """An open channel of ``connection`` at each call: a new one when the broker closed the last."""

    def __init__(self, connection: pika.BlockingConnection) -> None:
        self.connection = connection
        self.channel = connection.channel()

    def __call__(self) -> BlockingChannel:
        if not self.channel.is_open:
            self.channel = self.connection.channel()
        return self.channel


def declare_queue(
    channel: Callable[[], BlockingChannel],
    name: str,
    queue_type: str,
    arguments: Callable[[str], dict[str, object]],
) -> str:
    """Declare the durable queue ``name`` with ``arguments(queue_type)`` on ``channel()`` (an
    open channel at each call) and return the type of the queue now there.

    RabbitMQ cannot change a queue's type in place: a queue of the other type already there
    (made before quorum queues, or under the other setting) is kept, with a warning, rather
    than stopping the engine; the README's *Queue types* says how to move it. Any other
    refusal is raised."""
    try:
        channel().queue_declare(name, durable=True, arguments=arguments(queue_type))
        return queue_type
    except ChannelClosedByBroker as error:
        if error.reply_code != PRECONDITION_FAILED:
            raise
        refusal = error
    found = CLASSIC if queue_type == QUORUM else QUORUM
    try:
        channel().queue_declare(name, durable=True, arguments=arguments(found))
    except ChannelClosedByBroker:
        raise refusal from None
    log.warning(
        "queue_type_kept", queue=name, wanted=queue_type, found=found, reply=refusal.reply_text
    )
    return found
