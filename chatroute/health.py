"""Liveness and readiness of each process kind, for compose's healthchecks and ops.

A process is live when the database and the broker answer: restart it when it is not. It is
ready when, beyond that, the work it owns is not late by more than ``LATE_S``: the gateway
(which relays the outbox) by the oldest decision not sent, a routing worker by the oldest
event not applied, the sweeper by its most overdue timer, the stats worker by the oldest
change to a conversation not counted yet. Late work is for ops to look at; restarting the
process would not help it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from chatroute.clock import SystemClock
from chatroute.settings import Settings
from chatroute.store import reads

# Longer than the unknown-conversation retry window (30 s), so a waiting event is not "late".
LATE_S = 60.0
# Each role, and the figure of lateness it is judged by.
LATE_WORK = {
    "gateway": "oldest_unsent_s",
    "worker": "oldest_unapplied_s",
    "sweeper": "timer_lag_s",
    "stats": "stats_lag_s",
}
ROLES = tuple(LATE_WORK)


def check(settings: Settings, role: str, now: datetime | None = None) -> dict[str, Any]:
    """The figures of ``role``'s health, ``live`` and ``ready`` (True when all is well)."""
    now = now or SystemClock().now()
    report: dict[str, Any] = {"broker": broker_answers(settings.amqp_url)}
    if settings.redis_url is not None:
        # Reported, not required: nothing in the engine depends on Redis yet.
        report["redis"] = redis_answers(settings.redis_url)
    report |= reads.database_figures(settings.database_url, now)
    report["live"] = bool(report["broker"] and report["database"])
    report["ready"] = report["live"] and report.get(LATE_WORK[role], 0.0) <= LATE_S
    return report


def broker_answers(url: str | None) -> bool:
    if url is None:
        return True  # the in-process broker
    from chatroute.amqp import connect

    try:
        connect(url).close()
        return True
    except Exception:
        return False


def redis_answers(url: str) -> bool:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False
