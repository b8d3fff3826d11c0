"""The statistics' queries (``chatroute stats``, the report): sums over the figures the stats
worker stored (``store.figures``), by respondent, group or day, within a ``Window``."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Float, cast, func, select
from sqlalchemy.sql import ColumnElement

from chatroute.domain.contacts import percentile
from chatroute.store import tables

Key = tuple[str, str | None]  # tenant, and the respondent, group or day
Sums = dict[Key, dict[str, Any]]


@dataclass(frozen=True)
class Window:
    """Which contacts and conversations count: by tenant, and by start time in [since, until)."""

    tenant: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def where(self, table: Any) -> list[ColumnElement[bool]]:
        c = table.c
        conditions: list[ColumnElement[bool]] = []
        if self.tenant is not None:
            conditions.append(c.tenant == self.tenant)
        if self.since is not None:
            conditions.append(c.started_at >= self.since)
        if self.until is not None:
            conditions.append(c.started_at < self.until)
        return conditions


def read(engine: Engine, by: str, window: Window) -> tuple[Sums, Sums, set[Key]]:
    """The contact sums, the conversation sums (not by respondent) and every key with a row:
    by respondent, also the respondents known without a contact in ``window``."""
    with engine.connect() as connection:
        contact_part = _contact_sums(connection, by, window)
        keys = set(contact_part)
        if by == "respondent":
            return contact_part, {}, keys | _known_respondents(connection, window)
        conversation_part = _conversation_sums(connection, by, window)
        return contact_part, conversation_part, keys | set(conversation_part)


def _key(table: Any, by: str) -> Any:
    if by == "respondent":
        return table.c.respondent
    return table.c.group_id if by == "group" else table.c.day


def _contact_sums(connection: Any, by: str, window: Window) -> Sums:
    f = tables.contact_figures
    key = _key(f, by)
    query = (
        select(
            f.c.tenant,
            key,
            func.count(),
            func.sum(f.c.answered),
            func.sum(f.c.transferred),
            func.sum(f.c.snoozes),
            func.count(f.c.rating),
            func.avg(cast(f.c.rating, Float)),
            func.sum(f.c.commission),
            func.avg(f.c.first_response_s),
        )
        .where(*window.where(f))
        .group_by(f.c.tenant, key)
    )
    sums = {}
    for (
        tenant,
        k,
        n,
        answered,
        transferred,
        snoozes,
        rated,
        rating,
        commission,
        delay,
    ) in connection.execute(query):
        sums[(tenant, k)] = {
            "contacts": int(n),
            "answered": int(answered),
            "unanswered": int(n) - int(answered),
            "transfers_out": int(transferred),
            "snoozes": int(snoozes),
            "satisfaction_count": int(rated),
            "satisfaction_avg": None if rating is None else float(rating),
            "commission": float(commission),
            "first_response_avg_s": None if delay is None else float(delay),
        }
    return sums


def _conversation_sums(connection: Any, by: str, window: Window) -> Sums:
    v = tables.conversation_figures
    key = _key(v, by)
    query = (
        select(v.c.tenant, key, func.count(), func.sum(v.c.queued), func.sum(v.c.unrouted))
        .where(*window.where(v))
        .group_by(v.c.tenant, key)
    )
    sums: Sums = {
        (tenant, k): {"conversations": int(n), "queued": int(queued), "unrouted": int(unrouted)}
        for tenant, k, n, queued, unrouted in connection.execute(query)
    }
    query = (
        select(v.c.tenant, key, v.c.unrouted_code, func.count())
        .where(*window.where(v), v.c.unrouted_code.is_not(None))
        .group_by(v.c.tenant, key, v.c.unrouted_code)
    )
    for tenant, k, code, n in connection.execute(query):
        sums[(tenant, k)][f"unrouted_{code}"] = int(n)
    waits: dict[Key, list[float]] = defaultdict(list)
    query = select(v.c.tenant, key, v.c.wait_s).where(*window.where(v), v.c.wait_s.is_not(None))
    for tenant, k, wait in connection.execute(query):
        waits[(tenant, k)].append(float(wait))
    for k, values in waits.items():
        sums[k].update(wait_avg_s=sum(values) / len(values), wait_p90_s=percentile(values, 90))
    for k, moves in _overflow_sums(connection, by, window).items():
        sums.setdefault(k, {}).update(moves)  # a group only overflowed through gets a row too
    return sums


def _overflow_sums(connection: Any, by: str, window: Window) -> dict[Key, dict[str, int]]:
    """Overflow moves out of each group (``wait_timeout`` ones too) and into each group; by
    day, all the moves and those that reached a group, of conversations started that day."""
    o = tables.overflow_figures
    sums: dict[Key, dict[str, int]] = defaultdict(dict)
    sides = (("overflowed_out", o.c.from_group), ("overflowed_in", o.c.to_group))
    for name, group in sides:
        key = group if by == "group" else o.c.day
        query = (
            select(o.c.tenant, key, func.count())
            .where(*window.where(o), group.is_not(None))
            .group_by(o.c.tenant, key)
        )
        for tenant, k, n in connection.execute(query):
            sums[(tenant, k)][name] = int(n)
    return sums


def waits(engine: Engine, window: Window) -> list[float]:
    """Seconds from start to first assignment of each assigned conversation in ``window``."""
    v = tables.conversation_figures.c
    query = select(v.wait_s).where(
        *window.where(tables.conversation_figures), v.wait_s.is_not(None)
    )
    with engine.connect() as connection:
        return [float(w) for w in connection.scalars(query)]


def transfers(engine: Engine, window: Window) -> dict[tuple[str, str], int]:
    """How many contacts each respondent transferred to each other respondent."""
    f = tables.contact_figures
    query = (
        select(f.c.respondent, f.c.transferred_to, func.count())
        .where(*window.where(f), f.c.transferred_to.is_not(None))
        .group_by(f.c.respondent, f.c.transferred_to)
    )
    with engine.connect() as connection:
        return {(source, target): int(n) for source, target, n in connection.execute(query)}


def _known_respondents(connection: Any, window: Window) -> set[Key]:
    r = tables.respondents.c
    query = select(r.tenant, r.respondent_id)
    if window.tenant is not None:
        query = query.where(r.tenant == window.tenant)
    return {(tenant, rid) for tenant, rid in connection.execute(query)}


@dataclass(frozen=True)
class Outcomes:
    """A run's figures row by row (``chatroute whatif`` sums them its own way)."""

    # tenant, conversation, group, queued (0 or 1), wait_s, unrouted_code
    conversations: list[tuple[str, str, str | None, int, float | None, str | None]]
    overflows: list[tuple[str, str, str]]  # tenant, conversation, the group it left
    # tenant, respondent, group, answered (0 or 1), commission
    contacts: list[tuple[str, str, str | None, int, float]]
    respondents: list[tuple[str, str]]  # every respondent known, with a contact or not


def outcomes(engine: Engine) -> Outcomes:
    v, o = tables.conversation_figures.c, tables.overflow_figures.c
    f, r = tables.contact_figures.c, tables.respondents.c
    conversations = select(
        v.tenant, v.conversation_id, v.group_id, v.queued, v.wait_s, v.unrouted_code
    )
    contacts = select(f.tenant, f.respondent, f.group_id, f.answered, f.commission)
    with engine.connect() as connection:
        return Outcomes(
            conversations=[
                (t, c, g, int(q), w, u) for t, c, g, q, w, u in connection.execute(conversations)
            ],
            overflows=[
                (t, c, g)
                for t, c, g in connection.execute(select(o.tenant, o.conversation_id, o.from_group))
            ],
            contacts=[
                (t, rid, g, int(a), float(m)) for t, rid, g, a, m in connection.execute(contacts)
            ],
            respondents=[
                (t, rid) for t, rid in connection.execute(select(r.tenant, r.respondent_id))
            ],
        )
