"""``chatroute publish`` as a frontend's operator runs it: the broker's URL, which holds a
password, comes from the environment or a secret file, not from the command line."""

from __future__ import annotations

from pathlib import Path

import pika
import pytest

from chatroute.amqp import GATEWAY_QUEUE
from tests.e2e.harness import Vhost, one_conversation
from tests.integration.test_cli import chatroute

pytestmark = pytest.mark.services


def queued(amqp_url: str, queue: str) -> list[bytes]:
    """The bodies waiting in ``queue``, in order (taken off it by a consumer: a quorum queue
    with a single active consumer refuses ``basic.get``)."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        bodies = []
        for method, _, body in channel.consume(queue, auto_ack=True, inactivity_timeout=1):
            if method is None:
                return bodies
            bodies.append(body)
        raise AssertionError("the consumer was cancelled")
    finally:
        connection.close()


@pytest.mark.parametrize("variable", ["CHATROUTE_AMQP_URL", "CHATROUTE_AMQP_URL_FILE"])
def test_publish_takes_the_broker_from_the_settings(
    variable: str, vhost: Vhost, tmp_path: Path
) -> None:
    # Given a file of events, and the broker's URL in the environment or in a secret file
    events = one_conversation()
    (tmp_path / "events.jsonl").write_bytes(b"\n".join(events) + b"\n")
    (tmp_path / "amqp_url").write_text(f"{vhost.url}\n")
    value = vhost.url if variable == "CHATROUTE_AMQP_URL" else str(tmp_path / "amqp_url")
    # When they are published with no --amqp
    result = chatroute("publish", "events.jsonl", cwd=tmp_path, env={variable: value})
    # Then every event reached chat.events, in order (the gateway's queue holds them)
    assert result.returncode == 0, result.stderr
    assert queued(vhost.url, GATEWAY_QUEUE) == events
