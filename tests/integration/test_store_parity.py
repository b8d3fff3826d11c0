"""The SQL store behaves as the in-memory view: same decisions for the same random steps.

Given random command sequences (the domain property test's), when they are applied through
``SqlTenantView`` on SQLite and on PostgreSQL and through ``InMemoryTenantView``, then every
step yields the same decisions and the same rejections. Each example runs in a tenant of its
own, so this also shows tenants do not see each other's rows.
"""

from __future__ import annotations

import dataclasses
import random
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from sqlalchemy import select

from chatroute import bootstrap
from chatroute.domain.commands import (
    Command,
    ConversationClosed,
    ConversationSnoozed,
    ConversationStarted,
    RespondentStatus,
    RespondentUpdated,
    RuleUpdated,
)
from chatroute.domain.lifecycle import fire_due, handle
from chatroute.domain.memory import InMemoryTenantView
from chatroute.domain.model import Decision, TenantSettings
from chatroute.domain.ports import TenantView
from chatroute.errors import Rejected
from chatroute.settings import Settings
from chatroute.store import census, tables, unit
from chatroute.store import view as view_module
from chatroute.store.view import SqlTenantView
from tests.unit.test_domain_properties import SETUP, STEPS, T0

Outcome = list[Decision] | str


def outcome(apply: Callable[[], list[Decision]]) -> Outcome:
    try:
        return apply()
    except Rejected as error:
        return f"rejected: {error.reason}"


def steps_outcomes(
    run: Callable[[Callable[[TenantView], Outcome]], Outcome],
    steps: list[tuple[int, Command, int | None]],
) -> list[Outcome]:
    now = T0
    results: list[Outcome] = []
    for command in SETUP:
        results.append(run(lambda view, c=command, t=now: outcome(lambda: handle(view, c, t))))
    for minutes, command, wake_in in steps:
        now += timedelta(minutes=minutes)
        if isinstance(command, ConversationSnoozed) and wake_in is not None:
            command = dataclasses.replace(command, until=now + timedelta(minutes=wake_in))
        results.append(run(lambda view, t=now: fire_due(view, t)))
        results.append(run(lambda view, c=command, t=now: outcome(lambda: handle(view, c, t))))
        results.append(run(lambda view, t=now: fire_due(view, t)))
    return results


def census_is_a_recount(rt: bootstrap.Runtime, tenant: str) -> None:
    """The census the flushes kept (``store.census``) is the members counted again."""
    g = tables.group_census.c
    kept = select(g.group_id, g.members, g.unavailable, g.full).where(g.tenant == tenant)
    with rt.engine.connect() as connection:
        counts = sorted(tuple(row) for row in connection.execute(kept))
        census.recount(connection, tenant)
        assert sorted(tuple(row) for row in connection.execute(kept)) == counts
        connection.rollback()


def in_memory(steps: list[tuple[int, Command, int | None]]) -> list[Outcome]:
    view = InMemoryTenantView("t")
    return steps_outcomes(lambda apply: apply(view), steps)


def in_sql(rt: bootstrap.Runtime, steps: list[tuple[int, Command, int | None]]) -> list[Outcome]:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    with rt.sessions.begin() as session:
        session.add(TenantSettings(tenant))

    def run(apply: Callable[[TenantView], Outcome]) -> Outcome:
        # One transaction per step, as the workers do; a rejection must leave no trace.
        with rt.sessions.begin() as session:
            view = SqlTenantView(session, session.get(TenantSettings, tenant))
            result = apply(view)
            if isinstance(result, str):
                session.rollback()
            return result

    results = steps_outcomes(run, steps)
    census_is_a_recount(rt, tenant)
    return results


def in_one_transaction(
    rt: bootstrap.Runtime, steps: list[tuple[int, Command, int | None]]
) -> list[Outcome]:
    """All steps through one view, as a worker applies a batch: its caches must stay true."""
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    with rt.sessions.begin() as session:
        settings = TenantSettings(tenant)
        session.add(settings)
        view = SqlTenantView(session, settings)
        results = steps_outcomes(lambda apply: apply(view), steps)
    census_is_a_recount(rt, tenant)
    return results


def across_kept_transactions(
    rt: bootstrap.Runtime, steps: list[tuple[int, Command, int | None]]
) -> list[Outcome]:
    """Each step in a transaction of its own, through the view the process keeps between a
    tenant's transactions (``store.unit.KeptViews``): what it keeps must stay true."""
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    with rt.sessions.begin() as session:
        session.add(TenantSettings(tenant))
    kept = unit.KeptViews()

    def run(apply: Callable[[TenantView], Outcome]) -> Outcome:
        with unit.tenant_work(rt.sessions, tenant, T0, kept) as work:
            assert work is not None
            return apply(work.view)

    results = steps_outcomes(run, steps)
    census_is_a_recount(rt, tenant)
    return results


@pytest.fixture
def runtime(db_url: str) -> Iterator[bootstrap.Runtime]:
    rt = bootstrap.build(Settings(database_url=db_url), migrate=True)
    yield rt
    rt.engine.dispose()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=STEPS)
def test_sql_store_decides_as_the_memory_view(runtime: bootstrap.Runtime, steps: list) -> None:
    assert in_sql(runtime, steps) == in_memory(steps)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=STEPS)
def test_one_long_transaction_decides_as_the_memory_view(
    runtime: bootstrap.Runtime, steps: list
) -> None:
    assert in_one_transaction(runtime, steps) == in_memory(steps)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=STEPS)
def test_a_view_kept_across_transactions_decides_as_the_memory_view(
    runtime: bootstrap.Runtime, steps: list
) -> None:
    assert across_kept_transactions(runtime, steps) == in_memory(steps)


def big_team_day(seed: int) -> tuple[list[Command], list[Command]]:
    """A group larger than the store's ranking (``view.RANKED``): 40 respondents with 2 slots
    (set up first), then many starts and closes and a few status flips, so the best free
    members keep changing within one transaction."""
    rng = random.Random(seed)
    setup: list[Command] = [RuleUpdated("all", "G", 1)]
    people = [f"r{n:02d}" for n in range(40)]
    for rid in people:
        setup += [RespondentUpdated(rid, ["G"], 2), RespondentStatus(rid, "available")]
    traffic: list[Command] = []
    open_ids: list[str] = []
    for n in range(300):
        roll = rng.random()
        if n < 70 or roll < 0.5 or not open_ids:  # first fill more than the ranking holds
            open_ids.append(f"c{n}")
            traffic.append(ConversationStarted(f"c{n}", "v"))
        elif roll < 0.95:
            traffic.append(ConversationClosed(open_ids.pop(rng.randrange(len(open_ids)))))
        else:
            traffic.append(
                RespondentStatus(rng.choice(people), rng.choice(["available", "unavailable"]))
            )
    return setup, traffic


@pytest.mark.parametrize("seed", [1, 2])
def test_a_group_larger_than_the_ranking_decides_as_the_memory_view(
    runtime: bootstrap.Runtime, seed: int
) -> None:
    setup, traffic = big_team_day(seed)
    memory = InMemoryTenantView("t")
    expected = [
        outcome(lambda c=c, n=n: handle(memory, c, T0 + timedelta(seconds=n)))
        for n, c in enumerate(setup + traffic)
    ]
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    got: list[Outcome] = []
    for part, offset in ((setup, 0), (traffic, len(setup))):
        with runtime.sessions.begin() as session:  # a fresh view: nobody looked at yet
            settings = session.get(TenantSettings, tenant) or TenantSettings(tenant)
            session.add(settings)
            view = SqlTenantView(session, settings)
            got += [
                outcome(lambda c=c, n=n, v=view: handle(v, c, T0 + timedelta(seconds=n)))
                for n, c in enumerate(part, start=offset)
            ]
    assert got == expected
    assert (
        sum(d.type == "conversation.assigned" for o in got if isinstance(o, list) for d in o) > 150
    )
    census_is_a_recount(runtime, tenant)


@pytest.mark.parametrize("seed", [1, 2])
def test_a_kept_view_of_a_group_larger_than_its_ranking_decides_as_the_memory_view(
    runtime: bootstrap.Runtime, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rankings of 8 dropped with the members looked at past 12: read again in later
    transactions of the kept view, as a group of thousands would be."""
    monkeypatch.setattr(view_module, "RANKED", 8)
    monkeypatch.setattr(view_module, "LOOKED_AT", 12)
    setup, traffic = big_team_day(seed)
    commands = setup + traffic
    memory = InMemoryTenantView("t")
    expected = [
        outcome(lambda c=c, n=n: handle(memory, c, T0 + timedelta(seconds=n)))
        for n, c in enumerate(commands)
    ]
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    with runtime.sessions.begin() as session:
        session.add(TenantSettings(tenant))
    kept, sizes, got = unit.KeptViews(), random.Random(seed), []
    while len(got) < len(commands):
        with unit.tenant_work(runtime.sessions, tenant, T0, kept) as work:
            assert work is not None
            for n in range(len(got), min(len(commands), len(got) + sizes.randint(1, 12))):
                when = T0 + timedelta(seconds=n)
                got.append(outcome(lambda c=commands[n], t=when: handle(work.view, c, t)))
    assert got == expected
    census_is_a_recount(runtime, tenant)
