"""Routing actor: applies a tenant's events, in arrival order, under the tenant's lock."""

from __future__ import annotations

from workers import broker

broker.ensure()

import dramatiq  # noqa: E402  (the broker must exist before any actor is defined)

from chatroute import apply, bootstrap  # noqa: E402


@dramatiq.actor(
    queue_name=broker.ROUTING_QUEUE,
    max_retries=20,
    min_backoff=200,
    max_backoff=broker.MAX_BACKOFF_MS,
    time_limit=broker.ACTOR_TIME_LIMIT_MS,
)
def apply_tenant(tenant: str, final: bool = False) -> None:
    """A nudge: "tenant has events or timers to apply". Safe to run twice or concurrently."""
    rt = bootstrap.runtime()
    # Before reading: an event committed from now on sends a nudge of its own.
    rt.claims.release(broker.ROUTING_QUEUE, tenant)
    while apply.apply_tenant(rt, tenant, final=final):
        pass
