"""Liveness and readiness of each process kind, for compose's healthchecks and ops.

Every kind needs the database and the broker to answer. Beyond that each kind is judged by
the work it owns falling behind: the sweeper by its timers' lateness, the gateway (which
relays the outbox) by the oldest decision not sent, a worker by the oldest event not applied.
Work late by more than ``LATE_S`` makes the check fail, with the figures in its output.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select, text

from chatroute.clock import SystemClock
from chatroute.domain.model import TimerState
from chatroute.settings import Settings
from chatroute.store import db, inbox, tables

# Longer than the unknown-conversation retry window (30 s), so a waiting event is not "late".
LATE_S = 60.0


def check(settings: Settings, role: str, now: datetime | None = None) -> dict[str, Any]:
    """The figures of ``role``'s health, and ``ready`` (True when all is well)."""
    now = now or SystemClock().now()
    report: dict[str, Any] = {"broker": broker_answers(settings.amqp_url)}
    if settings.redis_url is not None:
        # Reported, not required: nothing in the engine depends on Redis yet.
        report["redis"] = redis_answers(settings.redis_url)
    engine = db.make_engine(settings.database_url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            report["database"] = True
            report |= lateness(connection, now)
    except Exception as error:  # any failure to answer is the finding
        report["database"] = False
        report["database_error"] = type(error).__name__
    finally:
        engine.dispose()
    late_key = {"gateway": "oldest_unsent_s", "worker": "oldest_unapplied_s"}.get(
        role, "timer_lag_s"
    )
    report["ready"] = bool(
        report["broker"] and report["database"] and report.get(late_key, 0.0) <= LATE_S
    )
    return report


def lateness(connection: Connection, now: datetime) -> dict[str, float]:
    """How late each kind of work is, in seconds, and how many decisions wait to be sent."""
    t, o, i = tables.timers.c, tables.outbox.c, tables.inbox.c
    due = connection.scalar(select(func.min(t.due)).where(t.state == TimerState.ARMED))
    unsent = connection.scalar(select(func.min(o.created_at)).where(o.sent_at.is_(None)))
    unapplied = connection.scalar(select(func.min(i.received_at)).where(i.state == inbox.NEW))
    backlog = connection.scalar(select(func.count()).where(o.sent_at.is_(None)))
    return {
        "timer_lag_s": _seconds_since(due, now),
        "oldest_unsent_s": _seconds_since(unsent, now),
        "oldest_unapplied_s": _seconds_since(unapplied, now),
        "outbox_backlog": float(backlog or 0),
    }


def _seconds_since(moment: datetime | None, now: datetime) -> float:
    """How long ago ``moment`` was (0 when it is in the future or there is none)."""
    return 0.0 if moment is None else max(0.0, (now - moment).total_seconds())


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
