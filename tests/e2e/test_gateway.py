"""The gateway on the real RabbitMQ: bad events are rejected with a reason and kept (at most
64 KiB of them), and CloudEvents come in either content mode."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pika
import pytest
from cloudevents.core.bindings import amqp
from cloudevents.core.v1.event import CloudEvent

from chatroute.amqp import EVENTS_EXCHANGE, REJECTED_QUEUE
from tests.builders import Events
from tests.e2e.harness import DecisionLog, Pipeline, lines, running, wait_until

pytestmark = pytest.mark.services


def kept_bodies(amqp_url: str) -> list[tuple[bytes, dict]]:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    kept = []
    while True:
        method, properties, body = channel.basic_get(REJECTED_QUEUE, auto_ack=True)
        if method is None:
            break
        kept.append((body, properties.headers))
    connection.close()
    return kept


def test_bad_and_repeated_events_on_the_real_pipeline(pg_url: str, vhost, tmp_path: Path) -> None:
    # Given the pipeline, and a frontend sending a good event twice and two bad ones
    pipeline = Pipeline(pg_url, vhost.url, tmp_path, processes=1, threads=1)
    log = DecisionLog(vhost.url)
    pipeline.start()
    shop = Events("shop-1")
    shop.rule("all", "G")
    shop.respondent("a", ["G"], slots=1)
    shop.start("c1")
    bad = shop.event("conversation.rated", conversation="c1", score=9)
    huge = {**shop.event("rule.deleted", rule="r"), "padding": "x" * 2_000_000}
    good = lines(shop.lines[:-2])
    seen: list[tuple[bytes, dict]] = []
    try:
        pipeline.publish([*good, b"{not json", *lines([bad, huge]), *good])
        wait_until(lambda: len(log.decisions) >= 4, 60, "decisions")
        wait_until(lambda: len(seen.extend(kept_bodies(vhost.url)) or seen) >= 3, 30, "kept")
    finally:
        pipeline.stop()
        log.stop()
    # Then one assignment, three rejections with reasons, the bodies kept with the reason
    types = sorted(d["type"] for d in log.decisions)
    assert types == ["conversation.assigned", *["event.rejected"] * 3]
    reasons = {
        d["data"]["event_id"]: d["data"]["reason"]
        for d in log.decisions
        if d["type"] == "event.rejected"
    }
    assert "data.score" in reasons[bad["id"]] and "invalid JSON" in reasons[None]
    assert reasons[huge["id"]].startswith("event larger than 64 KiB")
    # at most 64 KiB of each, with its size, digest and how it was published
    [huge_body] = lines([huge])
    published = {  # body: routing key
        b"{not json": "invalid",
        json.dumps(bad).encode(): "conversation.rated",
        huge_body: "rule.deleted",
    }
    assert {body for body, _ in seen} == {body[:65536] for body in published}
    for kept, headers in seen:
        [body] = [body for body in published if body.startswith(kept)]
        assert headers["x-reject-reason"] and headers["x-decision-id"]
        assert headers["x-original-routing-key"] == published[body]
        assert headers["x-original-content-type"] == "application/cloudevents+json"
        assert headers["x-cloudevents-mode"] == "structured"
        assert headers["x-body-size"] == len(body)
        assert headers["x-body-sha256"] == hashlib.sha256(body).hexdigest()
        assert headers["x-body-truncated"] == (len(body) > 65536)


def sdk_started(tenant: str, conversation: str) -> CloudEvent:
    """A ``conversation.started`` made by the official SDK (``tenant``: an extension)."""
    attributes = {
        "id": f"evt-{conversation}",
        "source": f"widget/{tenant}",
        "type": "conversation.started",
        "time": datetime(2026, 11, 22, 11, 0, tzinfo=UTC),
        "tenant": tenant,
        "datacontenttype": "application/json",
    }
    data = {"conversation": conversation, "visitor": "v1", "attributes": {"city": "Liège"}}
    return CloudEvent(attributes, data)


def publish_sdk(amqp_url: str, message: amqp.AMQPMessage) -> None:
    """Publish the SDK's AMQP message with pika: application properties as headers."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    channel.confirm_delivery()
    properties = pika.BasicProperties(
        content_type=message.properties.get("content-type"),
        headers=message.application_properties or None,
        delivery_mode=pika.DeliveryMode.Persistent,
    )
    channel.basic_publish(
        EVENTS_EXCHANGE, "conversation.started", message.application_data, properties
    )
    connection.close()


def but_tenant(decision: dict[str, Any]) -> dict[str, Any]:
    """A decision without what follows from its tenant (its tenant, and its id)."""
    return {key: value for key, value in decision.items() if key not in ("tenant", "id")}


def test_cloudevents_in_binary_and_structured_mode_decide_the_same(
    pg_url: str, vhost, tmp_path: Path
) -> None:
    # Given two shops alike, each with a rule and an available respondent
    pipeline = Pipeline(pg_url, vhost.url, tmp_path, processes=1, threads=1)
    with running(pipeline, vhost.url) as log:
        shops = {"shop-1": Events("shop-1"), "shop-2": Events("shop-2")}
        for shop in shops.values():
            shop.rule("all", "G")
            shop.respondent("a", ["G"], slots=2)
        pipeline.publish(lines([*shops["shop-1"].lines, *shops["shop-2"].lines]))
        # When the SDK's conversation.started comes in binary mode to one, structured to the
        # other; then the first one again, in structured mode
        publish_sdk(vhost.url, amqp.to_binary_event(sdk_started("shop-1", "c1")))
        publish_sdk(vhost.url, amqp.to_structured_event(sdk_started("shop-2", "c1")))
        publish_sdk(vhost.url, amqp.to_structured_event(sdk_started("shop-1", "c1")))
        wait_until(lambda: len(log.decisions) >= 2, 60, "both assignments")
        # a last event shows the gateway is past the third one
        publish_sdk(vhost.url, amqp.to_structured_event(sdk_started("shop-1", "c2")))
        wait_until(lambda: len(log.decisions) >= 3, 60, "the last assignment")
    # Then each is assigned, alike; the structured copy of the binary one was a repeat
    assert [d["type"] for d in log.decisions] == ["conversation.assigned"] * 3
    by_tenant = {(d["tenant"], d["data"]["conversation"]): d for d in log.decisions}
    assert sorted(by_tenant) == [("shop-1", "c1"), ("shop-1", "c2"), ("shop-2", "c1")]
    binary, structured = by_tenant[("shop-1", "c1")], by_tenant[("shop-2", "c1")]
    assert binary["data"]["respondent"] == "a" and binary["causationid"] == "evt-c1"
    assert but_tenant(binary) == but_tenant(structured)
