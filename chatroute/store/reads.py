"""Read-only questions the command line and the probes ask, each in a transaction of its own:
a conversation's record (``chatroute history``), how late the work is (health), and the state
gauges (metrics)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Row, and_, case, func, select, text

from chatroute.amqp import DECISIONS_EXCHANGE
from chatroute.domain.model import AVAILABLE, TimerState
from chatroute.store import db, inbox, tables


def conversation_record(
    engine: Engine, tenant: str, conversation: str
) -> tuple[Sequence[Row[Any]], list[str]]:
    """The conversation's events taken (applied or rejected) in arrival order, and the bodies
    of its decisions in commit order, read together."""
    i, o = tables.inbox.c, tables.outbox.c
    events = (
        select(i.event_id, i.type, i.event_time, i.effective_at, i.body, i.state, i.reason)
        .where(i.tenant == tenant, i.conversation_id == conversation, i.state != inbox.NEW)
        .order_by(i.seq)
    )
    decisions = (
        select(o.body)
        .where(
            o.tenant == tenant,
            o.conversation_id == conversation,
            o.exchange == DECISIONS_EXCHANGE,
        )
        .order_by(o.seq)
    )
    with engine.begin() as connection:
        return connection.execute(events).all(), list(connection.scalars(decisions))


def database_figures(url: str, now: datetime) -> dict[str, Any]:
    """Whether the database at ``url`` answers, and if so how late the work is."""
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
    t, o = tables.timers.c, tables.outbox.c
    due = connection.scalar(select(func.min(t.due)).where(t.state == TimerState.ARMED))
    unsent = connection.scalar(select(func.min(o.created_at)).where(o.sent_at.is_(None)))
    unapplied = inbox.oldest_unapplied(connection)
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


@dataclass(frozen=True)
class Gauges:
    """The engine's state, as the metrics endpoint shows it at each scrape."""

    holds: list[tuple[str, int]]  # tenant, pending holds
    adjusted: list[tuple[str, int]]  # tenant, events applied at another time than their own
    armed: int  # timers
    late: dict[str, float]  # ``lateness``


def gauges(engine: Engine, now: datetime) -> Gauges:
    h, t = tables.pending_holds.c, tables.timers.c
    with engine.connect() as connection:
        holds = connection.execute(select(h.tenant, func.count()).group_by(h.tenant)).all()
        adjusted = connection.execute(
            select(tables.tenants.c.tenant, tables.tenants.c.adjusted_events)
        ).all()
        armed = connection.scalar(select(func.count()).where(t.state == TimerState.ARMED))
        late = lateness(connection, now)
    return Gauges(
        holds=[(tenant, int(n)) for tenant, n in holds],
        adjusted=[(tenant, int(n)) for tenant, n in adjusted],
        armed=int(armed or 0),
        late=late,
    )


@dataclass
class GroupState:
    """A group of a tenant as it is now (``chatroute queues``, the group gauges)."""

    tenant: str
    group: str
    hours: Any = None  # the declared hours' JSON; None: always open
    waiting: int = 0
    first_joined: datetime | None = None  # the longest waiting's first queue of its rule
    available: int = 0
    free_slots: int = 0


def group_states(engine: Engine, tenant: str | None = None) -> list[GroupState]:
    """Every group of ``tenant`` (None: of every tenant): declared, named by a rule's target,
    with members or with a queue; sorted by tenant and group."""
    g, rl, q = tables.groups.c, tables.rules.c, tables.queue_entries.c
    m, r = tables.memberships.c, tables.respondents.c
    available = r.status == AVAILABLE
    members = (
        select(
            m.tenant,
            m.group_id,
            func.sum(case((available, 1), else_=0)),
            func.sum(case((and_(available, r.load < r.slots), r.slots - r.load), else_=0)),
        )
        .join_from(
            tables.memberships,
            tables.respondents,
            and_(r.tenant == m.tenant, r.respondent_id == m.respondent_id),
        )
        .group_by(m.tenant, m.group_id)
    )
    queues = select(q.tenant, q.group_id, func.count(), func.min(q.joined_at)).group_by(
        q.tenant, q.group_id
    )
    scoped = [
        (query.where(column == tenant) if tenant is not None else query)
        for query, column in (
            (members, m.tenant),
            (queues, q.tenant),
            (select(g.tenant, g.group_id, g.hours), g.tenant),
            (select(rl.tenant, rl.group_id, rl.targets), rl.tenant),
        )
    ]
    found: dict[tuple[str, str], GroupState] = {}

    def state(t: str, group: str) -> GroupState:
        return found.setdefault((t, group), GroupState(t, group))

    with engine.connect() as connection:
        member_rows, queue_rows, declared, rules = (connection.execute(s).all() for s in scoped)
    for t, group, n, free in member_rows:
        members = state(t, group)
        members.available, members.free_slots = int(n or 0), int(free or 0)
    for t, group, n, joined in queue_rows:
        queue = state(t, group)
        queue.waiting, queue.first_joined = int(n), joined
    for t, group, hours in declared:
        state(t, group).hours = hours
    for t, group, targets in rules:
        for name in [group, *(target["group"] for target in targets or [])]:
            state(t, name)
    return [found[key] for key in sorted(found)]
