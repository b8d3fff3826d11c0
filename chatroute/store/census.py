"""Each group's census (``tables.group_census``): how many members it has, and how many of
them are unavailable or full. Decisions' explanations count a group's ineligible members from
it (``explain.Census``) instead of walking a group of thousands.

The flush keeps it: a respondent's standing and groups before and after each flush give the
changes to add (``count_members``). Between flushes, what the session holds unflushed is added
when it is read (``unflushed``), so a read is always as of now.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, and_, case, delete, func, insert, inspect, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.orm.state import InstanceState

from chatroute.domain.explain import FREE, Census, standing
from chatroute.domain.model import AVAILABLE, Respondent
from chatroute.store import tables

# session.info: how many times the flush changed census rows (a view's reads stay good until).
WRITES = "census_writes"
_C = tables.group_census.c
# Per (tenant, group): [members, unavailable, full] to add.
Changes = dict[tuple[str, str], list[int]]


def count_members(session: Session, _context: object, _instances: object) -> None:
    """Before a flush: add the changes of the respondents it writes to their groups' census."""
    changes = unflushed(session)
    if changes:
        _add(session.connection(), changes)
        session.info[WRITES] = session.info.get(WRITES, 0) + 1


def unflushed(session: Session) -> Changes:
    """What the respondents changed since the last flush do to their groups' census."""
    changes: Changes = {}
    for obj in (*session.new, *session.dirty):  # respondents are never deleted
        if isinstance(obj, Respondent):
            was = None if obj in session.new else _as_flushed(session, inspect(obj))
            _move(changes, obj.tenant, was, (obj.groups, standing(obj)))
    return {key: counts for key, counts in changes.items() if any(counts)}


def read(connection: Connection, tenant: str, group: str) -> Census:
    """The group's census as flushed."""
    query = select(_C.members, _C.unavailable, _C.full).where(
        _C.tenant == tenant, _C.group_id == group
    )
    row = connection.execute(query).first()
    return Census() if row is None else Census(*row)


def with_changes(census: Census, counts: Sequence[int] | None) -> Census:
    if not counts:
        return census
    members, unavailable, full = counts
    return Census(census.members + members, census.unavailable + unavailable, census.full + full)


def census_rows(respondents: Iterable[Respondent]) -> list[dict[str, Any]]:
    """The census rows of these respondents' groups (all of a tenant's respondents)."""
    changes: Changes = {}
    for respondent in respondents:
        _move(changes, respondent.tenant, None, (respondent.groups, standing(respondent)))
    return [
        {"tenant": t, "group_id": g, "members": m, "unavailable": u, "full": f}
        for (t, g), (m, u, f) in changes.items()
    ]


def recount(connection: Connection, tenant: str) -> None:
    """Count ``tenant``'s census again from its members (after rows written around the flush:
    a migration, a benchmark's fill)."""
    m, r = tables.memberships.c, tables.respondents.c
    away = r.status != AVAILABLE
    counted = (
        select(
            m.tenant,
            m.group_id,
            func.count(),
            func.sum(case((away, 1), else_=0)),
            func.sum(case((and_(~away, r.load >= r.slots), 1), else_=0)),
        )
        .join_from(
            tables.memberships,
            tables.respondents,
            and_(r.tenant == m.tenant, r.respondent_id == m.respondent_id),
        )
        .where(m.tenant == tenant)
        .group_by(m.tenant, m.group_id)
    )
    connection.execute(delete(tables.group_census).where(_C.tenant == tenant))
    columns = ["tenant", "group_id", "members", "unavailable", "full"]
    connection.execute(insert(tables.group_census).from_select(columns, counted))


def _as_flushed(session: Session, state: InstanceState[Respondent]) -> tuple[list[str], str]:
    values = {key: _before(state, key) for key in ("status", "load", "slots")}
    groups = _before(state, "groups")
    if groups is None:  # changed in place: the membership rows are its groups as flushed
        m = tables.memberships.c
        obj = state.obj()
        query = select(m.group_id).where(
            m.tenant == obj.tenant, m.respondent_id == obj.respondent_id
        )
        groups = list(session.connection().scalars(query))
    flushed = Respondent("", "", [], values["slots"], values["status"], load=values["load"])
    return groups, standing(flushed)


def _before(state: InstanceState[Respondent], key: str) -> Any:
    history = state.attrs[key].history
    if history.deleted:
        return history.deleted[0]
    return history.unchanged[0] if history.unchanged else None


def _move(
    changes: Changes,
    tenant: str,
    was: tuple[list[str], str] | None,
    now: tuple[list[str], str] | None,
) -> None:
    delta: Counter[tuple[str, str]] = Counter()
    for side, sign in ((was, -1), (now, 1)):
        if side is not None:
            groups, where = side
            for group in dict.fromkeys(groups):
                delta[(group, "members")] += sign
                if where != FREE:
                    delta[(group, where)] += sign
    for (group, column), count in delta.items():
        counts = changes.setdefault((tenant, group), [0, 0, 0])
        counts[("members", "unavailable", "full").index(column)] += count


def _add(connection: Connection, changes: Changes) -> None:
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    rows = [
        {"tenant": t, "group_id": g, "members": m, "unavailable": u, "full": f}
        for (t, g), (m, u, f) in sorted(changes.items())
    ]
    statement = dialect.insert(tables.group_census)
    added = statement.excluded
    connection.execute(
        statement.on_conflict_do_update(
            index_elements=[_C.tenant, _C.group_id],
            set_={
                "members": _C.members + added.members,
                "unavailable": _C.unavailable + added.unavailable,
                "full": _C.full + added.full,
            },
        ),
        rows,
    )
    # A group nobody is a member of any more has no census (as one never counted).
    for (tenant, group), (members, _, _) in changes.items():
        if members < 0:
            connection.execute(
                delete(tables.group_census).where(
                    _C.tenant == tenant, _C.group_id == group, _C.members == 0
                )
            )
