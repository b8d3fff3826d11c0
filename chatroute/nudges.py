"""Nudges to the workers, coalesced through Redis: one on its way per tenant and queue.

A nudge says "this tenant has events to apply" (or conversations to count). While events
arrive faster than a worker applies them, the gateway would send one per batch it takes in
(every few milliseconds), most finding the tenant's lock taken; while workers are down, the
sweeper would add one per sweep, without end. A key in Redis marks a nudge on its way, or a
worker applying the tenant: another is sent only once that worker has removed the key, which
it does when a transaction left nothing to apply at once, just before it looks for events
that arrived meanwhile (``apply.apply_tenant``'s ``idle``). So a busy tenant costs one nudge
per busy spell, not one per batch the gateway takes in, and an event committed before the
removal is found by that look, one committed after it sends a nudge.

Nothing depends on Redis for being right, only for sending fewer messages: without it (not
configured, down, or restarted empty) every nudge is sent, and a key whose nudge no worker
took (dead-lettered after its retries) expires after ``CLAIM_TTL_MS``, after which the
sweeper's next nudge for the waiting events goes out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import redis

from chatroute import logs

log = logs.get("chatroute.nudges")

KEY = "chatroute:nudge:{queue}:{tenant}"  # every Redis key of the engine
CLAIM_TTL_MS = 10_000
# Redis answers in well under a millisecond; waiting longer for it costs more than a nudge.
TIMEOUT_S = 0.25
WARN_EVERY_S = 10.0


class Claims(Protocol):
    def claim(self, queue: str, tenant: str) -> bool:
        """True when no nudge for ``tenant`` is on its way on ``queue``: the caller sends one."""
        ...

    def release(self, queue: str, tenant: str) -> None:
        """The next event needs a nudge of its own: a worker took the stats nudge, or the
        routing worker found nothing more to apply at once."""
        ...


class NoClaims:
    """Without Redis (the embedded mode, or none configured): every nudge is sent."""

    def claim(self, queue: str, tenant: str) -> bool:
        return True

    def release(self, queue: str, tenant: str) -> None:
        return None


class RedisClaims:
    """Claims as keys in Redis; any trouble with Redis reads as "send the nudge"."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(
            url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S
        )
        self._warned = 0.0

    def claim(self, queue: str, tenant: str) -> bool:
        key = KEY.format(queue=queue, tenant=tenant)
        try:
            return bool(self.client.set(key, 1, nx=True, px=CLAIM_TTL_MS))
        except redis.RedisError as error:
            self._warn(error)
            return True

    def release(self, queue: str, tenant: str) -> None:
        try:
            self.client.delete(KEY.format(queue=queue, tenant=tenant))
        except redis.RedisError as error:
            self._warn(error)

    def _warn(self, error: redis.RedisError) -> None:
        # Once in a while, not once a nudge: an outage would flood the log.
        if time.monotonic() - self._warned >= WARN_EVERY_S:
            self._warned = time.monotonic()
            log.warning("redis_unavailable_nudging_anyway", error=type(error).__name__)


def claims(redis_url: str | None) -> Claims:
    return NoClaims() if redis_url is None else RedisClaims(redis_url)


def coalesced(claims: Claims, queue: str, send: Callable[[str], object]) -> Callable[[str], None]:
    """``send`` a tenant's nudge on ``queue`` unless one is on its way already."""

    def nudge(tenant: str) -> None:
        if not claims.claim(queue, tenant):
            return
        try:
            send(tenant)
        except Exception:
            claims.release(queue, tenant)  # not sent: the next one must go
            raise

    return nudge
