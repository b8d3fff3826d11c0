"""The AMQP edge: a message from ``chat.events`` as ``intake.Incoming``, in either content
mode of the CloudEvents AMQP protocol binding.

- Structured mode (the contract's): the event is the JSON body; it passes as it is.
- Binary mode: the attributes are application properties (pika's ``properties.headers``)
  named ``cloudEvents:<attribute>`` or ``cloudEvents_<attribute>``, the data is the body and
  the data's content type is the AMQP content-type. Here it becomes the equivalent
  structured-mode body, so everything after the edge (validation, inbox, idempotency, replay,
  rejected copies) sees one form.

A message is in binary mode when it carries a ``specversion`` attribute header, unless its
content type names the structured mode (``application/cloudevents...``), which wins, as the
binding says. Without that header it is taken as structured, as before binary mode was read.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pika
from pika.spec import Basic

from chatroute.amqp import EVENT_CONTENT_TYPE
from chatroute.errors import InvalidEvent
from chatroute.intake import Incoming
from chatroute.store.outbox import Origin
from schemas.decisions import format_time
from schemas.events import MAX_EVENT_BYTES, parse_json

PREFIXES = ("cloudEvents:", "cloudEvents_")
STRUCTURED_MEDIA_TYPE = "application/cloudevents"
JSON_DATA = "application/json"
# Not attributes (the data is the body): such headers are left out of the translation.
DATA_MEMBERS = ("data", "data_base64")


def incoming(method: Basic.Deliver, properties: pika.BasicProperties, body: bytes) -> Incoming:
    """The message as the intake takes it, with how it was published (for a rejected copy)."""
    content_type = text(properties.content_type)
    origin = Origin(text(method.routing_key), content_type, user_id=text(properties.user_id))
    headers = properties.headers or {}
    if not _binary_mode(headers, content_type):
        return Incoming(body, content_type, origin=origin)
    structured, reason = to_structured(headers, content_type, body)
    binary = dataclasses.replace(origin, binary=True)
    return Incoming(structured, EVENT_CONTENT_TYPE, origin=binary, reason=reason)


def text(value: str | bytes | None) -> str | None:
    """An AMQP short string as text: pika hands over bytes when it is not UTF-8."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    return value


def _binary_mode(headers: Mapping[Any, Any], content_type: str | None) -> bool:
    structured = (content_type or "").lower().startswith(STRUCTURED_MEDIA_TYPE)
    return not structured and any(_attribute_name(key) == "specversion" for key in headers)


def to_structured(
    headers: Mapping[Any, Any], content_type: str | None, body: bytes
) -> tuple[bytes, str | None]:
    """The structured-mode body equivalent to a binary-mode message, and the first reason it
    cannot be an event (None: validation decides). The body holds all the message did, so a
    rejected copy loses nothing: text that is not UTF-8 escaped, data that is not JSON as
    ``data_base64`` (the JSON format's member for data that is not JSON)."""
    problems: list[str] = []
    document = _attributes(headers, problems)
    if content_type is not None:
        document["datacontenttype"] = content_type  # the binding's place for it
    document.update(_data(body, document.get("datacontenttype"), problems))
    return _dumps(document), f"binary mode: {problems[0]}" if problems else None


def _attributes(headers: Mapping[Any, Any], problems: list[str]) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    for key, value in headers.items():
        name = _attribute_name(key)
        if name is None or name in DATA_MEMBERS:
            continue
        converted = _value(name, value, problems)
        if attributes.setdefault(name, converted) != converted:
            problems.append(f"attribute {name!r} given twice, with different values")
    return attributes


def _attribute_name(key: Any) -> str | None:
    """The attribute a header carries, if any (a header name that is not UTF-8 carries none)."""
    if isinstance(key, str):
        for prefix in PREFIXES:
            if key.startswith(prefix):
                return key.removeprefix(prefix)
    return None


def _value(name: str, value: Any, problems: list[str]) -> Any:
    """An attribute's value as the JSON format writes it. Times may come as an AMQP timestamp,
    or, for ``time``, as milliseconds since 1970 (what the AMQP 1.0 timestamp is, and what the
    ``cloudevents`` SDK writes)."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            problems.append(f"attribute {name!r} is not UTF-8 text")
            return value.decode("utf-8", errors="backslashreplace")
    if isinstance(value, datetime):
        return format_time(value if value.tzinfo else value.replace(tzinfo=UTC))
    if name == "time" and isinstance(value, int) and not isinstance(value, bool):
        return _milliseconds(value, problems)
    if isinstance(value, str | int):  # bool is an int
        return value
    problems.append(f"attribute {name!r} is a {type(value).__name__}, not a CloudEvents type")
    return str(value)


def _milliseconds(value: int, problems: list[str]) -> Any:
    try:
        return format_time(datetime.fromtimestamp(value / 1000, UTC))
    except (OverflowError, ValueError, OSError):
        problems.append(f"attribute 'time' is not a timestamp ({value} ms)")
        return value


def _data(body: bytes, content_type: str | None, problems: list[str]) -> dict[str, Any]:
    """``data`` when the body is JSON the contract can take, else ``data_base64``."""
    if content_type is not None and content_type.split(";")[0].strip().lower() != JSON_DATA:
        problems.append(f"data content type {content_type!r} is not {JSON_DATA}")
    elif len(body) > MAX_EVENT_BYTES:  # not even parsed
        problems.append(f"event larger than 64 KiB ({len(body)} bytes of data)")
    else:
        try:
            return {"data": parse_json(body, "data")}
        except InvalidEvent as error:
            problems.append(error.reason)
    return {"data_base64": base64.b64encode(body).decode("ascii")}


def _dumps(document: dict[str, Any]) -> bytes:
    try:
        return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError:
        # A lone surrogate (an escape such as "\ud800" in the data) has no UTF-8: written as
        # an escape again, so that validation names the field.
        return json.dumps(document, separators=(",", ":")).encode()
