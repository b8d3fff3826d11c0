"""The store's side of routing policy v2 on SQLite and PostgreSQL: the new port methods of
``SqlTenantView`` answer as ``InMemoryTenantView`` does for the same rows, in the transaction
that writes them and in later ones, for two tenants with the same ids; migration 0010 fills
the new columns of existing rows; the queue's queries use its index with 100,000 rows.
"""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, create_engine, event, insert, select, text

from chatroute import bootstrap
from chatroute.domain.memory import InMemoryTenantView
from chatroute.domain.model import (
    Contact,
    Conversation,
    Group,
    QueueEntry,
    Respondent,
    Rule,
    State,
    TenantSettings,
    Timer,
    TimerKind,
    TimerState,
)
from chatroute.settings import Settings
from chatroute.store import db, tables
from chatroute.store.view import SqlTenantView
from tests.conftest import PG_ADMIN_URL, require_service

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
TENANTS = ("a", "b")  # the same ids in both: neither may see the other's rows
RESPONDENTS = ("r1", "r2", "r3")


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def a_runtime(url: str) -> Iterator[bootstrap.Runtime]:
    rt = bootstrap.build(Settings(database_url=url), migrate=True)
    with rt.sessions.begin() as session:
        for tenant in TENANTS:
            session.add(TenantSettings(tenant))
    yield rt
    rt.engine.dispose()


@pytest.fixture
def runtime(db_url: str) -> Iterator[bootstrap.Runtime]:
    yield from a_runtime(db_url)


@contextmanager
def pg_database_sorting_as_en_us() -> Iterator[str]:
    """A fresh PostgreSQL database whose default collation is ICU's en-US ("c1" < "C1"), as
    many are: ids must still be ordered as Python orders them."""
    require_service("PostgreSQL")
    name = f"chatroute_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(
            text(
                f'CREATE DATABASE "{name}" TEMPLATE template0 LOCALE_PROVIDER icu '
                "ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
            )
        )
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql", "postgresql-en-US"])
def sorting_runtime(request: pytest.FixtureRequest) -> Iterator[bootstrap.Runtime]:
    """The backends, and PostgreSQL once more with a collation that is not byte order."""
    if request.param == "postgresql-en-US":
        with pg_database_sorting_as_en_us() as url:
            yield from a_runtime(url)
    else:
        fixture = "sqlite_url" if request.param == "sqlite" else "pg_url"
        yield from a_runtime(str(request.getfixturevalue(fixture)))


class Views:
    """One tenant's memory view (kept across transactions) and its SQL views (one a
    transaction, as the workers make them)."""

    def __init__(self, rt: bootstrap.Runtime, tenant: str) -> None:
        self.rt = rt
        self.tenant = tenant
        self.memory = InMemoryTenantView(tenant)

    @contextmanager
    def transaction(self) -> Iterator[tuple[InMemoryTenantView, SqlTenantView]]:
        with self.rt.sessions.begin() as session:
            settings = session.get(TenantSettings, self.tenant)
            assert settings is not None
            yield self.memory, SqlTenantView(session, settings)

    def both(self, apply: Callable[[Any], None], sql: SqlTenantView) -> None:
        """Apply the same port calls to both views (objects are built by ``apply``, so each
        view gets its own live ones)."""
        apply(self.memory)
        apply(sql)


def each_tenant(rt: bootstrap.Runtime) -> list[Views]:
    return [Views(rt, tenant) for tenant in TENANTS]


# ---------------------------------------------------------------- queues


@dataclass(frozen=True)
class Queued:
    cid: str
    group: str
    seq: int
    queued_at: datetime
    priority: int
    joined_at: datetime | None
    excluded: str | None

    def entry(self, tenant: str) -> QueueEntry:
        return QueueEntry(
            tenant,
            self.cid,
            self.group,
            self.seq,
            self.queued_at,
            priority=self.priority,
            joined_at=self.joined_at,
            excluded=self.excluded,
        )


def queued(rng: random.Random, names: list[str], first_seq: int) -> list[Queued]:
    """Entries in joining order (``seq``); ties of priority and of joined_at are common, and
    some kept an earlier ``joined_at`` through an overflow (then queued_at is later)."""
    specs = []
    for n, cid in enumerate(names):
        joined = at(rng.choice([0, 1, 1, 2, 5]))
        moved = rng.random() < 0.3
        queued_at = joined + timedelta(minutes=7) if moved else joined
        specs.append(
            Queued(
                cid,
                rng.choice(["g1", "g1", "g2", "g3"]),
                first_seq + n,
                queued_at,
                rng.choice([0, 0, 0, 1, 2, -1]),
                joined if moved or rng.random() < 0.5 else None,  # None: queued_at
                rng.choice([None, None, "r1", "r2"]),
            )
        )
    return specs


HEAD_GROUPS = [[], ["g1"], ["g2"], ["g1", "g2"], ["g3", "g1", "g2"], ["g2", "g2"], ["gX"]]


def queue_answers(view: Any, cids: list[str]) -> dict[str, Any]:
    heads = {}
    for groups in HEAD_GROUPS:
        for respondent in RESPONDENTS:
            head = view.queue_head(groups, respondent)
            heads[f"{groups} {respondent}"] = head and head.conversation_id
    positions = {}
    for cid in cids:
        entry = view.queue_entry(cid)
        if entry is not None:
            positions[cid] = view.queue_position(entry)
    lengths = {
        f"{group} {limit}": view.queue_length(group, limit)
        for group in ("g1", "g2", "g3", "gX")
        for limit in (0, 1, 4, 1000)
    }
    return {"heads": heads, "positions": positions, "lengths": lengths}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_queues_answer_as_the_memory_view(runtime: bootstrap.Runtime, seed: int) -> None:
    rng = random.Random(seed)
    names = [f"c{n:02d}" for n in range(40)]
    tenants = each_tenant(runtime)
    specs = {v.tenant: queued(rng, names[:30], 1) for v in tenants}
    later = {v.tenant: queued(rng, names[30:], 31) for v in tenants}
    checked = 0

    def check(views: Views, sql: SqlTenantView) -> None:
        nonlocal checked
        expected = queue_answers(views.memory, names)
        assert queue_answers(sql, names) == expected
        checked += len(expected["positions"])

    def reprioritize(views: Views, sql: SqlTenantView, count: int) -> None:
        present = [cid for cid in names if views.memory.queue_entry(cid) is not None]
        for cid in rng.sample(present, min(count, len(present))):
            priority = rng.choice([-1, 0, 1, 2, 3])
            views.both(lambda v, c=cid, p=priority: v.reprioritize(v.queue_entry(c), p), sql)

    # One transaction writes them and reads them back (pending rows, then flushed ones).
    for views in tenants:
        with views.transaction() as (_memory, sql):
            for spec in specs[views.tenant]:
                views.both(lambda v, s=spec: v.enqueue(s.entry(v.tenant)), sql)
            check(views, sql)
            reprioritize(views, sql, 6)
            check(views, sql)
            for cid in rng.sample(names[:30], 6):
                views.both(lambda v, c=cid: v.dequeue(v.queue_entry(c)), sql)
            check(views, sql)
            for spec in later[views.tenant][:5]:
                views.both(lambda v, s=spec: v.enqueue(s.entry(v.tenant)), sql)
            reprioritize(views, sql, 3)  # some pending, some flushed
            check(views, sql)
    # Later transactions read what was committed, and change it again.
    for views in tenants:
        with views.transaction() as (_memory, sql):
            check(views, sql)
            reprioritize(views, sql, 8)
            check(views, sql)
            for spec in later[views.tenant][5:]:
                views.both(lambda v, s=spec: v.enqueue(s.entry(v.tenant)), sql)
            check(views, sql)
    for views in tenants:
        with views.transaction() as (_memory, sql):
            check(views, sql)
    assert checked > 300


def test_a_queue_tie_is_broken_by_joined_at_then_seq(runtime: bootstrap.Runtime) -> None:
    """Of one priority, the entry that joined first leads, whatever its seq (an overflow keeps
    its joined_at); an entry excluding a respondent is passed over for that one only."""
    specs = [
        Queued("late", "g1", 1, at(0), 0, None, None),
        Queued("moved", "g2", 2, at(10), 0, at(-5), None),  # overflowed from another queue
        Queued("same-time", "g1", 3, at(-5), 0, None, None),
        Queued("urgent", "g1", 4, at(20), 1, None, "r1"),
    ]
    views = Views(runtime, "a")
    with views.transaction() as (memory, sql):
        for spec in specs:
            views.both(lambda v, s=spec: v.enqueue(s.entry(v.tenant)), sql)
        for view in (memory, sql):
            assert view.queue_head(["g1", "g2"], "r1").conversation_id == "moved"
            assert view.queue_head(["g1", "g2"], "r2").conversation_id == "urgent"
            assert view.queue_head(["g1"], "r1").conversation_id == "same-time"
            positions = {c: view.queue_position(view.queue_entry(c)) for c in ("late", "urgent")}
            assert positions == {"late": 3, "urgent": 1}
    with views.transaction() as (_memory, sql):
        assert sql.queue_entry("late").joined_at == at(0)  # None is written as queued_at
        assert sql.queue_position(sql.queue_entry("same-time")) == 2
        sql.reprioritize(sql.queue_entry("late"), 2)
        assert sql.queue_head(["g1", "g2"], "r1").conversation_id == "late"
        assert sql.queue_position(sql.queue_entry("urgent")) == 2
    with views.transaction() as (_memory, sql):
        assert sql.queue_entry("late").priority == 2


# ---------------------------------------------------------------- groups


def test_groups_and_group_exists_answer_as_the_memory_view(runtime: bootstrap.Runtime) -> None:
    names = ["g-rule", "g-later-target", "g-member", "g-declared", "g-new", "g-none"]

    def exists(view: Any) -> dict[str, bool]:
        return {name: view.group_exists(name) for name in names}

    def declared(view: Any) -> dict[str, Group | None]:
        found = {name: view.group(name) for name in names}
        return {
            k: v and Group(v.tenant, v.group_id, v.hours, v.max_queue) for k, v in found.items()
        }

    def setup(view: Any) -> None:
        t = view.tenant
        view.add_rule(Rule(t, "v1", "g-rule", 1))
        targets = [{"group": "g1", "wait_s": 30}, {"group": "g-later-target", "wait_s": None}]
        view.add_rule(Rule(t, "v2", "g1", 2, [], targets))
        view.add_respondent(Respondent(t, "r1", ["g-member"], 2))
        view.add_group(Group(t, "g-declared", {"zone": "UTC", "days": {"mon": []}}, 5))

    a, b = each_tenant(runtime)
    with a.transaction() as (memory, sql):
        assert sql.group("g-declared") is None  # looked up, absent: then declared
        a.both(setup, sql)
        assert exists(sql) == exists(memory)
        assert declared(sql) == declared(memory)
        assert sql.group("g-declared") is sql.group("g-declared")
        a.both(lambda v: v.add_group(Group(v.tenant, "g-new", None, None)), sql)
        assert sql.group("g-new") is not None  # seen before any flush
        assert exists(sql) == exists(memory)
        assert exists(sql) == dict.fromkeys(names[:-1], True) | {"g-none": False}
    with b.transaction() as (memory, sql):  # the same names in another tenant: none of them
        assert exists(sql) == exists(memory) == dict.fromkeys(names, False)
        assert declared(sql) == declared(memory) == dict.fromkeys(names)
    with a.transaction() as (memory, sql):
        assert exists(sql) == exists(memory)
        assert declared(sql) == declared(memory)
        # A group declared again as a new object replaces the old one, as in the memory view.
        a.both(lambda v: v.add_group(Group(v.tenant, "g-declared", None, 9)), sql)
        assert declared(sql) == declared(memory)
        sql.group("g-new").max_queue = 3
        memory.group("g-new").max_queue = 3
        a.both(lambda v: v.remove_rule(v.rule("v2")), sql)  # its later target goes with it
        assert exists(sql) == exists(memory)
        assert exists(sql)["g-later-target"] is False
    with a.transaction() as (memory, sql):
        assert declared(sql) == declared(memory)
        assert sql.group("g-declared") == Group("a", "g-declared", None, 9)
        assert exists(sql) == exists(memory)


# ---------------------------------------------------------------- conversations, contacts

# Ids whose order differs by collation (C: "C1" < "b1" < "c1" < "c10"; en-US: b1, c1, C1, c10).
CIDS = ["c1", "C1", "b1", "c10", "c2", "_x"]
VISITORS = ("v1", "v2", "v3")


def conversation_specs(rng: random.Random) -> list[tuple[str, str, str]]:
    states = [State.UNROUTED, State.QUEUED, State.ASSIGNED, State.PENDING, State.SNOOZED]
    return [
        (cid, rng.choice(VISITORS), rng.choice([*states, State.CLOSED, State.CLOSED]))
        for cid in CIDS
    ]


def a_contact(rng: random.Random, tenant: str, cid: str, number: int) -> Contact:
    started = at(rng.choice([0, 1, 2]))
    ended = rng.choice([None, started, started + timedelta(minutes=1), at(3)])
    return Contact(
        tenant,
        cid,
        number,
        rng.choice(RESPONDENTS),
        "g1",
        started,
        ended_at=ended,
        end_reason=None if ended is None else "close",
        answered=rng.random() < 0.7,
    )


def last_answered(view: Any) -> dict[str, tuple[str, int] | None]:
    found = {v: view.last_answered_contact(v) for v in (*VISITORS, "v-none")}
    return {v: c and (c.conversation_id, c.number) for v, c in found.items()}


@pytest.mark.parametrize("seed", range(6))
def test_last_answered_contact_and_idle_candidates_answer_as_the_memory_view(
    sorting_runtime: bootstrap.Runtime, seed: int
) -> None:
    rng = random.Random(seed)
    tenants = each_tenant(sorting_runtime)
    chosen = 0

    def idle(view: Any) -> list[str]:
        return [c.conversation_id for c in view.idle_candidates()]

    def check(views: Views, sql: SqlTenantView) -> None:
        nonlocal chosen
        expected = last_answered(views.memory)
        assert last_answered(sql) == expected
        assert idle(sql) == idle(views.memory)
        chosen += sum(1 for c in expected.values() if c is not None)

    for views in tenants:
        specs = conversation_specs(rng)
        contacts = [
            a_contact(rng, views.tenant, cid, number)
            for cid, _, _ in specs
            for number in range(1, rng.randint(0, 3) + 1)
        ]
        with views.transaction() as (_memory, sql):
            for cid, visitor, state in specs:
                views.both(
                    lambda v, c=cid, w=visitor, s=state: v.add_conversation(
                        Conversation(v.tenant, c, w, {}, at(0), state=s)
                    ),
                    sql,
                )
            for contact in contacts:
                views.both(lambda v, c=contact: v.add_contact(Contact(**vars_of(c))), sql)
            check(views, sql)
        with views.transaction() as (_memory, sql):
            check(views, sql)
            # Changes in this transaction count at once: answered, ended, added, moved.
            for _ in range(4):
                cid = rng.choice(CIDS)
                known = views.memory.contacts(cid)
                roll = rng.random()
                if known and roll < 0.5:
                    number = rng.choice(known).number
                    answered, ended = rng.random() < 0.5, rng.choice([None, at(4)])

                    def change(v: Any, c: str = cid, n: int = number, a: bool = answered,
                               e: datetime | None = ended) -> None:  # fmt: skip
                        contact = next(x for x in v.contacts(c) if x.number == n)
                        contact.answered, contact.ended_at = a, e

                    views.both(change, sql)
                else:
                    new = a_contact(rng, views.tenant, cid, len(known) + 1)
                    views.both(lambda v, c=new: v.add_contact(Contact(**vars_of(c))), sql)
                state = rng.choice([State.ASSIGNED, State.SNOOZED, State.CLOSED])
                views.both(lambda v, c=cid, s=state: setattr(v.conversation(c), "state", s), sql)
                check(views, sql)
            views.both(
                lambda v: v.add_conversation(Conversation(v.tenant, "B2", "v1", {}, at(0))), sql
            )
            check(views, sql)
        with views.transaction() as (_memory, sql):
            check(views, sql)
    assert chosen > 0


def vars_of(contact: Contact) -> dict[str, Any]:
    return {k: getattr(contact, k) for k in Contact.__dataclass_fields__}


def test_last_answered_contact_prefers_open_then_latest_end_then_start_then_ids(
    sorting_runtime: bootstrap.Runtime,
) -> None:
    views = Views(sorting_runtime, "a")

    def contact(cid: str, number: int, started: float, ended: float | None) -> Callable:
        return lambda v: v.add_contact(
            Contact(v.tenant, cid, number, "r1", None, at(started),
                    ended_at=None if ended is None else at(ended), answered=True)
        )  # fmt: skip

    def conversation(cid: str) -> Callable:
        return lambda v: v.add_conversation(Conversation(v.tenant, cid, "v1", {}, at(0)))

    steps: list[tuple[Callable, tuple[str, int]]] = [
        (contact("c1", 1, 0, 5), ("c1", 1)),
        (contact("c1", 2, 6, 7), ("c1", 2)),  # ended later
        (contact("C1", 1, 1, 7), ("c1", 2)),  # same end, started earlier
        (contact("c1", 3, 1, 7), ("c1", 2)),
        (contact("C1", 2, 6, 7), ("c1", 2)),  # a full tie but for the id: "c1" > "C1"
        (contact("c1", 4, 6, 7), ("c1", 4)),  # then the number
        (contact("b1", 1, -10, None), ("b1", 1)),  # open before any ended one
        (contact("c2", 1, -11, None), ("b1", 1)),  # the latest started open one
    ]
    with views.transaction() as (memory, sql):
        for cid in ("c1", "C1", "b1", "c2"):
            views.both(conversation(cid), sql)
        for step, expected in steps:
            views.both(step, sql)
            assert last_answered(sql)["v1"] == last_answered(memory)["v1"] == expected
    with views.transaction() as (memory, sql):
        assert last_answered(sql) == last_answered(memory)


# ---------------------------------------------------------------- timers


def test_armed_timers_of_kind_answer_as_the_memory_view(runtime: bootstrap.Runtime) -> None:
    rng = random.Random(7)
    kinds = [TimerKind.WAKE, TimerKind.ANSWER, TimerKind.IDLE, TimerKind.OVERFLOW]
    states = [TimerState.ARMED, TimerState.ARMED, TimerState.FIRED, TimerState.CANCELLED]

    def of_kind(view: Any) -> dict[str, list[str]]:
        return {k: [t.timer_id for t in view.armed_timers_of_kind(k)] for k in kinds}

    for views in each_tenant(runtime):
        timers = [
            (f"{kind}:{cid}:{n}", kind, cid, at(rng.randint(1, 100)), rng.choice(states))
            for n, cid in enumerate(CIDS * 3)
            for kind in [rng.choice(kinds)]
        ]
        with views.transaction() as (memory, sql):
            assert of_kind(sql) == of_kind(memory) == {k: [] for k in kinds}
            for tid, kind, cid, due, state in timers:
                views.both(
                    lambda v, i=tid, k=kind, c=cid, d=due, s=state: v.arm_timer(
                        Timer(v.tenant, i, k, c, d, state=s)
                    ),
                    sql,
                )
            assert of_kind(sql) == of_kind(memory)
        with views.transaction() as (memory, sql):
            assert of_kind(sql) == of_kind(memory)
            # The per-conversation cache and these lists hand out the same live timers.
            # (the two views list a conversation's timers in other orders: compared as sets)
            assert {t.timer_id for t in sql.armed_timers("c1")} == {
                t.timer_id for t in memory.armed_timers("c1")
            }
            for cid in ("c1", "b1"):
                views.both(
                    lambda v, c=cid: v.arm_timer(
                        Timer(v.tenant, f"idle:{c}:new", "idle", c, at(9))
                    ),
                    sql,
                )
            idle = sql.armed_timers_of_kind(TimerKind.IDLE)
            for timer in idle:
                assert any(timer is t for t in sql.armed_timers(timer.conversation_id))
            victim = idle[0].timer_id
            for view in (memory, sql):
                next(
                    t for t in view.armed_timers_of_kind("idle") if t.timer_id == victim
                ).state = TimerState.CANCELLED
            assert of_kind(sql) == of_kind(memory)
            views.both(
                lambda v: v.arm_timer(Timer(v.tenant, "idle:c2:later", "idle", "c2", at(9))), sql
            )
            for cid in CIDS:
                assert sorted(t.timer_id for t in sql.armed_timers(cid)) == sorted(
                    t.timer_id for t in memory.armed_timers(cid)
                )
            assert of_kind(sql) == of_kind(memory)
        with views.transaction() as (memory, sql):
            assert of_kind(sql) == of_kind(memory)


# ---------------------------------------------------------------- migration 0010


def migrate_to(url: str, revision: str, *, down: bool = False) -> None:
    engine = db.make_engine(url)
    config = Config()
    config.set_main_option("script_location", str(db.MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)
    engine.dispose()


def test_migration_0010_fills_the_new_columns_of_existing_rows(db_url: str) -> None:
    migrate_to(db_url, "0009")
    engine = db.make_engine(db_url)
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO tenants (tenant) VALUES ('a'), ('b')"))
        for tenant in ("a", "b"):
            for n, (group, minute) in enumerate([("g1", 5), ("g1", 1), ("g2", 3), ("g1", 2)]):
                connection.execute(
                    text(
                        "INSERT INTO queue_entries (tenant, conversation_id, group_id, seq, "
                        "queued_at) VALUES (:t, :c, :g, :s, :q)"
                    ).bindparams(
                        t=tenant, c=f"c{n}", g=group, s=n + 1, q=at(minute).replace(tzinfo=None)
                    )
                )
        connection.execute(
            text(
                "INSERT INTO conversations (tenant, conversation_id, visitor, attributes, "
                "started_at, state, visitor_online, unread, snooze_keep, sales, contacts) "
                "VALUES ('a', 'c0', 'v1', '{}', :t, 'queued', true, 0, true, 0, 0)"
            ).bindparams(t=at(0).replace(tzinfo=None))
        )
        connection.execute(
            text(
                "INSERT INTO rules (tenant, rule_id, group_id, priority, conditions) "
                "VALUES ('a', 'all', 'g1', 1, '[]')"
            )
        )
    engine.dispose()
    # Down and up again: the downgrade works on filled tables too.
    migrate_to(db_url, "head")
    migrate_to(db_url, "0009", down=True)
    rt = bootstrap.build(Settings(database_url=db_url), migrate=True)
    try:
        with rt.sessions.begin() as session:
            rows = session.execute(
                select(tables.queue_entries).order_by(
                    tables.queue_entries.c.tenant, tables.queue_entries.c.seq
                )
            ).all()
            assert len(rows) == 8
            for row in rows:
                assert (row.joined_at, row.priority, row.cause, row.excluded) == (
                    row.queued_at,
                    0,
                    "new",
                    None,
                )
            settings = session.get(TenantSettings, "a")
            assert (
                settings.sticky_within_s,
                settings.answer_within_s,
                settings.pause_on_no_answer,
                settings.close_after_idle_s,
                settings.idle_since,
            ) == (0, None, False, None, None)
            view = SqlTenantView(session, settings)
            conversation = view.conversation("c0")
            assert (conversation.priority, conversation.overflows, conversation.rule_targets) == (
                0,
                None,
                None,
            )
            assert view.rule("all").targets is None
            assert view.rule("all").target_list() == [{"group": "g1", "wait_s": None}]
            head = view.queue_head(["g1", "g2"], "r1")
            assert head is not None and head.conversation_id == "c1"  # queued first (minute 1)
            assert view.queue_position(view.queue_entry("c0")) == 3
            assert view.queue_length("g1", 10) == 3
            conversation.overflows = [["g1", "g2"]]  # replaced whole, as the domain does
        with rt.sessions.begin() as session:
            found = session.get(Conversation, ("a", "c0"))
            assert found is not None and found.overflows == [["g1", "g2"]]
    finally:
        rt.engine.dispose()


# ---------------------------------------------------------------- the queue's index

BIG = 100_000
POSITIONS = ("q000000", "q050001", "q099950", "q099999")  # the last: behind 98% of the table


def fill_queue(rt: bootstrap.Runtime) -> dict[str, int]:
    """100,000 entries in group G of tenant a (and a few elsewhere); returns the places of
    ``POSITIONS`` in G by ``QueueEntry.order_key``."""
    rows = [
        {
            "tenant": "a",
            "conversation_id": f"q{n:06d}",
            "group_id": "G",
            "seq": n + 1,
            "queued_at": at(n / 60),
            "priority": 1 if n % 50 == 0 else 0,
            "joined_at": at(n / 60 - (5 if n % 7 == 0 else 0)),  # some kept by an overflow
            "cause": "new",
            "excluded": "r1" if n < 10 else None,
        }
        for n in range(BIG)
    ]
    in_order = sorted(rows, key=lambda r: (-r["priority"], r["joined_at"], r["seq"]))
    places = {r["conversation_id"]: n for n, r in enumerate(in_order, start=1)}
    rows += [dict(r, tenant="b") for r in rows[:100]] + [
        dict(r, group_id="G2", conversation_id=f"x{r['conversation_id']}") for r in rows[:100]
    ]
    with rt.engine.begin() as connection:
        for start in range(0, len(rows), 10_000):
            connection.execute(insert(tables.queue_entries), rows[start : start + 10_000])
    return {cid: places[cid] for cid in POSITIONS}


def queue_statements(rt: bootstrap.Runtime, places: dict[str, int]) -> list[tuple[str, str, Any]]:
    """The statements queue_head, queue_position and queue_length send, as sent, named."""
    sent: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "queue_entries.group_id = " in statement:  # not the lookups by id
            sent.append((statement, parameters))

    event.listen(rt.engine, "before_cursor_execute", record)
    try:
        with rt.sessions.begin() as session:
            view = SqlTenantView(session, session.get(TenantSettings, "a"))
            assert view.queue_head(["G", "G2"], "r1").conversation_id == "q000050"
            for cid in POSITIONS:
                assert view.queue_position(view.queue_entry(cid)) == places[cid]
            assert view.queue_length("G", 500) == 500
    finally:
        event.remove(rt.engine, "before_cursor_execute", record)
    names = ["head G", "head G2", *(f"position {cid}" for cid in POSITIONS), "length"]
    assert len(sent) == len(names)
    return [(name, *statement) for name, statement in zip(names, sent, strict=True)]


def test_queue_queries_use_the_queue_index_on_postgresql(pg_url: str) -> None:
    """Every plan walks ranges of ix_queue_entries_order, as a custom plan (the values known)
    and as a generic one (what a statement prepared by psycopg gets), but one: counting the
    entries ahead of the last of 100,000, 98% of the table, PostgreSQL rightly reads the table
    (a seq scan was faster there than the index-only scan: 17 ms against 25 ms); its generic
    plan is checked."""
    rt = bootstrap.build(Settings(database_url=pg_url), migrate=True)
    try:
        with rt.sessions.begin() as session:
            session.add(TenantSettings("a"))
            session.add(TenantSettings("b"))
        places = fill_queue(rt)
        # As autovacuum leaves the table: statistics, and the visibility map an index-only
        # scan needs.
        with rt.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM ANALYZE queue_entries")
        statements = queue_statements(rt, places)
        with rt.engine.connect() as connection:
            for name, statement, parameters in statements:
                plans = [generic_plan(connection, statement, parameters)]
                if name != "position q099999":
                    plans.append(custom_plan(connection, statement, parameters))
                for plan in plans:
                    assert "Seq Scan" not in plan, f"{name}:\n{plan}"
                    assert "ix_queue_entries_order" in plan, f"{name}:\n{plan}"
                    if name.startswith("position") and "q000000" not in name:
                        # the row comparison bounds the range (q000000 has none ahead of it
                        # of its priority: an empty range, planned as such)
                        assert re.search(r"Index Cond: .*ROW\(joined_at, seq\) <", plan), plan
    finally:
        rt.engine.dispose()


def custom_plan(connection: Connection, statement: str, parameters: Any) -> str:
    rows = connection.exec_driver_sql("EXPLAIN " + statement, parameters).all()
    return "\n".join(r[0] for r in rows)


def generic_plan(connection: Connection, statement: str, parameters: dict[str, Any]) -> str:
    """The plan of the statement once prepared (psycopg prepares what runs often), as
    PostgreSQL plans it without the parameters' values."""
    names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", statement)))
    positional = re.sub(r"%\((\w+)\)s", lambda m: f"${names.index(m.group(1)) + 1}", statement)
    values = ", ".join(literal(parameters[name]) for name in names)
    cursor = connection.connection.cursor()
    try:
        cursor.execute("SET plan_cache_mode = force_generic_plan")
        cursor.execute(f"PREPARE queue_query AS {positional}")
        cursor.execute(f"EXPLAIN EXECUTE queue_query({values})")
        plan = "\n".join(r[0] for r in cursor.fetchall())
        cursor.execute("DEALLOCATE queue_query")
        cursor.execute("RESET plan_cache_mode")
        return plan
    finally:
        cursor.close()


def literal(value: Any) -> str:
    if isinstance(value, bool | int):
        return str(value)
    if isinstance(value, datetime):
        return f"'{value.isoformat()}'"
    assert isinstance(value, str) and "'" not in value
    return f"'{value}'"


def test_queue_queries_use_the_queue_index_on_sqlite(sqlite_url: str) -> None:
    rt = bootstrap.build(Settings(database_url=sqlite_url), migrate=True)
    try:
        with rt.sessions.begin() as session:
            session.add(TenantSettings("a"))
            session.add(TenantSettings("b"))
        places = fill_queue(rt)
        with rt.engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE")
        with rt.engine.connect() as connection:
            for name, statement, parameters in queue_statements(rt, places):
                rows = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
                plan = "\n".join(str(r[-1]) for r in rows)
                assert "ix_queue_entries_order" in plan, f"{name}:\n{plan}"
                assert not re.search(r"SCAN queue_entries(?! USING)", plan), f"{name}:\n{plan}"
                assert "TEMP B-TREE" not in plan, f"{name}:\n{plan}"  # no sort: index order
    finally:
        rt.engine.dispose()
