"""The AMQP edge takes CloudEvents in both content modes, as the official ``cloudevents`` SDK
(2.x, ``cloudevents.core.bindings.amqp``) writes them; a binary-mode message becomes the
structured-mode body of the same event."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pika
import pytest
from cloudevents.core.bindings import amqp
from cloudevents.core.v1.event import CloudEvent
from pika.spec import Basic

from chatroute import cloudevents_amqp
from chatroute.errors import InvalidEvent
from chatroute.intake import Incoming
from chatroute.store.outbox import Origin
from schemas.events import Event, parse_event

AT = datetime(2026, 11, 22, 10, 0, 5, tzinfo=UTC)
DATA = {"conversation": "c1", "visitor": "v1", "attributes": {"language": "fr", "city": "Liège"}}


def sdk_event(**attributes: Any) -> CloudEvent:
    """A ``conversation.started`` of shop-1 made by the SDK (``tenant``: an extension)."""
    given = {
        "id": "evt-1",
        "source": "widget/shop-1",
        "type": "conversation.started",
        "time": AT,
        "tenant": "shop-1",
        "datacontenttype": "application/json",
        **attributes,
    }
    return CloudEvent(given, DATA)


def received(message: amqp.AMQPMessage, routing_key: str = "conversation.started") -> Incoming:
    """What the gateway makes of the SDK's AMQP message: its application properties as pika
    headers, its content-type as the AMQP content type, both read back as pika decodes them."""
    properties = pika.BasicProperties(
        content_type=message.properties.get("content-type"),
        headers=message.application_properties or None,
    )
    return with_properties(properties, message.application_data, routing_key)


def with_properties(
    properties: pika.BasicProperties, body: bytes, routing_key: str = "conversation.started"
) -> Incoming:
    on_the_wire = b"".join(properties.encode())
    decoded = pika.BasicProperties()
    decoded.decode(on_the_wire)
    method = Basic.Deliver(routing_key=routing_key)
    return cloudevents_amqp.incoming(method, decoded, body)


def binary(headers: dict[str, Any], body: bytes, content_type: str | None = None) -> Incoming:
    return with_properties(pika.BasicProperties(content_type=content_type, headers=headers), body)


def accepted(message: Incoming) -> Event:
    assert message.reason is None
    return parse_event(message.body)


STRUCTURED_EVENT = {
    "specversion": "1.0",
    "id": "evt-1",
    "source": "widget/shop-1",
    "type": "conversation.started",
    "time": "2026-11-22T10:00:05Z",
    "tenant": "shop-1",
    "datacontenttype": "application/json",
    "data": DATA,
}


def test_the_sdk_binary_mode_becomes_the_structured_body_of_the_same_event() -> None:
    # Given one event as the SDK writes it in binary mode (cloudEvents_ application
    # properties, time as milliseconds) and in structured mode
    as_binary = received(amqp.to_binary_event(sdk_event()))
    as_structured = received(amqp.to_structured_event(sdk_event()))
    # Then the binary one is the equivalent structured body, and both are the same event
    assert json.loads(as_binary.body) == STRUCTURED_EVENT
    assert accepted(as_binary) == accepted(as_structured)
    assert accepted(as_binary).tenant == "shop-1"
    # and the rejected copy would say how each came
    assert as_binary.origin == Origin("conversation.started", "application/json", binary=True)
    assert as_structured.origin == Origin("conversation.started", "application/cloudevents+json")


def test_the_colon_prefix_amqp_timestamps_and_byte_values_are_read_too() -> None:
    # Given the SDK's binary attributes under the cloudEvents: prefix, time as an AMQP
    # timestamp (seconds), and the tenant as an AMQP byte array
    message = amqp.to_binary_event(sdk_event())
    headers = {
        name.replace("cloudEvents_", "cloudEvents:"): value
        for name, value in message.application_properties.items()
    }
    headers["cloudEvents:time"] = AT
    headers["cloudEvents:tenant"] = b"shop-1"
    # When it comes in
    taken = binary(headers, message.application_data, "application/json; charset=utf-8")
    # Then it is the same event
    assert accepted(taken) == accepted(received(amqp.to_structured_event(sdk_event())))


def attributes(**overrides: Any) -> dict[str, Any]:
    """The binary-mode headers of ``STRUCTURED_EVENT``, some replaced (None: left out)."""
    headers = {
        f"cloudEvents:{name}": value
        for name, value in STRUCTURED_EVENT.items()
        if name not in ("data", "datacontenttype")
    }
    headers.update({f"cloudEvents:{name}": value for name, value in overrides.items()})
    return {name: value for name, value in headers.items() if value is not None}


@pytest.mark.parametrize(
    ("headers", "body", "content_type", "reason"),
    [
        (
            attributes(),
            b"{not json",
            "application/json",
            "binary mode: invalid JSON: Expecting property name enclosed in double quotes: "
            "line 1 column 2 (char 1)",
        ),
        (
            attributes(),
            b"hello",
            "text/plain",
            "binary mode: data content type 'text/plain' is not application/json",
        ),
        (
            attributes(),
            b"\xff",
            None,
            "binary mode: data is not UTF-8: invalid start byte at byte 0",
        ),
        (
            attributes(),
            b" " * 70_000,
            None,
            "binary mode: event larger than 64 KiB (70000 bytes of data)",
        ),
        (
            attributes(tenant=b"shop-\xff"),
            json.dumps(DATA).encode(),
            None,
            "binary mode: attribute 'tenant' is not UTF-8 text",
        ),
        (
            {**attributes(), "cloudEvents_id": "evt-2"},
            json.dumps(DATA).encode(),
            None,
            "binary mode: attribute 'id' given twice, with different values",
        ),
        (
            attributes(time=2**62),
            json.dumps(DATA).encode(),
            None,
            f"binary mode: attribute 'time' is not a timestamp ({2**62} ms)",
        ),
    ],
)
def test_a_binary_message_that_cannot_be_an_event_gets_a_clear_reason_and_keeps_all(
    headers: dict[str, Any], body: bytes, content_type: str | None, reason: str
) -> None:
    taken = binary(headers, body, content_type)
    assert taken.reason == reason
    # The structured body still holds the attributes, and data that is not JSON in base64
    kept = json.loads(taken.body)
    assert kept["id"] == "evt-1" and kept["source"] == "widget/shop-1"
    if "data" not in kept:
        assert base64.b64decode(kept["data_base64"]) == body


def test_attributes_the_contract_checks_are_checked_after_the_translation() -> None:
    # An id as an AMQP integer, and a time that is not one, are not translated away
    taken = binary(attributes(id=7), json.dumps(DATA).encode())
    with pytest.raises(InvalidEvent, match="id: Input should be a valid string"):
        accepted(taken)
    late = binary(attributes(time="yesterday"), json.dumps(DATA).encode())
    with pytest.raises(InvalidEvent, match="time: Input should be a valid datetime"):
        accepted(late)


@pytest.mark.parametrize(
    ("headers", "content_type"),
    [
        (attributes(), "application/cloudevents+json"),  # the structured content type wins
        ({"cloudEvents:tenant": "shop-1"}, "application/json"),  # no specversion: no binary
        (None, "application/json"),  # a frontend of the contract
    ],
)
def test_a_message_in_structured_mode_passes_as_it_is(
    headers: dict[str, Any] | None, content_type: str
) -> None:
    body = json.dumps({**STRUCTURED_EVENT, "id": "evt-9"}).encode()
    taken = binary(headers or {}, body, content_type)
    assert (taken.body, taken.content_type, taken.reason) == (body, content_type, None)
    assert taken.origin is not None and not taken.origin.binary
