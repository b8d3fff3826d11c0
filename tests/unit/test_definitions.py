"""deploy/rabbitmq/definitions.json declares the queues exactly as the engine does by default:
a broker booted from it never makes the engine keep a queue of another type or stop on a
mismatch."""

from __future__ import annotations

import json
from pathlib import Path

from chatroute import amqp
from chatroute.settings import Settings

DEFINITIONS = Path(__file__).resolve().parents[2] / "deploy" / "rabbitmq" / "definitions.json"


def test_the_definitions_queues_have_the_engines_default_arguments() -> None:
    queues = {q["name"]: q for q in json.loads(DEFINITIONS.read_text())["queues"]}
    default = Settings().queue_type
    assert {name: q["arguments"] for name, q in queues.items()} == {
        amqp.GATEWAY_QUEUE: amqp.gateway_arguments(default),
        amqp.REJECTED_QUEUE: amqp.typed(default, {}),
    }
    assert all(q["durable"] and not q["auto_delete"] for q in queues.values())
