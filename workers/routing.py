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
    """A nudge: "tenant has events or timers to apply". Safe to run twice or concurrently.

    The tenant's nudge claim (``chatroute.nudges``) stays taken while this worker applies:
    events committed meanwhile send no nudge that would only find the tenant's lock taken.
    It is released once a transaction leaves nothing to apply at once, before the look for
    events that arrived meanwhile: whatever commits after that sends a nudge of its own."""
    rt = bootstrap.runtime()

    def idle() -> None:
        rt.claims.release(broker.ROUTING_QUEUE, tenant)

    while apply.apply_tenant(rt, tenant, final=final, idle=idle):
        pass
