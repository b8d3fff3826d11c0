"""Statistics and history of the routing policy (contract v2), on SQLite and PostgreSQL.

The fold and ``chatroute stats --by group|day`` over hand-written conversations and contacts
(as the domain leaves them): overflow moves in and out of groups, unrouted conversations by
code, idle closes and missed answer deadlines; then the same through ``chatroute replay``,
with the marks ``chatroute history`` gives them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import column, delete, insert, select, table, update

from chatroute import bootstrap
from chatroute.domain.model import Contact, Conversation, TenantSettings
from chatroute.history import timeline
from chatroute.settings import Settings
from chatroute.stats import UNROUTED_CODES, Window, columns, fold_tenant, rows, stale_tenants
from chatroute.store import db, tables
from tests.builders import Events, jsonl
from tests.integration.test_replay import run

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
DAY2 = T0 + timedelta(days=1)
V2_COLUMNS = (
    "overflowed_in",
    "overflowed_out",
    *(f"unrouted_{code}" for code in UNROUTED_CODES),
)


@pytest.fixture
def rt(db_url: str) -> Iterator[bootstrap.Runtime]:
    runtime = bootstrap.build(Settings(database_url=db_url), migrate=True)
    yield runtime
    runtime.engine.dispose()


def conversation(tenant: str, cid: str, group: str | None, **fields: Any) -> Conversation:
    started = fields.pop("started_at", T0)
    return Conversation(tenant, cid, f"v-{cid}", {}, started, group=group, **fields)


def contact(tenant: str, cid: str, number: int, rid: str, group: str, **fields: Any) -> Contact:
    answered_after = fields.pop("answered_after_s", None)
    started = fields.pop("started_at", T0)
    answered = {}
    if answered_after is not None:
        answered = {
            "answered": True,
            "first_response_at": started + timedelta(seconds=answered_after),
        }
    return Contact(tenant, cid, number, rid, group, started, **answered, **fields)


def t1_day() -> list[Conversation | Contact]:
    """Tenant t1: every way a v2 conversation counts, one each."""
    t = "t1"
    return [
        TenantSettings(t),
        # queued at A, overflowed to B after its wait, assigned there 60 s after its start
        conversation(t, "over", "B", state="assigned", respondent="r1", queued_at=T0,
                     overflows=[["A", "B"]]),
        contact(t, "over", 1, "r1", "B", started_at=T0 + timedelta(seconds=60),
                answered_after_s=5),
        # queued at B, waited there, and no later target took it
        conversation(t, "timeout", "B", state="unrouted", unrouted_code="wait_timeout",
                     queued_at=T0, overflows=[["B", None]]),
        conversation(t, "no-rule", None, state="unrouted", unrouted_code="no_rule"),
        conversation(t, "closed", "A", state="unrouted", unrouted_code="closed"),
        conversation(t, "full", "A", state="unrouted", unrouted_code="queue_full"),
        # answered by r2, then closed by the engine when it went idle
        conversation(t, "idle", "C", state="closed", close_cause="idle", closed_at=T0),
        contact(t, "idle", 1, "r2", "C", answered_after_s=10, end_reason="idle",
                ended_at=T0 + timedelta(minutes=5)),
        # r3 missed the answer deadline; r2 took it and answered
        conversation(t, "missed", "C", state="assigned", respondent="r2"),
        contact(t, "missed", 1, "r3", "C", end_reason="no_answer",
                ended_at=T0 + timedelta(seconds=30)),
        contact(t, "missed", 2, "r2", "C", started_at=T0 + timedelta(seconds=30),
                answered_after_s=3),
        # the next day: overflowed A -> D, then transferred to group E before anyone took it
        conversation(t, "via", "E", state="assigned", respondent="r4", started_at=DAY2,
                     queued_at=DAY2, overflows=[["A", "D"]]),
        contact(t, "via", 1, "r4", "E", started_at=DAY2 + timedelta(seconds=90)),
    ]  # fmt: skip


def t2_day() -> list[Conversation | Contact]:
    """Tenant t2: the same conversation id, overflowed elsewhere."""
    return [
        TenantSettings("t2"),
        conversation("t2", "over", "Z", state="queued", queued_at=T0, overflows=[["A", "Z"]]),
    ]


def store(rt: bootstrap.Runtime, *objects: Any) -> None:
    with rt.sessions.begin() as session:
        session.add_all(objects)


def zero(tenant: str, by: str, key: str | None, **values: Any) -> dict[str, Any]:
    """A row of ``rows(by=by)`` with nothing counted but ``values``."""
    row: dict[str, Any] = dict.fromkeys(columns(by), 0) | {"tenant": tenant, by: key}
    row |= {"commission": 0.0, "satisfaction_avg": None, "first_response_avg_s": None}
    row |= {"wait_avg_s": None, "wait_p90_s": None}
    return row | values


T1_GROUPS = [
    zero("t1", "group", "A", conversations=2, unrouted=2, unrouted_closed=1,
         unrouted_queue_full=1, overflowed_out=2),
    zero("t1", "group", "B", conversations=2, queued=2, unrouted=1, unrouted_wait_timeout=1,
         overflowed_in=1, overflowed_out=1, contacts=1, answered=1, first_response_avg_s=5.0,
         wait_avg_s=60.0, wait_p90_s=60.0),
    zero("t1", "group", "C", conversations=2, contacts=3, answered=2, unanswered=1,
         first_response_avg_s=6.5, wait_avg_s=0.0, wait_p90_s=0.0),
    zero("t1", "group", "D", overflowed_in=1),  # only an overflow target: a row all the same
    zero("t1", "group", "E", conversations=1, queued=1, contacts=1, unanswered=1,
         wait_avg_s=90.0, wait_p90_s=90.0),
    zero("t1", "group", None, conversations=1, unrouted=1, unrouted_no_rule=1),
]  # fmt: skip
T2_GROUPS = [
    zero("t2", "group", "A", overflowed_out=1),
    zero("t2", "group", "Z", conversations=1, queued=1, overflowed_in=1),
]


def test_group_rows_count_overflows_in_and_out_and_unrouted_by_code(
    rt: bootstrap.Runtime,
) -> None:
    store(rt, *t1_day())
    store(rt, *t2_day())
    assert stale_tenants(rt) == ["t1", "t2"]
    fold_tenant(rt, "t1")
    fold_tenant(rt, "t2")
    assert rows(rt, "group", Window("t1")) == T1_GROUPS
    assert rows(rt, "group", Window("t2")) == T2_GROUPS
    assert rows(rt, "group") == T1_GROUPS + T2_GROUPS  # tenants apart, never summed


def test_unrouted_is_the_sum_of_its_codes_and_overflows_balance(rt: bootstrap.Runtime) -> None:
    store(rt, *t1_day())
    fold_tenant(rt, "t1")
    found = rows(rt, "group", Window("t1"))
    for row in found:
        assert row["unrouted"] == sum(row[f"unrouted_{code}"] for code in UNROUTED_CODES)
    moves = sum(r["overflowed_out"] for r in found)
    assert (moves, sum(r["overflowed_in"] for r in found)) == (3, 2)  # one went nowhere


def test_day_rows_and_windows_count_moves_by_their_conversations_start(
    rt: bootstrap.Runtime,
) -> None:
    store(rt, *t1_day())
    fold_tenant(rt, "t1")
    days = {r["day"]: r for r in rows(rt, "day", Window("t1"))}
    assert sorted(days) == ["2026-11-22", "2026-11-23"]
    first, second = days["2026-11-22"], days["2026-11-23"]
    v2 = ("conversations", "unrouted", *V2_COLUMNS)
    assert tuple(first[k] for k in v2) == (7, 4, 1, 2, 1, 1, 1, 1)
    assert tuple(second[k] for k in v2) == (1, 0, 1, 1, 0, 0, 0, 0)
    later = rows(rt, "group", Window("t1", since=T0 + timedelta(hours=12)))
    assert [(r["group"], r["conversations"], r["overflowed_in"], r["overflowed_out"])
            for r in later] == [("A", 0, 0, 1), ("D", 0, 1, 0), ("E", 1, 0, 0)]  # fmt: skip


def test_respondent_rows_keep_the_v1_columns_and_count_a_missed_deadline_as_unanswered(
    rt: bootstrap.Runtime,
) -> None:
    store(rt, *t1_day())
    fold_tenant(rt, "t1")
    people = {r["respondent"]: r for r in rows(rt, "respondent", Window("t1"))}
    assert all(list(r) == list(columns("respondent")) for r in people.values())
    assert not set(V2_COLUMNS) & set(columns("respondent"))
    keys = ("contacts", "answered", "unanswered", "transfers_out")
    assert {rid: tuple(r[k] for k in keys) for rid, r in people.items()} == {
        "r1": (1, 1, 0, 0),
        "r2": (2, 2, 0, 0),  # the idle close ended one like a close
        "r3": (1, 0, 1, 0),  # the missed deadline: unanswered, and no transfer
        "r4": (1, 0, 1, 0),
    }


def test_folding_again_or_from_scratch_counts_nothing_twice(rt: bootstrap.Runtime) -> None:
    store(rt, *t1_day())
    store(rt, *t2_day())
    for tenant in ("t1", "t2"):
        fold_tenant(rt, tenant)
    before = {by: rows(rt, by) for by in ("respondent", "group", "day")}
    with rt.engine.begin() as connection:  # every conversation folded a second time
        connection.execute(update(tables.stats_checkpoints).values(seq=-1))
    assert stale_tenants(rt) == ["t1", "t2"]
    fold_tenant(rt, "t1")
    fold_tenant(rt, "t1")
    fold_tenant(rt, "t2")
    assert {by: rows(rt, by) for by in before} == before
    with rt.engine.connect() as connection:
        assert len(connection.execute(select(tables.overflow_figures)).all()) == 4
    with rt.engine.begin() as connection:
        for table in (
            tables.contact_figures,
            tables.conversation_figures,
            tables.overflow_figures,
            tables.stats_checkpoints,
        ):
            connection.execute(delete(table))
    fold_tenant(rt, "t1")
    fold_tenant(rt, "t2")
    assert {by: rows(rt, by) for by in before} == before


def test_a_refold_replaces_a_conversations_moves(rt: bootstrap.Runtime) -> None:
    store(rt, *t2_day())
    fold_tenant(rt, "t2")
    with rt.sessions.begin() as session:  # it waited at Z too, and no target was left
        moved = session.get(Conversation, ("t2", "over"))
        assert moved is not None
        moved.overflows = [["A", "Z"], ["Z", None]]
        moved.state, moved.unrouted_code = "unrouted", "wait_timeout"
    fold_tenant(rt, "t2")
    assert rows(rt, "group", Window("t2")) == [
        zero("t2", "group", "A", overflowed_out=1),
        zero("t2", "group", "Z", conversations=1, queued=1, overflowed_in=1, overflowed_out=1,
             unrouted=1, unrouted_wait_timeout=1),
    ]  # fmt: skip


def test_migration_0011_gives_figures_folded_before_it_the_no_rule_code(db_url: str) -> None:
    """Before v2 a conversation was unrouted only when no rule matched: its stored figures
    get that code without a refold."""
    engine = db.make_engine(db_url)
    config = Config()
    config.set_main_option("script_location", str(db.MIGRATIONS))
    # conversation_figures as revision 0010 has it: without unrouted_code
    names = [c.name for c in tables.conversation_figures.c if c.name != "unrouted_code"]
    before = table("conversation_figures", *(column(name) for name in names))
    row = {"tenant": "t1", "started_at": T0, "day": "2026-11-22", "queued": 0, "wait_s": None}
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0010")
            connection.execute(
                insert(before),
                [
                    row | {"conversation_id": "u1", "group_id": None, "unrouted": 1},
                    row | {"conversation_id": "c1", "group_id": "G", "unrouted": 0},
                ],
            )
            command.upgrade(config, "head")
            c = tables.conversation_figures.c
            found = dict(connection.execute(select(c.conversation_id, c.unrouted_code)).all())
        assert found == {"u1": "no_rule", "c1": None}
    finally:
        engine.dispose()


# ---------------------------------------------------------------- through the engine


def history(tmp_path: Path, name: str, cid: str) -> list[tuple[str, str | None]]:
    """(type, mark) of each decision in the conversation's history."""
    rt = bootstrap.build(Settings(database_url=f"sqlite:///{tmp_path}/{name}.db"))
    entries = timeline(rt, "shop-1", cid)
    rt.engine.dispose()
    return [(e["type"], e.get("mark")) for e in entries if e["kind"] == "decision"]


def replayed_rows(tmp_path: Path, name: str, by: str) -> dict[Any, dict[str, Any]]:
    rt = bootstrap.build(Settings(database_url=f"sqlite:///{tmp_path}/{name}.db"))
    found = {r[by]: r for r in rows(rt, by, Window("shop-1"))}
    rt.engine.dispose()
    return found


def test_overflows_through_replay_in_stats_and_history(tmp_path: Path) -> None:
    # Given a rule A (wait 60 s) then B (wait 60 s), one respondent in each, a busy
    shop = Events("shop-1")
    targets = [{"group": "A", "wait_s": 60}, {"group": "B", "wait_s": 60}]
    shop.event("rule.updated", rule="r", priority=10, targets=targets, conditions=[])
    shop.respondent("a", ["A"])
    shop.respondent("b", ["B"])
    shop.start("busy")  # a takes it
    shop.start("c1")  # queued at A
    shop.later(seconds=70)
    shop.start("c2")  # c1 went on to b at 60 s; c2 queued at A
    # When the waits run out: c2 moves to B's queue (b is busy), then leaves it for nowhere
    decisions = run(tmp_path, jsonl(shop.lines), until=shop.now + timedelta(minutes=3), name="o")
    assert [d["data"].get("code") for d in decisions if d["type"] == "conversation.unrouted"] == [
        "wait_timeout"
    ]
    # Then A has two moves out, B two in and one out, with c2 unrouted there
    groups = replayed_rows(tmp_path, "o", "group")
    assert list(groups) == ["A", "B"]
    keys = ("conversations", "queued", "overflowed_in", "overflowed_out", "unrouted",
            "unrouted_wait_timeout")  # fmt: skip
    assert tuple(groups["A"][k] for k in keys) == (1, 0, 0, 2, 0, 0)
    assert tuple(groups["B"][k] for k in keys) == (2, 2, 2, 1, 1, 1)
    # and each conversation's history marks its moves
    assert history(tmp_path, "o", "c1") == [
        ("conversation.queued", None),
        ("conversation.assigned", "overflowed"),
    ]
    assert history(tmp_path, "o", "c2") == [
        ("conversation.queued", None),
        ("conversation.queued", "overflowed"),
        ("conversation.unrouted", "overflowed: no target left"),
    ]


def test_a_missed_deadline_a_pause_and_an_idle_close_through_replay(tmp_path: Path) -> None:
    # Given a 30 s answer deadline that pauses, and an idle close after 5 minutes
    shop = Events("shop-1")
    shop.event(
        "tenant.updated", answer_within_s=30, pause_on_no_answer=True, close_after_idle_s=300
    )
    shop.rule("all", "G")
    shop.respondent("a", ["G"])
    shop.respondent("b", ["G"])
    shop.start("c1")  # to a
    # When a lets the deadline pass (c1 goes to b, a is paused), b answers, nobody writes on
    shop.later(seconds=40)
    shop.event("message.posted", conversation="c1", author="respondent", respondent="b")
    shop.later(minutes=10)
    shop.event("conversation.closed", conversation="c1")  # too late: nothing, no rejection
    decisions = run(tmp_path, jsonl(shop.lines), name="d")
    assert "event.rejected" not in [d["type"] for d in decisions]
    paused = [d["data"] for d in decisions if d["type"] == "respondent.paused"]
    assert paused == [{"respondent": "a", "reason": "no_answer", "conversation": "c1"}]
    # Then the history of c1 shows the missed deadline, the pause (it names c1) and the close
    assert history(tmp_path, "d", "c1") == [
        ("conversation.assigned", None),
        ("conversation.assigned", "deadline missed"),
        ("respondent.paused", "respondent paused"),
        ("conversation.closed", "closed: idle"),
    ]
    # and a's contact is unanswered, no transfer; b's ended by the idle close, answered
    people = replayed_rows(tmp_path, "d", "respondent")
    keys = ("contacts", "answered", "unanswered", "transfers_out")
    assert tuple(people["a"][k] for k in keys) == (1, 0, 1, 0)
    assert tuple(people["b"][k] for k in keys) == (1, 1, 0, 0)
    groups = replayed_rows(tmp_path, "d", "group")
    assert (groups["G"]["conversations"], groups["G"]["unrouted"]) == (1, 0)
