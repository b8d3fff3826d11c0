"""Hostile input (#6): the gateway's intake (``service.ingest``) under generated garbage.

Whatever comes in (bytes that are not UTF-8, JSON of the wrong shape, wrong types, deep
nesting, bodies over 64 KiB, odd Unicode, wrong content types, another tenant's ids, ids
replayed with other bodies), intake never raises, every message is accounted for (recorded
as accepted, or rejected with a precise reason, or a repeat of an id already recorded), and
applying the accepted ones never touches a tenant they do not name.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from chatroute import bootstrap, service
from chatroute.settings import Settings
from chatroute.store import tables
from schemas.events import best_effort_identity, parse_event
from tests.builders import Events

TYPES = [
    "conversation.started",
    "message.posted",
    "conversation.transferred",
    "conversation.snoozed",
    "conversation.closed",
    "conversation.rated",
    "conversation.sale",
    "respondent.updated",
    "respondent.status",
    "rule.updated",
    "tenant.updated",
    "no.such.type",
]
ODD = ["", "\u0000", "\u202e", "é" * 300, "\U0001d518\U0001d52b", "a\nb", "../../x", "shop-1.#"]
odd_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40
) | st.sampled_from(ODD)
json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | odd_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(odd_text, inner, max_size=4),
    max_leaves=12,
)
ids = st.sampled_from(["e1", "e2", "e3"]) | odd_text
tenants = st.sampled_from(["shop-1", "shop-2", "victim"]) | odd_text
data = st.fixed_dictionaries(
    {},
    optional={
        "conversation": st.sampled_from(["c1", "c2"]) | json_value,
        "visitor": odd_text,
        "respondent": st.sampled_from(["a", "z"]) | json_value,
        "author": st.sampled_from(["visitor", "respondent", "bot"]),
        "attributes": st.dictionaries(odd_text, odd_text, max_size=3) | json_value,
        "score": st.integers(-5, 10) | json_value,
        "amount": st.floats(allow_nan=False) | json_value,
        "groups": st.lists(odd_text, max_size=3) | json_value,
        "slots": st.integers(-3, 5) | json_value,
        "status": st.sampled_from(["available", "unavailable", "gone"]),
        "to_respondent": odd_text,
        "to_group": odd_text,
        "until": st.sampled_from(["2026-11-22T10:00:00Z", "tomorrow", "2026-11-22T10:00:00"]),
        "rule": odd_text,
        "group": odd_text,
        "priority": st.integers() | json_value,
        "conditions": json_value,
    },
)
envelope = st.fixed_dictionaries(
    {
        "specversion": st.sampled_from(["1.0", "1.0", "1.0", "0.3"]),
        "id": ids,
        "tenant": tenants,
        "data": data,
        "type": st.sampled_from(TYPES),
        "source": st.just("widget/x") | odd_text,
        "time": st.sampled_from(["2026-11-22T10:00:00Z", "2026-11-22T10:00:00+02:00", "yesterday"]),
    },
    optional={"extra": json_value},
)


def _deep(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


bodies = st.one_of(
    envelope.map(lambda e: json.dumps(e).encode()),
    envelope.map(lambda e: json.dumps(e, ensure_ascii=False).encode()),
    st.binary(max_size=200),
    json_value.map(lambda v: json.dumps(v).encode()),
    st.integers(10, 100_000).map(_deep),
    st.just(
        json.dumps(
            {"specversion": "1.0", "id": "big", "tenant": "shop-1", "data": {"x": "y" * 70_000}}
        ).encode()
    ),
)
content_types = st.sampled_from(
    [
        None,
        "application/cloudevents+json",
        "application/json; charset=utf-8",
        "text/plain",
        "",
        "x" * 300,
    ]
)
messages = st.lists(st.tuples(bodies, content_types), min_size=1, max_size=12)


@pytest.fixture(scope="module")
def rt(tmp_path_factory: pytest.TempPathFactory) -> bootstrap.Runtime:
    folder: Path = tmp_path_factory.mktemp("fuzz")
    runtime = bootstrap.build(Settings(database_url=f"sqlite:///{folder}/fuzz.db"), migrate=True)
    victim = Events("victim")
    victim.rule("all", "G")
    victim.respondent("a", ["G"])
    victim.start("c1")
    service.ingest(runtime, [service.Incoming(json.dumps(e).encode()) for e in victim.lines])
    while service.apply_tenant(runtime, "victim"):
        pass
    return runtime


def snapshot(rt: bootstrap.Runtime, tenant: str) -> dict[str, Any]:
    """Everything stored of ``tenant``'s state (not its inbox: new garbage is recorded there)."""
    with rt.engine.connect() as connection:
        return {
            table.name: sorted(
                map(repr, connection.execute(select(table).where(table.c.tenant == tenant)))
            )
            for table in (tables.respondents, tables.conversations, tables.contacts, tables.rules)
        }


TRIED: Counter[str] = Counter()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=messages)
def test_intake_never_raises_and_accounts_for_every_message(
    rt: bootstrap.Runtime, batch: list[tuple[bytes, str | None]]
) -> None:
    victim_before = snapshot(rt, "victim")
    incoming = [service.Incoming(body, content_type) for body, content_type in batch]
    touched = service.ingest(rt, incoming)
    for tenant in touched - {"victim"}:
        while service.apply_tenant(rt, tenant):
            pass
    for body, content_type in batch:
        assert accounted(rt, body), body[:200]
        TRIED[_kind(body, content_type)] += 1
    if "victim" not in touched:
        assert snapshot(rt, "victim") == victim_before


def accounted(rt: bootstrap.Runtime, body: bytes) -> bool:
    """Recorded in the inbox, kept in ``chat.events.rejected``, or a repeat of a known id."""
    i, o = tables.inbox.c, tables.outbox.c
    tenant, event_id, _ = best_effort_identity(body)
    with rt.engine.connect() as connection:
        text = body.decode("utf-8", errors="replace")
        if connection.scalar(select(func.count()).where(i.body == text)):
            return True
        if connection.scalar(select(func.count()).where(o.exchange == "", o.body == body)):
            return True
        known = select(func.count()).where(i.tenant == str(tenant), i.event_id == str(event_id))
        return bool(connection.scalar(known))


def _kind(body: bytes, content_type: str | None) -> str:
    try:
        parse_event(body)
    except Exception as error:
        return "invalid: " + str(error).split(":")[0].split(" (")[0][:40]
    return "valid event" if content_type in (None, "application/cloudevents+json") else "wrong type"


def test_every_rejection_names_its_reason(rt: bootstrap.Runtime) -> None:
    c = tables.inbox.c
    with rt.engine.connect() as connection:
        reasons = connection.scalars(select(c.reason).where(c.state == "rejected")).all()
    assert all(isinstance(r, str) and len(r) > 5 for r in reasons)
    print("fuzz: inputs tried by outcome:", dict(TRIED.most_common()))
