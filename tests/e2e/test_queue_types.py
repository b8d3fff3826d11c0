"""Queue types on the real RabbitMQ: every queue of the engine and of dramatiq is a classic queue
by default, a quorum queue under ``CHATROUTE_QUEUE_TYPE=quorum``, and a queue of the other type
already there is kept (with a warning) so that an upgrade does not stop the engine."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pika
import pytest
from structlog.testing import capture_logs

from chatroute import amqp
from chatroute.settings import CLASSIC, QUORUM
from tests.builders import Events
from tests.e2e.harness import Pipeline, lines, running, wait_until
from tests.e2e.test_gateway import kept_bodies
from workers.broker import ROUTING_QUEUE, TypedRabbitmqBroker

pytestmark = pytest.mark.services

ENGINE_QUEUES = {
    amqp.GATEWAY_QUEUE,
    amqp.REJECTED_QUEUE,
    *(f"chatroute.{kind}{end}" for kind in ("routing", "stats") for end in ("", ".DQ", ".XQ")),
}


def queue_types(vhost: str) -> dict[str, str]:
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "-p", vhost, "--no-table-headers", "name", "type"],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout  # fmt: skip
    return dict(line.split("\t") for line in listed.splitlines() if line.strip())


def two_shops() -> list[bytes]:
    shops = [Events("shop-1"), Events("shop-2")]
    for shop in shops:
        shop.rule("all", "G")
        shop.respondent("a", ["G"], slots=1)
        shop.respondent("b", ["G"], slots=1)
        shop.start("c1")
        shop.start("c2")
    return lines([line for shop in shops for line in shop.lines])


@pytest.mark.parametrize("queue_type", [QUORUM, CLASSIC])
def test_the_pipeline_declares_every_queue_of_its_type(
    pg_url: str, vhost, tmp_path: Path, queue_type: str
) -> None:
    # Given a pipeline on a fresh vhost, with the queue type set (classic is the default)
    pipeline = Pipeline(pg_url, vhost.url, tmp_path, processes=1, threads=1)
    if queue_type == QUORUM:
        pipeline.env["CHATROUTE_QUEUE_TYPE"] = QUORUM
    with running(pipeline, vhost.url) as log:
        # When two shops' conversations and one bad event go through it
        pipeline.publish([*two_shops(), b'{"not": "an event"}'])
        wait_until(lambda: len(log.decisions) >= 5, 60, "four assignments and a rejection")
        wait_until(lambda: set(queue_types(vhost.name)) >= ENGINE_QUEUES, 30, "stats queues")
        # Then every queue is of that type, and the pipeline works on them
        types = queue_types(vhost.name)
    assert {name: types[name] for name in ENGINE_QUEUES} == dict.fromkeys(ENGINE_QUEUES, queue_type)
    assigned = sorted(
        (d["tenant"], d["data"]["conversation"], d["data"]["respondent"])
        for d in log.decisions
        if d["type"] == "conversation.assigned"
    )
    assert assigned == [
        ("shop-1", "c1", "a"), ("shop-1", "c2", "b"), ("shop-2", "c1", "a"), ("shop-2", "c2", "b")
    ]  # fmt: skip
    assert [body for body, _ in kept_bodies(vhost.url)] == [b'{"not": "an event"}']


@pytest.mark.parametrize(("found", "wanted"), [(CLASSIC, QUORUM), (QUORUM, CLASSIC)])
def test_queues_of_the_other_type_are_kept_with_a_warning(vhost, found: str, wanted: str) -> None:
    # Given every queue declared by a deployment of the other type
    connection = amqp.connect(vhost.url)
    amqp.declare_topology(connection, found)
    old = TypedRabbitmqBroker(url=vhost.url, queue_type=found)
    old.declare_queue(ROUTING_QUEUE, ensure=True)
    old.close()
    # When the engine's processes declare them again under the other setting
    with capture_logs() as logs:
        channel = amqp.declare_topology(connection, wanted)
        new = TypedRabbitmqBroker(url=vhost.url, queue_type=wanted, confirm_delivery=True)
        new.declare_queue(ROUTING_QUEUE, ensure=True)
    # Then each queue is kept as it was, each named in a warning, and both keep working
    routing = {ROUTING_QUEUE, f"{ROUTING_QUEUE}.DQ", f"{ROUTING_QUEUE}.XQ"}
    kept = {entry["queue"] for entry in logs if entry["event"] == "queue_type_kept"}
    assert kept == {amqp.GATEWAY_QUEUE, amqp.REJECTED_QUEUE, *routing}
    assert all(e["wanted"] == wanted and e["found"] == found for e in logs if "found" in e)
    types = queue_types(vhost.name)
    assert {types[name] for name in kept} == {found}
    channel.confirm_delivery()
    channel.basic_publish(amqp.EVENTS_EXCHANGE, "conversation.started", b"{}")
    # (a consumer: a quorum queue with a single active consumer refuses basic.get)
    assert (
        next(channel.consume(amqp.GATEWAY_QUEUE, auto_ack=True, inactivity_timeout=10))[2] == b"{}"
    )
    new.channel.basic_publish("", ROUTING_QUEUE, b"nudge")
    assert new.channel.basic_get(ROUTING_QUEUE, auto_ack=True)[2] == b"nudge"
    new.close()
    connection.close()


def test_a_queue_refused_for_another_reason_is_still_an_error(vhost) -> None:
    # Given chat.gateway made by hand without a single active consumer
    connection = amqp.connect(vhost.url)
    connection.channel().queue_declare(amqp.GATEWAY_QUEUE, durable=True)
    # When the engine declares its topology, Then RabbitMQ's refusal stops it, unhidden
    with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="PRECONDITION_FAILED"):
        amqp.declare_topology(connection, QUORUM)
    connection.close()
