"""Stats actor: folds a tenant's changed conversations into the stored figures.

It runs on its own queue, apart from routing: a slow fold never delays an assignment, and a
worker process can be given to statistics alone (``chatroute worker --queues chatroute.stats``).
"""

from __future__ import annotations

from workers import broker

broker.ensure()

import dramatiq  # noqa: E402  (the broker must exist before any actor is defined)

from chatroute import bootstrap, stats  # noqa: E402


@dramatiq.actor(
    queue_name=broker.STATS_QUEUE,
    # Below routing (lower numbers go first) where a worker serves both queues: counting can
    # wait a moment, a woken conversation cannot.
    priority=100,
    max_retries=20,
    min_backoff=500,
    max_backoff=broker.MAX_BACKOFF_MS,
    time_limit=broker.ACTOR_TIME_LIMIT_MS,
)
def fold_tenant(tenant: str) -> None:
    """A nudge: "tenant has conversations to count". Safe to run twice or concurrently."""
    rt = bootstrap.runtime()
    rt.claims.release(broker.STATS_QUEUE, tenant)  # before reading what changed
    stats.fold_tenant(rt, tenant)
