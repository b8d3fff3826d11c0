"""The gateway on the real RabbitMQ: bad events are rejected with a reason and kept."""

from __future__ import annotations

import json
from pathlib import Path

import pika
import pytest

from chatroute.amqp import REJECTED_QUEUE
from tests.builders import Events
from tests.e2e.harness import DecisionLog, Pipeline, lines, wait_until

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
    good = lines(shop.lines[:-1])
    seen: list[tuple[bytes, dict]] = []
    try:
        pipeline.publish([*good, b"{not json", *lines([bad]), *good])
        wait_until(lambda: len(log.decisions) >= 3, 60, "decisions")
        wait_until(lambda: len(seen.extend(kept_bodies(vhost.url)) or seen) >= 2, 30, "kept")
    finally:
        pipeline.stop()
        log.stop()
    # Then one assignment, two rejections with reasons, the bodies kept with the reason
    types = sorted(d["type"] for d in log.decisions)
    assert types == ["conversation.assigned", "event.rejected", "event.rejected"]
    reasons = {
        d["data"]["event_id"]: d["data"]["reason"]
        for d in log.decisions
        if d["type"] == "event.rejected"
    }
    assert "data.score" in reasons[bad["id"]] and "invalid JSON" in reasons[None]
    assert {body for body, _ in seen} == {b"{not json", json.dumps(bad).encode()}
    assert all("x-reject-reason" in headers for _, headers in seen)
