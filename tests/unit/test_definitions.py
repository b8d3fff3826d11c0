"""deploy/rabbitmq/definitions.json declares the queues exactly as the engine does: a broker
booted from it never makes the engine keep a queue of another type or stop on a mismatch."""

from __future__ import annotations

import json
from pathlib import Path

from chatroute import amqp
from chatroute.settings import QUORUM

DEFINITIONS = Path(__file__).resolve().parents[2] / "deploy" / "rabbitmq" / "definitions.json"


def test_the_definitions_queues_have_the_engines_quorum_arguments() -> None:
    queues = {q["name"]: q for q in json.loads(DEFINITIONS.read_text())["queues"]}
    assert {name: q["arguments"] for name, q in queues.items()} == {
        amqp.GATEWAY_QUEUE: amqp.gateway_arguments(QUORUM),
        amqp.REJECTED_QUEUE: amqp.typed(QUORUM, {}),
    }
    assert all(q["durable"] and not q["auto_delete"] for q in queues.values())
