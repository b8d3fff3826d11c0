"""Hostile input (#6) through the real broker: hostile messages (``tests/fuzz/messages.py``,
with what only AMQP carries: odd routing keys, no content type, one that is not UTF-8) are
published to ``chat.events`` on a throw-away vhost, with the real gateway, worker and
sweeper running. Every message is accounted for as the contract says (``tests/fuzz/world.py``
``expect``): a rejection is an ``event.rejected`` decision on ``chat.decisions`` plus its
body in ``chat.events.rejected`` with the same reason in ``x-reject-reason``; an accepted
event ends applied, or rejected likewise; a repeat decides nothing. No process ends, nothing
is dropped, and the gateway still answers a valid event at the end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pika
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from sqlalchemy import create_engine, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from chatroute.amqp import EVENTS_EXCHANGE, REJECTED_QUEUE, connect, declare_topology
from chatroute.settings import QUORUM
from chatroute.store import inbox, tables
from schemas.decisions import decision_id
from tests.builders import Events
from tests.e2e.harness import DecisionLog, Pipeline, lines, wait_until
from tests.fuzz.messages import VICTIM_EVENTS, Message, amqp_batches
from tests.fuzz.world import Expected, check_copy, expect, identity, unless_decided

# A failure's report would show bodies of up to 140 kB: hypothesis warns, and warnings fail.
pytestmark = [
    pytest.mark.services,
    pytest.mark.filterwarnings("ignore:Generating overly large repr"),
]

RUNS = 5  # hypothesis examples, each a run of published messages
CRASH_MARKS = ("Traceback", "intake_failed", "batch_failed", "event_or_timer_failed")


class Broker:
    """Publishes as a frontend would, and gathers what the engine sends back."""

    def __init__(self, amqp_url: str) -> None:
        self.amqp_url = amqp_url
        self.decisions = DecisionLog(amqp_url)
        self.kept: dict[str, tuple[bytes, dict[str, Any]]] = {}  # by x-decision-id

    def publish(self, messages: list[Message]) -> None:
        connection = connect(self.amqp_url)
        channel = declare_topology(connection, QUORUM)
        channel.confirm_delivery()
        for m in messages:
            content_type: Any = m.raw_content_type or m.content_type
            properties = pika.BasicProperties(content_type=content_type, delivery_mode=2)
            channel.basic_publish(EVENTS_EXCHANGE, m.routing_key, m.body, properties)
        connection.close()

    def gather_kept(self) -> None:
        connection = pika.BlockingConnection(pika.URLParameters(self.amqp_url))
        channel = connection.channel()
        while True:
            method, properties, body = channel.basic_get(REJECTED_QUEUE, auto_ack=True)
            if method is None:
                break
            self.kept[properties.headers["x-decision-id"]] = (body, properties.headers)
        connection.close()

    def rejection(self, did: str) -> dict[str, Any] | None:
        found = [d for d in self.decisions.decisions if d["id"] == did]
        return found[0]["data"] if found else None


class Account:
    """Whether each published message came out as ``expect`` says."""

    def __init__(self, engine: Engine, broker: Broker) -> None:
        self.engine = engine
        self.broker = broker

    def known(self, batch: list[Message]) -> dict[tuple[str, str], inbox.StoredBody]:
        keys = [key for m in batch if (key := identity(m.body)[2]) is not None]
        with Session(self.engine) as session:
            return inbox.bodies(session, keys)

    def settled(self, pairs: list[tuple[Message, Expected]]) -> bool:
        self.broker.gather_kept()
        return all(self.accounted(m, e) for m, e in pairs)

    def accounted(self, message: Message, expected: Expected) -> bool:
        if expected.outcome == "repeat":
            return expected.decision is None or self.broker.rejection(expected.decision) is not None
        if expected.outcome != "accepted":
            assert expected.decision and expected.reason
            return self.rejected(expected.decision, expected.reason, message.body)
        assert expected.key is not None
        row = self.inbox_row(expected.key)
        if row is None:
            return False  # not taken in yet
        assert row.body == message.body.decode()
        if row.state == inbox.REJECTED:
            return self.rejected(decision_id(*expected.key, 0), row.reason, message.body)
        return row.state == inbox.APPLIED

    def rejected(self, did: str, reason: str, body: bytes) -> bool:
        data, kept = self.broker.rejection(did), self.broker.kept.get(did)
        if data is None or kept is None:
            return False
        assert data["reason"] == reason == kept[1]["x-reject-reason"]
        check_copy(*kept, body)
        return True

    def inbox_row(self, key: tuple[str, str]) -> Any:
        c = tables.inbox.c
        query = select(c.state, c.body, c.reason).where(c.tenant == key[0], c.event_id == key[1])
        with self.engine.connect() as connection:
            return connection.execute(query).first()


def still_answers(pipeline: Pipeline, broker: Broker) -> None:
    """A valid event after the storm gets its decision."""
    alive = Events("alive")
    alive.rule("all", "G")
    alive.respondent("a", ["G"])
    alive.start("c1")
    pipeline.publish(lines(alive.lines))
    assigned = [("alive", "conversation.assigned", "c1")]
    wait_until(
        lambda: (
            assigned
            == [
                (d["tenant"], d["type"], d["data"].get("conversation"))
                for d in broker.decisions.decisions
                if d["tenant"] == "alive"
            ]
        ),
        30,
        "the final valid event's decision",
    )


def test_the_real_gateway_accounts_for_every_hostile_message(
    pg_url: str, vhost: Any, tmp_path: Path
) -> None:
    # Given the pipeline, with a short retry window for unknown conversations, and a victim
    pipeline = Pipeline(pg_url, vhost.url, tmp_path, processes=1, threads=2)
    pipeline.env["CHATROUTE_UNKNOWN_RETRY_S"] = "1"
    broker = Broker(vhost.url)
    engine = create_engine(pg_url)
    account = Account(engine, broker)
    pipeline.start()
    tried = 0
    try:
        pipeline.publish(lines(VICTIM_EVENTS))

        @settings(
            max_examples=RUNS,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(batch=amqp_batches(min_size=40, max_size=60))
        def publish_and_account(batch: list[Message]) -> None:
            nonlocal tried
            # When a run of hostile messages is published
            known = account.known(batch)
            decided = {d["id"] for d in broker.decisions.decisions}
            expected = unless_decided([expect(m, known) for m in batch], decided)
            pairs = list(zip(batch, expected, strict=True))
            broker.publish(batch)
            tried += len(batch)
            # Then each comes out as the contract says
            try:
                wait_until(lambda: account.settled(pairs), 45, "every message accounted for")
            except AssertionError as late:
                missing = [(m, e.outcome) for m, e in pairs if not account.accounted(m, e)]
                dead = {name: c.poll() for name, c in pipeline.children.items() if c.poll()}
                raise AssertionError(f"unaccounted: {missing[:3]}; ended: {dead}") from late

        publish_and_account()
        still_answers(pipeline, broker)
        crashed = {name: c.poll() for name, c in pipeline.children.items() if c.poll() is not None}
    finally:
        pipeline.stop()
        broker.decisions.stop()
        engine.dispose()
    assert tried >= RUNS * 40 and crashed == {}
    for log in tmp_path.glob("*.log"):
        text = log.read_text(errors="replace")
        assert not [mark for mark in CRASH_MARKS if mark in text], log.name
    print(f"gateway fuzz: {tried} messages through the broker, each accounted for")
