"""What is kept of a rejected body, on SQLite and PostgreSQL: at most 64 KiB of it in the
inbox and in ``chat.events.rejected``, with the whole body's size and SHA-256, and how the
message came (routing key, content type, CloudEvents content mode) on the copy."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pika
import pytest
from pika.spec import Basic
from sqlalchemy import select

from chatroute import bootstrap, cloudevents_amqp, intake
from chatroute.settings import Settings
from chatroute.store import tables
from chatroute.store.outbox import Origin
from tests.builders import Events

KIB_64 = 65536
MB_2 = 2 * 1024 * 1024


@pytest.fixture
def rt(db_url: str) -> Iterator[bootstrap.Runtime]:
    runtime = bootstrap.build(Settings(database_url=db_url), migrate=True)
    yield runtime
    runtime.engine.dispose()


def big_event(tail: str = "") -> bytes:
    """A 2 MB ``rule.deleted`` of shop-1 (its id e-big), ending with ``tail``."""
    event = Events("shop-1").event("rule.deleted", rule="r")
    event["id"] = "e-big"
    body = json.dumps({**event, "padding": ""}).encode()
    padding = "x" * (MB_2 - len(body) - len(tail)) + tail
    return json.dumps({**event, "padding": padding}).encode()


def sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def copies(rt: bootstrap.Runtime) -> list[tuple[bytes, dict[str, Any]]]:
    """(body, headers) of each copy kept for ``chat.events.rejected``, in order."""
    o = tables.outbox.c
    query = select(o.body, o.headers).where(o.exchange == "").order_by(o.seq)
    with rt.engine.connect() as connection:
        return [(row.body, row.headers) for row in connection.execute(query)]


def inbox_rows(rt: bootstrap.Runtime) -> list[Any]:
    i = tables.inbox.c
    query = select(i.event_id, i.body, i.body_size, i.body_sha256, i.reason).order_by(i.seq)
    with rt.engine.connect() as connection:
        return list(connection.execute(query))


def test_a_2mb_event_is_kept_as_its_first_64_kib_with_its_size_digest_and_origin(
    rt: bootstrap.Runtime,
) -> None:
    # Given a 2 MB event, published with a routing key and a content type
    body = big_event()
    origin = Origin(routing_key="rule.deleted", content_type="application/json")
    message = intake.Incoming(body, "application/json", origin=origin)
    # When it comes in
    intake.ingest(rt, [message])
    # Then it is rejected for its size, and only its first 64 KiB are kept, in the inbox
    [row] = inbox_rows(rt)
    assert row.reason == f"event larger than 64 KiB ({MB_2} bytes)"
    assert row.body == body[:KIB_64].decode()
    assert (row.body_size, row.body_sha256) == (MB_2, sha256(body))
    # and in the copy, whose headers say what was cut and how it came
    [(kept, headers)] = copies(rt)
    assert kept == body[:KIB_64]
    assert headers == {
        "x-reject-reason": row.reason,
        "x-decision-id": headers["x-decision-id"],
        "x-body-size": MB_2,
        "x-body-sha256": sha256(body),
        "x-body-truncated": True,
        "x-original-routing-key": "rule.deleted",
        "x-original-content-type": "application/json",
        "x-cloudevents-mode": "structured",
    }


def test_a_small_rejected_body_is_kept_whole_and_says_so(rt: bootstrap.Runtime) -> None:
    intake.ingest(rt, [intake.Incoming(b"{not json")])
    [(kept, headers)] = copies(rt)
    assert kept == b"{not json" and headers["x-body-truncated"] is False
    assert (headers["x-body-size"], headers["x-body-sha256"]) == (9, sha256(b"{not json"))
    assert "x-original-routing-key" not in headers  # unknown: nothing to keep


def test_big_bodies_with_the_same_head_are_told_apart_by_their_whole_digest(
    rt: bootstrap.Runtime,
) -> None:
    # Given two 2 MB events under one id and two 2 MB bodies that are not JSON, each pair
    # alike in its first 64 KiB
    events = [big_event("a"), big_event("b")]
    garbage = [b"?" * (MB_2 - 1) + b"a", b"?" * (MB_2 - 1) + b"b"]
    # When each comes, then each again (a redelivery)
    for body in [*events, *garbage] * 2:
        intake.ingest(rt, [intake.Incoming(body)])
    # Then each is rejected and kept once, by its own digest, and no more
    kept = copies(rt)
    assert [headers["x-body-sha256"] for _, headers in kept] == [
        sha256(body) for body in [*events, *garbage]
    ]
    assert all(len(body) == KIB_64 for body, _ in kept)
    [row] = inbox_rows(rt)  # one row per (tenant, id)
    assert row.body_sha256 == sha256(events[0]) and len(row.body) == KIB_64


def test_a_binary_mode_message_is_kept_as_its_structured_translation(
    rt: bootstrap.Runtime,
) -> None:
    # Given a CloudEvent in binary mode whose data is not JSON
    event = Events("shop-1").event("conversation.closed", conversation="c1")
    headers = {f"cloudEvents:{k}": v for k, v in event.items() if k != "data"}
    properties = pika.BasicProperties(content_type="text/plain", headers=headers)
    method = Basic.Deliver(routing_key="conversation.closed")
    # When it comes in
    intake.ingest(rt, [cloudevents_amqp.incoming(method, properties, b"closed!")])
    # Then it is rejected saying why, under its tenant and id (a redelivery is a repeat)
    [row] = inbox_rows(rt)
    assert row.event_id == event["id"]
    assert row.reason == "binary mode: data content type 'text/plain' is not application/json"
    # and its copy is the structured body of all it held, saying it came in binary mode
    [(kept, headers)] = copies(rt)
    assert json.loads(kept) == {
        **{k: v for k, v in event.items() if k != "data"},
        "datacontenttype": "text/plain",
        "data_base64": "Y2xvc2VkIQ==",
    }
    assert headers["x-cloudevents-mode"] == "binary"
    assert headers["x-original-content-type"] == "text/plain"
    assert headers["x-original-routing-key"] == "conversation.closed"
