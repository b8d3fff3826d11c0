"""Tenants authenticated at the door: an event that came through the broker is taken only when
its publisher (the AMQP ``user_id`` RabbitMQ checked) may publish for its tenant, once any
publisher is mapped; with none mapped, every event is taken. On SQLite and PostgreSQL, with
several tenants and publishers at once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from chatroute import apply, bootstrap, intake
from chatroute.settings import Settings
from chatroute.store import publishers, tables
from chatroute.store.outbox import Origin
from tests.builders import Events


@pytest.fixture
def rt(db_url: str) -> Iterator[bootstrap.Runtime]:
    runtime = bootstrap.build(Settings(database_url=db_url), migrate=True)
    yield runtime
    runtime.engine.dispose()


def sent(publisher: str | None, *events: dict[str, Any]) -> list[intake.Incoming]:
    """``events`` as the gateway hands them in, published by ``publisher``."""
    origin = Origin("conversation.started", "application/cloudevents+json", user_id=publisher)
    return [intake.Incoming(json.dumps(e).encode(), origin.content_type, origin=origin)
            for e in events]  # fmt: skip


def shop(tenant: str) -> Events:
    events = Events(tenant)
    events.rule("all", "G")
    events.respondent("a", ["G"], slots=2)
    return events


def take(rt: bootstrap.Runtime, messages: list[intake.Incoming]) -> None:
    for tenant in intake.ingest(rt, messages):
        while apply.apply_tenant(rt, tenant):
            pass


def outbox(rt: bootstrap.Runtime) -> list[dict[str, Any]]:
    o = tables.outbox.c
    with rt.engine.connect() as connection:
        rows = connection.execute(select(o.body, o.headers).where(o.exchange == "chat.decisions"))
        return [json.loads(bytes(body)) for body, _ in rows]


def rows_of(rt: bootstrap.Runtime, table: tables.Table, tenant: str) -> int:
    with rt.engine.connect() as connection:
        query = select(func.count()).select_from(table).where(table.c.tenant == tenant)
        return int(connection.scalar(query) or 0)


def test_without_a_mapping_every_event_is_taken_whoever_publishes_it(
    rt: bootstrap.Runtime,
) -> None:
    one, two = shop("shop-1"), shop("shop-2")
    one.start("c1")
    two.start("c1")
    take(rt, sent("frontend-a", *one.lines) + sent(None, *two.lines))
    assigned = {(d["tenant"], d["type"]) for d in outbox(rt)}
    assert assigned == {("shop-1", "conversation.assigned"), ("shop-2", "conversation.assigned")}


def test_a_publisher_is_refused_for_a_tenant_it_is_not_mapped_to_and_changes_nothing(
    rt: bootstrap.Runtime,
) -> None:
    # Given frontend-a may publish for shop-1 and shop-3, frontend-b for shop-2
    publishers.allow(rt.engine, "frontend-a", ["shop-1", "shop-3"])
    publishers.allow(rt.engine, "frontend-b", ["shop-2"])
    one, two = shop("shop-1"), shop("shop-2")
    one.start("c1")
    two.start("c1")
    intruder = list(two.lines)
    # When frontend-a publishes shop-1's events and shop-2's, in one batch, with an event
    # without any publisher
    nameless = shop("shop-3").lines
    take(rt, sent("frontend-a", *one.lines, *intruder) + sent(None, *nameless))
    # Then shop-1's are applied, shop-2's and the nameless ones refused, each with its reason
    decisions = outbox(rt)
    assert [d["type"] for d in decisions if d["tenant"] == "shop-1"] == ["conversation.assigned"]
    refused = [d for d in decisions if d["tenant"] != "shop-1"]
    assert {d["type"] for d in refused} == {"event.rejected"}
    assert [d["data"]["event_id"] for d in refused] == [e["id"] for e in intruder + nameless]
    assert {d["data"]["reason"] for d in refused if d["tenant"] == "shop-2"} == {
        "publisher 'frontend-a' may not publish events for tenant 'shop-2'"
    }
    assert {d["data"]["reason"].split(":")[0] for d in refused if d["tenant"] == "shop-3"} == {
        "no publisher"
    }
    # under a cause of their own: no decision of the tenant's own events can share their ids
    assert all(d["causationid"].startswith("publisher:") for d in refused)
    # And nothing of shop-2 or shop-3 changed: no tenant, no inbox row, no state
    for tenant in ("shop-2", "shop-3"):
        for table in (tables.tenants, tables.inbox, tables.respondents, tables.conversations):
            assert rows_of(rt, table, tenant) == 0, (tenant, table.name)
    # And the kept copy names the publisher
    o = tables.outbox.c
    with rt.engine.connect() as connection:
        headers = connection.scalars(select(o.headers).where(o.exchange == "")).all()
    assert {h.get("x-original-user-id") for h in headers} == {"frontend-a", None}

    # When the same messages come again (a redelivery), nothing new is decided
    before = len(outbox(rt))
    take(rt, sent("frontend-a", *intruder))
    assert len(outbox(rt)) == before
    # And an invalid body from the intruder is refused for its publisher too, not for its
    # content: a rejection for its content would take its id
    invalid = {**intruder[0], "id": "taken-if-recorded", "data": {"rule": "all"}}
    take(rt, sent("frontend-a", invalid))
    assert outbox(rt)[-1]["data"]["reason"] == (
        "publisher 'frontend-a' may not publish events for tenant 'shop-2'"
    )
    assert rows_of(rt, tables.inbox, "shop-2") == 0
    # And the ids the intruder used stay free: shop-2's own publisher sends its own events
    # under them (other bodies), and they are applied
    own = shop("shop-2")
    own.lines = [{**e, "source": "widget/own"} for e in [*intruder, invalid]]
    own.lines[-1] = {**own.lines[-1], "data": intruder[0]["data"]}
    take(rt, sent("frontend-b", *own.lines))
    assert "conversation.assigned" in [d["type"] for d in outbox(rt) if d["tenant"] == "shop-2"]
    assert rows_of(rt, tables.inbox, "shop-2") == len(own.lines)


def test_a_replay_takes_lines_published_by_nobody(rt: bootstrap.Runtime) -> None:
    publishers.allow(rt.engine, "frontend-a", ["shop-1"])
    two = shop("shop-2")
    two.start("c1")
    take(rt, [intake.Incoming(json.dumps(e).encode()) for e in two.lines])
    assert [d["type"] for d in outbox(rt)] == ["conversation.assigned"]


def test_revoking_takes_effect_with_the_next_batch(rt: bootstrap.Runtime) -> None:
    publishers.allow(rt.engine, "frontend-a", ["shop-1", "shop-2"])
    one = shop("shop-1")
    take(rt, sent("frontend-a", *one.lines))
    assert publishers.revoke(rt.engine, "frontend-a", ["shop-1"]) == 1
    one.lines = []
    one.start("c1")
    take(rt, sent("frontend-a", *one.lines))
    assert outbox(rt)[-1]["data"]["reason"] == (
        "publisher 'frontend-a' may not publish events for tenant 'shop-1'"
    )
    assert publishers.listing(rt.engine) == [("frontend-a", "shop-2")]
    assert publishers.revoke(rt.engine, "frontend-a") == 1
    assert publishers.listing(rt.engine) == []
