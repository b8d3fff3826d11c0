"""The intake never waits for a routing transaction (PostgreSQL): a tenant applied under its
row lock must not hold back the gateway, nor so any tenant's events behind it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import select, update

from chatroute import bootstrap, intake
from chatroute.settings import Settings
from chatroute.store import tables
from tests.builders import Events

# A lock wait fails the intake after this long instead of hanging the test.
LOCK_TIMEOUT_MS = 2000


@pytest.fixture
def rt(pg_url: str) -> Iterator[bootstrap.Runtime]:
    url = f"{pg_url}?options=-c%20lock_timeout%3D{LOCK_TIMEOUT_MS}"
    runtime = bootstrap.build(Settings(database_url=url), migrate=True)
    yield runtime
    runtime.engine.dispose()


def incoming(*events: dict) -> list[intake.Incoming]:
    return [intake.Incoming(json.dumps(e).encode()) for e in events]


def start(shop: Events, conversation: str) -> dict:
    return shop.event("conversation.started", conversation=conversation, visitor="v")


def test_events_are_taken_in_while_a_routing_transaction_holds_their_tenant(
    rt: bootstrap.Runtime,
) -> None:
    # Given hot's row locked and changed by a routing transaction that has not committed
    hot, cold = Events("hot"), Events("cold")
    intake.ingest(rt, incoming(start(hot, "c1")))
    t = tables.tenants.c
    with rt.engine.connect() as routing:
        routing.execute(select(t.tenant).where(t.tenant == "hot").with_for_update())
        routing.execute(
            update(tables.tenants)
            .where(t.tenant == "hot")
            .values(stats_counter=t.stats_counter + 1)
        )
        # When events of hot and of a new tenant arrive
        started = time.monotonic()
        nudged = intake.ingest(rt, incoming(start(hot, "c2"), start(cold, "c1")))
        took = time.monotonic() - started
        routing.rollback()
    # Then both are recorded at once, for their tenants to be nudged
    assert nudged == {"hot", "cold"}
    assert took < LOCK_TIMEOUT_MS / 1000
