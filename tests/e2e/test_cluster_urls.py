"""The engine given a cluster's nodes (``;``-separated URLs), one of which does not answer:
every process connects to one that does, and events flow as with one URL."""

from __future__ import annotations

from pathlib import Path

import pika
import pytest

from chatroute.amqp import connect
from tests.e2e.harness import Pipeline, running, wait_until
from tests.e2e.test_queue_types import two_shops

pytestmark = pytest.mark.services


def test_every_process_takes_a_node_that_answers(pg_url: str, vhost, tmp_path: Path) -> None:
    # Given a node that is down and one whose name does not resolve (a cluster profile not
    # running), listed with the real one (each process picks its own order)
    down = f"amqp://guest:guest@127.0.0.1:1/{vhost.name}"
    unknown = f"amqp://guest:guest@no-such-node.invalid:5672/{vhost.name}"
    nodes = f"{down};{unknown};{vhost.url}"
    pipeline = Pipeline(pg_url, nodes, tmp_path, processes=2, threads=1)
    with running(pipeline, vhost.url) as log:
        # When two shops' conversations are published through the same list
        pipeline.publish(two_shops(), publishers=2)
        wait_until(lambda: len({d["id"] for d in log.decisions}) >= 4, 60, "four assignments")
    # Then each conversation is assigned, once (a decision the relay published again after a
    # lost connection comes with the same id: frontends drop it, and so does this count)
    decided = {d["id"]: d for d in log.decisions}.values()
    assigned = sorted((d["tenant"], d["data"]["conversation"]) for d in decided)
    assert assigned == [("shop-1", "c1"), ("shop-1", "c2"), ("shop-2", "c1"), ("shop-2", "c2")]


def test_no_node_answering_is_the_connection_error_it_always_was() -> None:
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        connect("amqp://guest:guest@127.0.0.1:1/%2F;amqp://guest:guest@127.0.0.1:2/%2F")
