"""Statistics: the stats worker's fold, and ``chatroute stats`` rows over what it stored.

The routing transaction only stamps changed conversations (``stats_seq``); the stats worker
folds them into contact and conversation figures (``store.figures``) outside routing, and
every query here reads those figures alone.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Float, cast, func, select
from sqlalchemy.sql import ColumnElement

from chatroute.bootstrap import Runtime
from chatroute.domain.contacts import percentile
from chatroute.store import figures, tables

CONTACT_COLUMNS = (
    "contacts",
    "answered",
    "unanswered",
    "transfers_out",
    "snoozes",
    "satisfaction_count",
    "satisfaction_avg",
    "commission",
    "first_response_avg_s",
)
UNROUTED_CODES = ("no_rule", "closed", "queue_full", "wait_timeout")
CONVERSATION_COLUMNS = (
    "conversations",
    "queued",
    "wait_avg_s",
    "wait_p90_s",
    "unrouted",
    # contract v2: overflow moves into and out of the group, and ``unrouted`` by its code
    "overflowed_in",
    "overflowed_out",
    *(f"unrouted_{code}" for code in UNROUTED_CODES),
)
# Columns holding a number with decimals: shown with two in the table, whatever the row.
DECIMAL_COLUMNS = frozenset(
    {"satisfaction_avg", "commission", "first_response_avg_s", "wait_avg_s", "wait_p90_s"}
)
BY = ("respondent", "group", "day")


def columns(by: str) -> tuple[str, ...]:
    """The columns of a row of ``chatroute stats --by by``, in order."""
    extra = () if by == "respondent" else CONVERSATION_COLUMNS
    return ("tenant", by, *CONTACT_COLUMNS, *extra)


# ---------------------------------------------------------------- the stats worker


def fold_tenant(rt: Runtime, tenant: str, limit: int = figures.FOLD_LIMIT) -> int:
    """Fold all of ``tenant``'s changed conversations, ``limit`` per transaction; returns how
    many transactions it took."""
    rounds = 1
    while True:
        with rt.sessions.begin() as session:
            more = figures.fold(session, tenant, limit)
        if not more:
            return rounds
        rounds += 1


def stale_tenants(rt: Runtime) -> list[str]:
    with rt.sessions.begin() as session:
        return figures.stale_tenants(session)


# ---------------------------------------------------------------- queries


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


def rows(rt: Runtime, by: str = "respondent", window: Window | None = None) -> list[dict[str, Any]]:
    """One row per (tenant, respondent | group | day), sorted; see ``columns(by)``."""
    if by not in BY:
        raise ValueError(f"--by must be one of {', '.join(BY)}, not {by!r}")
    window = window or Window()
    with rt.engine.connect() as connection:
        contact_part = _contact_sums(connection, by, window)
        keys = set(contact_part)
        if by == "respondent":
            keys |= _known_respondents(connection, window)
            conversation_part: dict[tuple[str, str | None], dict[str, Any]] = {}
        else:
            conversation_part = _conversation_sums(connection, by, window)
            keys |= set(conversation_part)
    empty = dict.fromkeys(columns(by)[2:], 0) | {
        "commission": 0.0,
        "satisfaction_avg": None,
        "first_response_avg_s": None,
        "wait_avg_s": None,
        "wait_p90_s": None,
    }
    result = []
    for tenant, key in sorted(keys, key=lambda k: (k[0], k[1] is None, k[1] or "")):
        row = {"tenant": tenant, by: key}
        for name in columns(by)[2:]:
            part = contact_part.get((tenant, key), {}) | conversation_part.get((tenant, key), {})
            row[name] = part.get(name, empty[name])
        result.append(row)
    return result


def _key(table: Any, by: str) -> Any:
    if by == "respondent":
        return table.c.respondent
    return table.c.group_id if by == "group" else table.c.day


def _contact_sums(
    connection: Any, by: str, window: Window
) -> dict[tuple[str, str | None], dict[str, Any]]:
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


def _conversation_sums(
    connection: Any, by: str, window: Window
) -> dict[tuple[str, str | None], dict[str, Any]]:
    v = tables.conversation_figures
    key = _key(v, by)
    query = (
        select(v.c.tenant, key, func.count(), func.sum(v.c.queued), func.sum(v.c.unrouted))
        .where(*window.where(v))
        .group_by(v.c.tenant, key)
    )
    sums: dict[tuple[str, str | None], dict[str, Any]] = {
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
    waits: dict[tuple[str, str | None], list[float]] = defaultdict(list)
    query = select(v.c.tenant, key, v.c.wait_s).where(*window.where(v), v.c.wait_s.is_not(None))
    for tenant, k, wait in connection.execute(query):
        waits[(tenant, k)].append(float(wait))
    for k, values in waits.items():
        sums[k].update(wait_avg_s=sum(values) / len(values), wait_p90_s=percentile(values, 90))
    for k, moves in _overflow_sums(connection, by, window).items():
        sums.setdefault(k, {}).update(moves)  # a group only overflowed through gets a row too
    return sums


def _overflow_sums(
    connection: Any, by: str, window: Window
) -> dict[tuple[str, str | None], dict[str, int]]:
    """Overflow moves out of each group (``wait_timeout`` ones too) and into each group; by
    day, all the moves and those that reached a group, of conversations started that day."""
    o = tables.overflow_figures
    sums: dict[tuple[str, str | None], dict[str, int]] = defaultdict(dict)
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


def waits(rt: Runtime, window: Window) -> list[float]:
    """Seconds from start to first assignment of each assigned conversation in ``window``."""
    v = tables.conversation_figures.c
    query = select(v.wait_s).where(
        *window.where(tables.conversation_figures), v.wait_s.is_not(None)
    )
    with rt.engine.connect() as connection:
        return [float(w) for w in connection.scalars(query)]


def transfers(rt: Runtime, window: Window) -> dict[tuple[str, str], int]:
    """How many contacts each respondent transferred to each other respondent."""
    f = tables.contact_figures
    query = (
        select(f.c.respondent, f.c.transferred_to, func.count())
        .where(*window.where(f), f.c.transferred_to.is_not(None))
        .group_by(f.c.respondent, f.c.transferred_to)
    )
    with rt.engine.connect() as connection:
        return {(source, target): int(n) for source, target, n in connection.execute(query)}


def _known_respondents(connection: Any, window: Window) -> set[tuple[str, str | None]]:
    r = tables.respondents.c
    query = select(r.tenant, r.respondent_id)
    if window.tenant is not None:
        query = query.where(r.tenant == window.tenant)
    return {(tenant, rid) for tenant, rid in connection.execute(query)}


def render_table(rows: list[dict[str, Any]], by: str = "respondent") -> str:
    """An aligned text table of ``rows`` for people."""
    names = columns(by)
    cells = [list(names)] + [[_cell(row[c], c in DECIMAL_COLUMNS) for c in names] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(names))]
    return "\n".join(
        "  ".join(value.ljust(width) for value, width in zip(line, widths, strict=True)).rstrip()
        for line in cells
    )


def _cell(value: Any, decimal: bool = False) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) or (decimal and isinstance(value, int)):
        return f"{value:.2f}"
    return str(value)
