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

from sqlalchemy import Connection, func, select, text

from chatroute.clock import SystemClock
from chatroute.domain.model import TimerState
from chatroute.settings import Settings
from chatroute.store import db, inbox, tables

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
    report |= _database_figures(settings.database_url, now)
    report["live"] = bool(report["broker"] and report["database"])
    report["ready"] = report["live"] and report.get(LATE_WORK[role], 0.0) <= LATE_S
    return report


def _database_figures(url: str, now: datetime) -> dict[str, Any]:
    engine = db.make_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            return {"database": True, **lateness(connection, now)}
    except Exception as error:  # any failure to answer is the finding
        return {"database": False, "database_error": type(error).__name__}
    finally:
        engine.dispose()


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
        "stats_lag_s": _seconds_since(connection.scalar(_oldest_uncounted_change()), now),
        "outbox_backlog": float(backlog or 0),
    }


def _oldest_uncounted_change() -> Any:
    """When the oldest change the stats worker has not folded yet happened (None: none).

    Per tenant, the conversations above its checkpoint, read through the index on (tenant,
    stats_seq): a healthy engine has only a few. A conversation changed again since is dated
    by its last change, so a worker that is down shows late as soon as changes stop coming.
    """
    c, k, tenants = tables.conversations.c, tables.stats_checkpoints.c, tables.tenants.c
    # Correlated by hand: nested two deep, it would otherwise read every tenant's checkpoint
    # (PostgreSQL refuses the many rows; SQLite quietly takes the first one).
    folded = (
        select(k.seq).where(k.tenant == tenants.tenant).correlate(tables.tenants).scalar_subquery()
    )
    oldest = (
        select(func.min(c.stats_changed_at))
        .where(c.tenant == tenants.tenant, c.stats_seq > func.coalesce(folded, -1))
        .scalar_subquery()
    )
    return select(func.min(oldest)).select_from(tables.tenants)


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
