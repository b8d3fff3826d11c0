"""Which tenants each frontend's RabbitMQ user may publish events for.

RabbitMQ checks a message's ``user_id`` property against the user of the connection that
published it, so the property names the publisher for certain. The intake
(``chatroute.intake``) takes an event that came through the broker only when its publisher
may publish for its tenant. A deployment with no mapping at all takes every event, as one
frontend serving one or many tenants of its own expects; ``chatroute access`` manages it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, delete, exists, literal, select

from chatroute.store import tables
from chatroute.store.inbox import insert_ignoring_duplicates

_P = tables.publishers.c


@dataclass(frozen=True)
class Publishers:
    """The mapping as far as a batch of messages needs it: each of its publishers' tenants."""

    tenants_of: dict[str, frozenset[str]]

    def may(self, publisher: str | None, tenant: str) -> bool:
        return publisher is not None and tenant in self.tenants_of.get(publisher, frozenset())


def of(connection: Connection, publishers: Collection[str]) -> Publishers | None:
    """The tenants of ``publishers``, or None when no publisher is mapped at all (every
    event is taken). One statement: a batch's look costs one round trip."""
    mapped = select(_P.publisher, _P.tenant).where(_P.publisher.in_(sorted(publishers)))
    # A row of NULLs says the mapping is not empty, whoever this batch's publishers are.
    anyone = select(literal(None), literal(None)).where(exists(select(_P.publisher)))
    tenants_of: dict[str, set[str]] = {}
    mapping_exists = False
    for publisher, tenant in connection.execute(mapped.union_all(anyone)):
        mapping_exists = True
        if publisher is not None:
            tenants_of.setdefault(publisher, set()).add(tenant)
    if not mapping_exists:
        return None
    return Publishers({p: frozenset(tenants) for p, tenants in tenants_of.items()})


def allow(engine: Engine, publisher: str, tenants: Collection[str]) -> int:
    """Let ``publisher`` publish for ``tenants``; returns how many pairs were new."""
    with engine.begin() as connection:
        held = set(connection.scalars(select(_P.tenant).where(_P.publisher == publisher)))
        rows = [{"publisher": publisher, "tenant": t} for t in sorted(set(tenants) - held)]
        insert_ignoring_duplicates(connection, tables.publishers, rows)
    return len(rows)


def revoke(engine: Engine, publisher: str, tenants: Collection[str] | None = None) -> int:
    """Take back ``publisher``'s right to publish for ``tenants`` (None: for every tenant);
    returns how many pairs were removed."""
    statement = delete(tables.publishers).where(_P.publisher == publisher)
    if tenants is not None:
        statement = statement.where(_P.tenant.in_(sorted(set(tenants))))
    with engine.begin() as connection:
        return max(connection.execute(statement).rowcount, 0)


def listing(engine: Engine) -> list[tuple[str, str]]:
    """Every (publisher, tenant) pair, sorted."""
    with engine.connect() as connection:
        query = select(_P.publisher, _P.tenant).order_by(_P.publisher, _P.tenant)
        return [(publisher, tenant) for publisher, tenant in connection.execute(query)]
