"""Hostile messages for the gateway (#6), as hypothesis strategies.

A batch mixes: valid events of two attacker tenants whose ids name conversations,
respondents, groups and rules that do not exist, or exist only in the victim tenant; the same
events mutated (a field missing or ill-typed, odd Unicode, U+0000, lone surrogates, numbers
past 32 bits, times out of range, unknown fields, deep nesting, over 64 KiB); resends of
earlier events, re-serialised, and different events under their ids, the victim's included;
bodies that are not UTF-8, not JSON or not an object; wrong content types; and, for the
broker, odd routing keys.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from hypothesis import strategies as st

from tests.builders import START, Events, rfc3339

VICTIM = "victim"
ATTACKERS = ("shop-1", "shop-2")
CONVERSATIONS = ("c1", "c2", "c3", "c9")
RESPONDENTS = ("a", "b", "z")
GROUPS = ("G", "H", "X")
RULES = ("all", "r2", "r9")
EVENT_CONTENT_TYPE = "application/cloudevents+json"
Event = dict[str, Any]


@dataclass(frozen=True)
class Message:
    """One message as a frontend (or anyone) publishes it to ``chat.events``."""

    body: bytes
    content_type: str | None = EVENT_CONTENT_TYPE  # as the gateway reads it
    routing_key: str = "conversation.started"
    kind: str = "valid"  # what the generator meant; the checks never read it
    # The content type as AMQP carries it, when it is not UTF-8 (pika hands it over as bytes)
    raw_content_type: bytes | None = None

    def __repr__(self) -> str:  # bodies reach 140 kB: a failure's report shows their start
        body = self.body if len(self.body) <= 300 else self.body[:300] + b"..."
        size = f"{len(self.body)} bytes"
        return f"Message({body!r} ({size}), {self.content_type!r}, {self.routing_key!r})"


def _victim_events() -> list[Event]:
    """The victim tenant's history: the fuzz must never change what it led to."""
    victim = Events(VICTIM)
    victim.rule("all", "G")
    victim.respondent("a", ["G"])
    victim.respondent("b", ["G"])
    for conversation in ("c1", "c2", "c3"):
        victim.start(conversation)
    victim.event("conversation.snoozed", conversation="c2", respondent="b")
    return victim.lines


VICTIM_EVENTS = _victim_events()

# ---------------------------------------------------------------- valid events

names = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=12)
conversation = st.sampled_from(CONVERSATIONS)
respondent = st.sampled_from(RESPONDENTS)
group = st.sampled_from(GROUPS)
rule = st.sampled_from(RULES)
seconds = st.integers(0, 7200)
times = seconds.map(lambda s: rfc3339(START + timedelta(seconds=s)))
condition = st.fixed_dictionaries(
    {
        "attribute": st.sampled_from(["url", "language"]),
        "op": st.sampled_from(["eq", "prefix", "contains"]),
        "value": st.sampled_from(["fr", "en", "https://"]),
    }
) | st.fixed_dictionaries(
    {
        "attribute": st.just("language"),
        "op": st.just("in"),
        "value": st.lists(st.sampled_from(["fr", "en"]), max_size=2),
    }
)
commission = st.fixed_dictionaries(
    {"mode": st.just("percent"), "rate": st.floats(0, 1)}
) | st.fixed_dictionaries({"mode": st.just("per_contact"), "amount": st.floats(0, 10)})
author = st.fixed_dictionaries({"author": st.just("visitor")}) | st.fixed_dictionaries(
    {"author": st.just("respondent"), "respondent": respondent}
)
target = st.fixed_dictionaries({"to_respondent": respondent}) | st.fixed_dictionaries(
    {"to_group": group}
)


def _with(base: dict[str, Any], extra: st.SearchStrategy[dict[str, Any]]) -> Any:
    return st.tuples(st.fixed_dictionaries(base), extra).map(lambda p: {**p[0], **p[1]})


DATA: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "respondent.updated": st.fixed_dictionaries(
        {
            "respondent": respondent,
            "groups": st.lists(group, max_size=3, unique=True),
            "slots": st.integers(0, 3),
        },
        optional={"name": names},
    ),
    "respondent.status": st.fixed_dictionaries(
        {"respondent": respondent, "status": st.sampled_from(["available", "unavailable"])}
    ),
    "rule.updated": st.fixed_dictionaries(
        {
            "rule": rule,
            "group": group,
            "priority": st.integers(-3, 3),
            "conditions": st.lists(condition, max_size=2),
        }
    ),
    "rule.deleted": st.fixed_dictionaries({"rule": rule}),
    "tenant.updated": st.fixed_dictionaries(
        {}, optional={"reassign_after_s": st.integers(0, 7200), "commission": commission}
    ),
    "conversation.started": st.fixed_dictionaries(
        {
            "conversation": conversation,
            "visitor": names,
            "attributes": st.dictionaries(
                st.sampled_from(["url", "language", "é"]), st.sampled_from(["fr", "https://x"])
            ),
        }
    ),
    "message.posted": _with({"conversation": conversation}, author),
    "visitor.presence": st.fixed_dictionaries(
        {"conversation": conversation, "online": st.booleans()}
    ),
    "conversation.transferred": _with(
        {"conversation": conversation, "respondent": respondent}, target
    ),
    "conversation.snoozed": st.fixed_dictionaries(
        {"conversation": conversation, "respondent": respondent},
        optional={"until": times, "keep": st.booleans()},
    ),
    "conversation.closed": st.fixed_dictionaries(
        {"conversation": conversation}, optional={"by": respondent}
    ),
    "conversation.rated": st.fixed_dictionaries(
        {"conversation": conversation, "score": st.integers(1, 5)}
    ),
    "conversation.sale": st.fixed_dictionaries(
        {"conversation": conversation, "amount": st.floats(0, 1000)},
        optional={"currency": st.just("EUR")},
    ),
}
TYPES = sorted(DATA)
# Hypothesis draws the same small numbers again and again: ids from them would mostly be
# repeats. Repeats and reused ids come from the "resent" and "reused" kinds instead.
fresh_ids = st.builds(lambda: uuid.uuid4().hex[:16])
# Ids are scoped to their tenant: the victim's ids are new ids in another tenant.
victim_ids = st.sampled_from([e["id"] for e in VICTIM_EVENTS])
ids = st.integers(0, 9).flatmap(lambda n: victim_ids if n == 5 else fresh_ids)


@st.composite
def valid_events(draw: st.DrawFn, tenants: st.SearchStrategy[str] | None = None) -> Event:
    """A valid event of an attacker tenant, with a new id (mostly: ids may collide)."""
    type_ = draw(st.sampled_from(TYPES))
    return {
        "specversion": "1.0",
        "id": draw(ids),
        "source": draw(st.just("widget/x") | names),
        "type": type_,
        "time": draw(times),
        "tenant": draw(tenants or st.sampled_from(ATTACKERS)),
        "data": draw(DATA[type_]),
    }


# ---------------------------------------------------------------- mutations

ODD: list[Any] = [
    "",
    "\x00",
    "c1\x00",
    "\ud800",
    "c\udfff",
    "\u202e",
    "\ufeff",
    "é" * 300,
    "x" * 201,
    "x" * 10_001,
    2**31,
    -(2**31) - 1,
    2**63,
    10**30,
    1.5,
    1.0,
    0,
    -1,
    True,
    False,
    None,
    [],
    {},
    "9999-12-31T23:59:59Z",
    "0001-01-01T00:00:00+01:00",
    "2026-11-22T10:00:00",
    "tomorrow",
    "NaN",
    "shop-1.#",
    "../victim",
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
# st.text() draws lone surrogates too (category Cs): the body escapes them
hostile_values = st.sampled_from(ODD) | json_values | st.integers(-(2**70), 2**70)
FIELDS = [
    "specversion", "id", "source", "type", "time", "tenant", "data", "conversation", "visitor",
    "respondent", "groups", "slots", "status", "rule", "group", "priority", "conditions",
    "attributes", "author", "online", "to_respondent", "to_group", "until", "keep", "score",
    "amount", "currency", "reassign_after_s", "commission", "name", "comment", "by",
]  # fmt: skip
ENVELOPE = ("specversion", "id", "source", "type", "time", "tenant", "data")


def _deep(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


@st.composite
def mutated_events(draw: st.DrawFn) -> Event:
    """A valid event with one thing wrong, or odd but allowed."""
    event = draw(valid_events())
    data = dict(event["data"])
    event["data"] = data
    field = draw(st.sampled_from(FIELDS))
    where = event if field in ENVELOPE else data
    how = draw(st.sampled_from(["drop", "retype", "retype", "extra", "deep", "oversize"]))
    if how == "drop":
        where.pop(field, None)
    elif how == "retype":
        where[field] = draw(hostile_values)
    elif how == "extra":
        where["x-" + field] = draw(json_values)
    elif how == "deep":
        data["nested"] = _deep(draw(st.integers(30, 120)))  # around MAX_DEPTH; deeper in garbage
    else:
        data["pad"] = "x" * draw(st.integers(65_000, 140_000))
    return event


# ---------------------------------------------------------------- bodies


@st.composite
def serialised(draw: st.DrawFn, event: Any) -> bytes:
    """``event`` as some frontend library would write it (or as no valid UTF-8)."""
    style = draw(st.sampled_from(["compact", "spaced", "indented", "unicode", "reordered"]))
    value = (
        dict(reversed(event.items())) if style == "reordered" and isinstance(event, dict) else event
    )
    text = json.dumps(
        value,
        separators=(",", ":") if style == "compact" else None,
        indent=2 if style == "indented" else None,
        ensure_ascii=style != "unicode",
    )
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate written raw: not UTF-8
        return text.encode("utf-8", "surrogatepass")


def _dumps(event: Any) -> bytes:
    return json.dumps(event).encode()


garbage = st.one_of(
    st.binary(max_size=200),
    json_values.map(_dumps),
    st.integers(10, 100_000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    st.integers(10, 100_000).map(lambda n: b"[" * n),
    valid_events().map(lambda e: json.dumps(e).encode("utf-16")),
    valid_events().map(lambda e: b"\xef\xbb\xbf" + _dumps(e)),
    valid_events().map(lambda e: _dumps(e)[:-1]),
    valid_events().map(lambda e: _dumps(e) + b" x"),
    valid_events().map(lambda e: _dumps(e).replace(b'"specversion"', b'"id": NaN, "specversion"')),
    st.integers(4_000, 30_000).map(lambda n: b'{"tenant":"shop-1","id":"n","x":' + b"1" * n + b"}"),
    st.sampled_from([b"", b" ", b"null", b"{}", b'{"tenant":"shop-1","id":"e"}', b"\x00"]),
)
content_types = st.sampled_from(
    [EVENT_CONTENT_TYPE] * 24
    + [None] * 3
    + [
        "application/json; charset=utf-8",
        "APPLICATION/CLOUDEVENTS+JSON",
        "text/plain",
        "",
        "application/xml",
        "application/cloudevents+json; charset=latin-1",
        "é/\u202e",
        "x" * 255,
        "x" * 300,
    ]
)
KINDS = ["valid"] * 6 + ["mutated"] * 4 + ["garbage"] * 2 + ["resent"] * 2 + ["reused"] * 2


@st.composite
def batches(draw: st.DrawFn, min_size: int = 1, max_size: int = 12) -> list[Message]:
    """One gateway batch of hostile messages; resends and reused ids refer to events sent
    earlier in the batch or to the victim's."""
    sent: list[Event] = []
    messages = []
    for _ in range(draw(st.integers(min_size, max_size))):
        kind = draw(st.sampled_from(KINDS))
        event: Any
        if kind in ("resent", "reused"):
            earlier = draw(st.sampled_from(sent + VICTIM_EVENTS))
            event = earlier if kind == "resent" else _reuse(draw, earlier)
        elif kind == "garbage":
            body = draw(garbage)
            messages.append(Message(body, draw(content_types), "x", kind))
            continue
        else:
            event = draw(valid_events() if kind == "valid" else mutated_events())
            sent.append(event)
        body = draw(serialised(event))
        messages.append(Message(body, draw(content_types), _routing_key(event), kind))
    return messages


def _reuse(draw: st.DrawFn, earlier: Event) -> Event:
    """Another event (valid, or not) under ``earlier``'s tenant and id."""
    other = draw(valid_events() | mutated_events())
    for key in ("tenant", "id"):  # a mutated event may lack them
        if key in earlier:
            other[key] = earlier[key]
        else:
            other.pop(key, None)
    return other


def _routing_key(event: Any) -> str:
    kind = event.get("type") if isinstance(event, dict) else None
    if not isinstance(kind, str):
        return "x"
    key = kind.encode("utf-8", "replace")  # an AMQP short string: at most 255 bytes
    return key.decode() if len(key) <= 255 else "x"


# ---------------------------------------------------------------- what only AMQP carries

routing_keys = st.sampled_from(["", "#", "*", "a.b.c.d", "..", "x" * 255, "é.ü", "chat.events"])
routing_keys |= st.text(st.characters(codec="utf-8"), max_size=60).filter(
    lambda key: len(key.encode()) <= 255
)
NOT_UTF8 = b"application/cloudevents+json\xff"


@st.composite
def amqp_message(draw: st.DrawFn, message: Message) -> Message:
    """``message`` with an odd routing key, or a content type that is not UTF-8, at times."""
    key = draw(routing_keys | st.just(message.routing_key))
    content_type = message.content_type
    if content_type is not None and len(content_type.encode()) > 255:  # an AMQP short string
        content_type = content_type.encode()[:255].decode("utf-8", "ignore")
    if draw(st.integers(0, 9)) == 0:
        seen = NOT_UTF8.decode("utf-8", "backslashreplace")
        return Message(message.body, seen, key, message.kind, NOT_UTF8)
    return Message(message.body, content_type, key, message.kind)


@st.composite
def amqp_batches(draw: st.DrawFn, min_size: int, max_size: int) -> list[Message]:
    """A run of hostile messages as publishers send them to ``chat.events``."""
    batch = draw(batches(min_size, max_size))
    return [draw(amqp_message(message)) for message in batch]
