"""Views kept between a tenant's transactions (``store.unit.KeptViews``), fenced by its version.

A worker process keeps a tenant's view (rules, rankings, the conversations it looked at) from
one applying transaction to the next. It may use it again only while no other process applied
the tenant: two processes applying the same tenants in turn must decide what one process does.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import event, select

from benchmarks.workload import day
from chatroute import apply, bootstrap, intake
from chatroute.clock import VirtualClock
from chatroute.domain.model import TenantSettings
from chatroute.settings import Settings
from chatroute.store import tables, unit
from chatroute.store.view import SqlTenantView
from tests.builders import Events
from tests.conftest import fresh_pg_database


def runtime(url: str, clock: VirtualClock) -> bootstrap.Runtime:
    return bootstrap.build(Settings(database_url=url), clock, migrate=True)


def chunks(events: list[dict], size: int) -> Iterator[list[dict]]:
    for start in range(0, len(events), size):
        yield events[start : start + size]


def run_day(appliers: list[bootstrap.Runtime], clock: VirtualClock, events: list[dict]) -> None:
    """Take ``events`` in chunks, each received at its time; after each chunk a randomly
    chosen runtime applies every tenant with work (as the nudged workers would)."""
    choose = random.Random(7)
    for chunk in chunks(events, 25):
        clock.advance_to(datetime.fromisoformat(chunk[-1]["time"]))
        messages = [
            intake.Incoming(json.dumps(e).encode(), None, datetime.fromisoformat(e["time"]))
            for e in chunk
        ]
        for tenant in sorted(intake.ingest(appliers[0], messages) | tenants_of(chunk)):
            applier = choose.choice(appliers)
            while apply.apply_tenant(applier, tenant):
                applier = choose.choice(appliers)


def tenants_of(chunk: list[dict]) -> set[str]:
    return {e["tenant"] for e in chunk}  # timers due: each tenant of the chunk is looked at


def decisions(rt: bootstrap.Runtime) -> list[str]:
    o = tables.outbox.c
    with rt.engine.connect() as connection:
        bodies = connection.scalars(select(o.body).where(o.exchange == "chat.decisions"))
        return sorted(bodies)


@pytest.fixture
def busy_day() -> list[dict]:
    """Three tenants, two respondents a group for 100 conversations an hour each: queues,
    transfers, snoozes woken by time and by replies, pending holds."""
    return day(300, tenants=3, respondents=10, span=timedelta(hours=1))


def test_two_processes_applying_in_turn_decide_what_one_process_decides(
    pg_url: str, busy_day: list[dict]
) -> None:
    clock, alone_clock = VirtualClock(), VirtualClock()
    shared = [runtime(pg_url, clock), runtime(pg_url, clock)]
    with fresh_pg_database() as alone_url:
        alone = runtime(alone_url, alone_clock)
        try:
            run_day(shared, clock, busy_day)
            run_day([alone], alone_clock, busy_day)
            found, expected = decisions(shared[0]), decisions(alone)
        finally:
            for rt in (*shared, alone):
                rt.engine.dispose()
    kinds = {json.loads(d)["type"] for d in expected}
    assert {"conversation.assigned", "conversation.queued"} <= kinds, kinds
    assert found == expected


def rule_reads(rt: bootstrap.Runtime) -> list[str]:
    """Statements that read the tenants' rules, as ``rt`` runs them."""
    seen: list[str] = []

    def note(_c: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM rules" in statement:
            seen.append(statement)

    event.listen(rt.engine, "before_cursor_execute", note)
    return seen


def test_a_view_is_used_again_only_while_no_other_process_applied_the_tenant(
    db_url: str,
) -> None:
    clock = VirtualClock()
    first, other = runtime(db_url, clock), runtime(db_url, clock)
    shop, bank = Events("shop-1"), Events("bank-7")
    for site in (shop, bank):
        site.rule("all", "G")
        site.respondent("a", ["G"], slots=3)
    reads = rule_reads(first)

    def start(rt: bootstrap.Runtime, site: Events, conversation: str) -> None:
        site.lines = []
        site.start(conversation)
        intake.ingest(rt, [intake.Incoming(json.dumps(e).encode()) for e in site.lines])
        while apply.apply_tenant(rt, site.tenant):
            pass

    try:
        intake.ingest(first, [intake.Incoming(json.dumps(e).encode()) for e in shop.lines])
        intake.ingest(first, [intake.Incoming(json.dumps(e).encode()) for e in bank.lines])
        start(first, shop, "c1")
        start(first, bank, "c1")
        assert len(reads) == 2  # each tenant's rules, once
        start(first, shop, "c2")  # its own view, still current: nothing to read again
        assert len(reads) == 2
        start(other, shop, "c3")  # another process fills the last slot ...
        start(first, shop, "c4")  # ... so this one reads the tenant afresh, and queues c4
        assert len(reads) == 3
        queued = [json.loads(d) for d in decisions(first)]
        assert {(d["tenant"], d["type"], d["data"]["conversation"]) for d in queued} >= {
            ("shop-1", "conversation.assigned", "c3"),
            ("shop-1", "conversation.queued", "c4"),
        }
    finally:
        first.engine.dispose()
        other.engine.dispose()


def test_a_process_that_keeps_no_rows_reads_each_transaction_afresh(sqlite_url: str) -> None:
    settings = Settings(database_url=sqlite_url, kept_rows=0)  # CHATROUTE_KEPT_ROWS=0
    rt = bootstrap.build(settings, VirtualClock(), migrate=True)
    shop = Events("shop-1")
    shop.rule("all", "G")
    shop.respondent("a", ["G"], slots=2)
    reads = rule_reads(rt)
    for conversation in ("c1", "c2"):
        shop.start(conversation)
        intake.ingest(rt, [intake.Incoming(json.dumps(e).encode()) for e in shop.lines])
        shop.lines = []
        while apply.apply_tenant(rt, "shop-1"):
            pass
    assert len(reads) == 2
    rt.engine.dispose()


def test_kept_views_hold_a_bounded_number_of_rows(sqlite_url: str) -> None:
    rt = runtime(sqlite_url, VirtualClock())
    held: list[TenantSettings] = []  # as a view's caches hold what it read

    def view_of(tenant: str, rows: int) -> unit.KeptView:
        session = rt.sessions()
        with session.begin():
            settings = [TenantSettings(f"{tenant}-{n}") for n in range(rows)]
            session.add_all(settings)
        held.extend(settings)
        return unit.KeptView(session, SqlTenantView(session, settings[0]))

    kept = unit.KeptViews(objects=10)
    kept.keep("a", view_of("a", 6))
    kept.keep("b", view_of("b", 6))  # 12 rows: the least recently kept goes
    kept.keep("c", view_of("c", 11))  # more than all may hold: not kept
    assert kept.take("a") is None
    assert kept.take("c") is None
    b = kept.take("b")
    assert b is not None
    assert kept.take("b") is None  # taken out while in use
    kept.keep("b", b)
    rt.engine.dispose()
