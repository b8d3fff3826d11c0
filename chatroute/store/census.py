"""Each group's census (``tables.group_census``): how many members it has, and how many of
them are unavailable or full. Decisions' explanations count a group's ineligible members from
it (``explain.Census``) instead of walking a group of thousands.

The session keeps the changes as they are made: each time a counted attribute of a respondent
is set (``watch``), or a respondent is added (``added``), what it does to its groups' census is
added to the changes not flushed yet; the flush writes them (``count_members``), a rollback
drops them (``rolled_back``). A read adds them to the row as flushed (``unflushed``), so it is
always as of now, at no cost that grows with the batch. The domain replaces a respondent's
groups whole (a change in place fires no "set"; the parity tests recount the census).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, and_, case, delete, event, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, object_session

from chatroute.domain.explain import FREE, Census, standing, standing_of
from chatroute.domain.model import AVAILABLE, Respondent
from chatroute.store import tables

# session.info: how many times the flush changed census rows (a view's reads stay good until
# it changes), and the changes not flushed yet.
WRITES = "census_writes"
PENDING = "census_pending"
_C = tables.group_census.c
# What a respondent counts as in its groups' census comes from these.
COUNTED = ("groups", "status", "load", "slots")
# Per (tenant, group): [members, unavailable, full] to add.
Changes = dict[tuple[str, str], list[int]]
Side = tuple[list[str], str]  # a respondent's groups, and what it counts as in them


def watch() -> None:
    """Count every change of a respondent's counted attributes (once, after mapping)."""
    for key in COUNTED:
        # active_history: the old value, even of an attribute expired since it was read
        event.listen(getattr(Respondent, key), "set", _setting(key), active_history=True)


def _setting(key: str) -> Callable[[Respondent, Any, Any, Any], None]:
    def set_(respondent: Respondent, value: Any, old: Any, _initiator: Any) -> None:
        session = object_session(respondent)
        if session is None:  # not in a session yet: counted when added to one
            return
        now = {k: getattr(respondent, k) for k in COUNTED}
        _move(
            _pending(session), respondent.tenant, _side(now | {key: old}), _side(now | {key: value})
        )

    return set_


def added(session: Session, obj: object) -> None:
    """A respondent added to ``session`` joins its groups' census (the session's
    ``transient_to_pending`` event)."""
    if isinstance(obj, Respondent):
        _move(_pending(session), obj.tenant, None, (obj.groups, standing(obj)))


def rolled_back(session: Session, _transaction: object) -> None:
    """The changes not flushed are gone with a rollback (to a savepoint, too); what was flushed
    and read before may be (``after_soft_rollback``)."""
    session.info.pop(PENDING, None)
    session.info[WRITES] = session.info.get(WRITES, 0) + 1


def count_members(session: Session, _context: object, _instances: object) -> None:
    """Before a flush: write the census changes it carries."""
    changes = unflushed(session)
    session.info.pop(PENDING, None)
    if changes:
        _add(session.connection(), changes)
        session.info[WRITES] = session.info.get(WRITES, 0) + 1


def unflushed(session: Session) -> Changes:
    """The census changes the session holds, not flushed yet."""
    pending: Changes = session.info.get(PENDING, {})
    return {key: counts for key, counts in pending.items() if any(counts)}


def _pending(session: Session) -> Changes:
    changes: Changes = session.info.setdefault(PENDING, {})
    return changes


def _side(values: dict[str, Any]) -> Side:
    return values["groups"], standing_of(values["status"], values["load"], values["slots"])


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


def _move(
    changes: Changes,
    tenant: str,
    was: Side | None,
    now: Side | None,
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
