"""Nudges coalesced through Redis: one on its way per tenant, and every nudge sent whenever
Redis cannot say (absent, down, restarted empty)."""

from __future__ import annotations

import json
import uuid

import pytest
import redis
from sqlalchemy import select

from chatroute import apply, bootstrap, intake, nudges
from chatroute.settings import Settings
from chatroute.store import tables
from tests.builders import Events
from tests.conftest import require_service

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def tenant() -> str:
    return f"shop-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def claims() -> nudges.RedisClaims:
    require_service("Redis")
    return nudges.RedisClaims(REDIS_URL)


def test_one_nudge_is_on_its_way_until_a_worker_takes_it(
    claims: nudges.RedisClaims, tenant: str
) -> None:
    sent: list[str] = []
    nudge = nudges.coalesced(claims, "routing", sent.append)
    # Given a nudge sent for the tenant, when more batches arrive before a worker takes it
    for _ in range(5):
        nudge(tenant)
    nudge("other-" + tenant)
    nudges.coalesced(claims, "stats", sent.append)(tenant)
    # Then one nudge per tenant and queue was sent
    assert sent == [tenant, "other-" + tenant, tenant]
    # When a worker takes it, the next batch sends a new one
    claims.release("routing", tenant)
    nudge(tenant)
    assert sent == [tenant, "other-" + tenant, tenant, tenant]
    # And a claim left behind expires
    ttl = claims.client.pttl(nudges.KEY.format(queue="routing", tenant=tenant))
    assert 0 < ttl <= nudges.CLAIM_TTL_MS


def test_a_nudge_that_could_not_be_sent_leaves_no_claim(
    claims: nudges.RedisClaims, tenant: str
) -> None:
    def broker_down(_: str) -> None:
        raise ConnectionError("broker away")

    with pytest.raises(ConnectionError):
        nudges.coalesced(claims, "routing", broker_down)(tenant)
    sent: list[str] = []
    nudges.coalesced(claims, "routing", sent.append)(tenant)
    assert sent == [tenant]


def test_a_restarted_redis_forgets_claims_and_nudges_are_sent_again(
    claims: nudges.RedisClaims, tenant: str
) -> None:
    sent: list[str] = []
    nudge = nudges.coalesced(claims, "routing", sent.append)
    nudge(tenant)
    claims.client.delete(
        nudges.KEY.format(queue="routing", tenant=tenant)
    )  # what a restart does to the key
    nudge(tenant)
    assert sent == [tenant, tenant]


def test_without_redis_every_nudge_is_sent(tenant: str, capsys: pytest.CaptureFixture[str]) -> None:
    sent: list[str] = []
    down = nudges.RedisClaims("redis://127.0.0.1:1/0")  # nothing listens on port 1
    for claims in (nudges.NoClaims(), down, nudges.claims(None)):
        nudge = nudges.coalesced(claims, "routing", sent.append)
        nudge(tenant)
        nudge(tenant)
        claims.release("routing", tenant)
    assert sent == [tenant] * 6
    assert isinstance(down.client, redis.Redis)
    logged = capsys.readouterr()
    assert (logged.out + logged.err).count("redis_unavailable_nudging_anyway") == 1  # not twice


def test_a_worker_holds_the_claim_while_it_applies_and_leaves_no_event_behind(
    claims: nudges.RedisClaims, tenant: str, db_url: str
) -> None:
    rt = bootstrap.build(Settings(database_url=db_url), migrate=True)
    sent: list[str] = []
    nudge = nudges.coalesced(claims, "routing", sent.append)
    shop = Events(tenant)

    def arrive() -> None:
        """An event committed by the gateway, then its nudge (unless one is on its way)."""
        event = shop.event("respondent.updated", respondent="r", groups=["G"], slots=1)
        for tenant_with_events in intake.ingest(rt, [intake.Incoming(json.dumps(event).encode())]):
            nudge(tenant_with_events)

    def idle() -> None:
        # An event committed in the worker's last moment before it lets go of the claim:
        # its nudge is not sent, the worker's own look after the release must find it
        if len(sent) == 1 and not arrived_late:
            arrived_late.append(True)
            arrive()
            assert sent == [tenant]
        claims.release("routing", tenant)

    arrived_late: list[bool] = []
    try:
        arrive()
        assert sent == [tenant]
        # When a worker applies the tenant with the routing actor's release
        tries = 0
        while apply.apply_tenant(rt, tenant, idle=idle):
            tries += 1
        # Then the late event was applied by the same worker: nothing waits, no nudge needed
        assert tries == 1 and sent == [tenant]
        with rt.engine.connect() as connection:
            states = connection.scalars(select(tables.inbox.c.state)).all()
        assert states == ["applied", "applied"]
        # And the claim is free: the next event sends a nudge of its own
        arrive()
        assert sent == [tenant, tenant]
    finally:
        rt.engine.dispose()
