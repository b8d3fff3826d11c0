"""The store on SQLite and PostgreSQL: migrations, the inbox, the outbox, the tenant lock."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import OperationalError

from chatroute import apply, bootstrap, intake
from chatroute.clock import VirtualClock
from chatroute.settings import Settings
from chatroute.store import attempts, inbox, outbox, tables, unit
from chatroute.store.outbox import OutgoingMessage
from tests.builders import START, Events, rfc3339


@pytest.fixture
def rt(db_url: str) -> Iterator[bootstrap.Runtime]:
    runtime = bootstrap.build(Settings(database_url=db_url), migrate=True)
    yield runtime
    runtime.engine.dispose()


def incoming(*events: dict) -> list[intake.Incoming]:
    return [intake.Incoming(json.dumps(e).encode(), "application/cloudevents+json") for e in events]


def received_when_dated(*events: dict) -> list[intake.Incoming]:
    """``events`` received at the times they carry, so they fall before or after a timer."""
    return [
        intake.Incoming(json.dumps(e).encode(), None, datetime.fromisoformat(e["time"]))
        for e in events
    ]


def count(rt: bootstrap.Runtime, table: tables.Table, *where: object) -> int:
    with rt.engine.connect() as connection:
        return int(connection.scalar(select(func.count()).select_from(table).where(*where)) or 0)


def test_migrations_create_exactly_the_tables_the_code_declares(rt: bootstrap.Runtime) -> None:
    with rt.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), tables.metadata)
    assert differences == []


def test_migrating_twice_changes_nothing(rt: bootstrap.Runtime) -> None:
    bootstrap.build(rt.settings, migrate=True).engine.dispose()


def test_an_event_seen_again_is_recorded_once_and_nudges_nothing(rt: bootstrap.Runtime) -> None:
    shop = Events("shop-1")
    event = shop.event("respondent.updated", respondent="a", groups=["G"], slots=1)
    assert intake.ingest(rt, incoming(event, event)) == {"shop-1"}
    assert intake.ingest(rt, incoming(event)) == set()
    assert count(rt, tables.inbox) == 1


def test_a_rejected_event_is_recorded_so_its_redelivery_decides_nothing(
    rt: bootstrap.Runtime,
) -> None:
    bad = Events("shop-1").event("respondent.updated", respondent="a", groups=["G"], slots=-3)
    intake.ingest(rt, incoming(bad))
    intake.ingest(rt, incoming(bad))
    assert count(rt, tables.inbox, tables.inbox.c.state == "rejected") == 1
    # one event.rejected decision and one kept copy of the body
    with rt.engine.connect() as connection:
        rows = connection.execute(
            select(
                tables.outbox.c.exchange,
                tables.outbox.c.routing_key,
                tables.outbox.c.headers,
                tables.outbox.c.body,
            )
        ).all()
    assert sorted((r.exchange, r.routing_key) for r in rows) == [
        ("", "chat.events.rejected"),
        ("chat.decisions", "shop-1.event.rejected"),
    ]
    copy = next(r for r in rows if r.exchange == "")
    assert json.loads(copy.body) == bad
    assert "data.slots" in copy.headers["x-reject-reason"]


def test_a_wrong_content_type_is_rejected(rt: bootstrap.Runtime) -> None:
    event = Events("shop-1").event("rule.deleted", rule="x")
    intake.ingest(rt, [intake.Incoming(json.dumps(event).encode(), "text/xml")])
    with rt.engine.connect() as connection:
        body = connection.scalar(select(tables.outbox.c.body).where(tables.outbox.c.exchange != ""))
    assert json.loads(body)["data"]["reason"] == (
        "content type 'text/xml' is not application/cloudevents+json or application/json"
    )


def test_a_relay_that_dies_before_marking_republishes_the_same_ids(rt: bootstrap.Runtime) -> None:
    shop = Events("shop-1")
    intake.ingest(rt, incoming(shop.event("rule.deleted", rule="nope")))
    apply.apply_tenant(rt, "shop-1")
    published: list[OutgoingMessage] = []

    def crash_after_publishing(messages: list[OutgoingMessage]) -> None:
        published.extend(messages)
        raise ConnectionError("relay died before marking")

    now = datetime.now(UTC)
    with rt.engine.connect() as connection, pytest.raises(ConnectionError):
        outbox.relay_once(connection, crash_after_publishing, now)
    with rt.engine.connect() as connection:
        outbox.relay_once(connection, published.extend, now)
        assert outbox.relay_once(connection, published.extend, now) == 0
    ids = [m.decision_id for m in published]
    assert len(ids) == 4 and ids[:2] == ids[2:]


def test_a_waiting_relay_wakes_when_a_transaction_adds_decisions(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox, "IDLE_LOOK_S", 15.0)  # longer than the test waits for it
    rt = bootstrap.build(Settings(database_url=pg_url), migrate=True)
    woken = threading.Event()
    with rt.engine.connect() as connection:
        wait = outbox.waiter(connection, poll_s=60.0)
        waiting = threading.Thread(target=lambda: (wait(), woken.set()), daemon=True)
        waiting.start()
        time.sleep(0.2)  # let it block in the wait
        assert not woken.is_set()
        intake.ingest(rt, incoming(Events("shop-1").event("rule.deleted", rule="nope")))
        apply.apply_tenant(rt, "shop-1")  # its rejection goes to the outbox
        assert woken.wait(10.0), "the relay was not woken by the commit"
        assert outbox.relay_once(connection, lambda messages: None, datetime.now(UTC)) == 2
    rt.engine.dispose()


def test_a_relay_whose_connection_dies_while_waiting_sees_an_outage(pg_url: str) -> None:
    rt = bootstrap.build(Settings(database_url=pg_url), migrate=True)
    with rt.engine.connect() as connection:
        wait = outbox.waiter(connection, poll_s=60.0)
        pid = connection.scalar(text("SELECT pg_backend_pid()"))
        connection.commit()
        with rt.engine.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(OperationalError):
            for _ in range(20):  # the end of the connection reaches the client at its next read
                wait()
    rt.engine.dispose()


def test_apply_is_idempotent_and_skips_a_tenant_another_worker_holds(
    db_url: str, rt: bootstrap.Runtime
) -> None:
    shop = Events("shop-1")
    shop.rule("all", "G")
    shop.respondent("a", ["G"], slots=1)
    shop.start("c1")
    intake.ingest(rt, incoming(*shop.lines))
    if db_url.startswith("postgresql"):
        with unit.tenant_work(rt.sessions, "shop-1", rt.clock.now()) as holder:
            assert holder is not None
            assert apply.apply_tenant(rt, "shop-1") is False  # skipped, not blocked
    apply.apply_tenant(rt, "shop-1")
    apply.apply_tenant(rt, "shop-1")
    assert count(rt, tables.inbox, tables.inbox.c.state == "applied") == len(shop.lines)
    assert count(rt, tables.outbox) == 1


def out_of_order_day() -> list[dict]:
    """Events for c9 arrive before c9 starts, with other conversations in between."""
    shop = Events("shop-1")
    shop.rule("all", "G")
    shop.respondent("a", ["G"], slots=1)
    shop.respondent("b", ["G"], slots=1)
    early = shop.event("message.posted", conversation="c9", author="visitor")
    early_close = shop.event("conversation.closed", conversation="c9")
    shop.lines.remove(early)
    shop.lines.remove(early_close)
    shop.start("c1")
    shop.lines.append(early)
    shop.lines.append(early_close)
    shop.start("c2")
    shop.start("c9")  # queued; its held message and close apply right after its start
    shop.start("c3")  # so c3 is first in the queue
    shop.event("conversation.closed", conversation="c1")
    return shop.lines


def decisions(rt: bootstrap.Runtime) -> list[tuple[str, str, str, object]]:
    with rt.engine.connect() as connection:
        bodies = connection.scalars(select(tables.outbox.c.body).order_by(tables.outbox.c.seq))
        found = [json.loads(b) for b in bodies]
    return [
        (d["type"], d["data"]["conversation"], d["causationid"], d["data"].get("position"))
        for d in found
    ]


def test_one_batch_decides_what_one_event_per_batch_decides(db_url: str, tmp_path: object) -> None:
    events = out_of_order_day()
    per_line = bootstrap.build(
        Settings(database_url=f"sqlite:///{tmp_path}/lines.db"), migrate=True
    )
    for event in events:
        intake.ingest(per_line, incoming(event))
        while apply.apply_tenant(per_line, "shop-1"):
            pass
    whole = bootstrap.build(Settings(database_url=db_url), migrate=True)
    intake.ingest(whole, incoming(*events))
    while apply.apply_tenant(whole, "shop-1"):
        pass
    assert decisions(whole) == decisions(per_line)
    assert decisions(whole)[2:4] == [
        ("conversation.queued", "c9", events[-3]["id"], 1),
        ("conversation.queued", "c3", events[-2]["id"], 1),
    ]
    per_line.engine.dispose()
    whole.engine.dispose()


def unapplied_attempts(rt: bootstrap.Runtime) -> dict[str, tuple[str, int]]:
    c = tables.inbox.c
    with rt.engine.connect() as connection:
        rows = connection.execute(select(c.event_id, c.state, c.attempts)).all()
    return {event_id: (state, n) for event_id, state, n in rows}


def one_respondent_and_c1() -> Events:
    shop = Events("shop-1")
    shop.rule("all", "G")
    shop.respondent("a", ["G"], slots=5)
    shop.start("c1")
    return shop


def snoozed_for_ten_minutes(
    pg_url: str, clock: VirtualClock, *conversations: str
) -> tuple[bootstrap.Runtime, Events, datetime]:
    """A tenant on ``clock`` (at START) whose ``conversations`` are snoozed until the time
    returned, all applied."""
    rt = bootstrap.build(Settings(database_url=pg_url), clock, migrate=True)
    shop = Events("shop-1", now=START)
    shop.rule("all", "G")
    shop.respondent("a", ["G"], slots=5)
    until = START + timedelta(minutes=10)
    for cid in conversations:
        shop.start(cid)
        shop.event("conversation.snoozed", conversation=cid, respondent="a", until=rfc3339(until))
    intake.ingest(rt, incoming(*shop.lines))
    while apply.apply_tenant(rt, "shop-1"):
        pass
    return rt, shop, until


def test_rows_whose_tries_ended_the_worker_are_applied_alone_then_set_aside(
    pg_url: str,
) -> None:
    rt = bootstrap.build(Settings(database_url=pg_url), migrate=True)
    shop = one_respondent_and_c1()
    poison = shop.event("message.posted", conversation="c1", author="visitor")
    shop.start("c2")
    intake.ingest(rt, incoming(*shop.lines))
    c = tables.inbox.c
    # Given a batch whose try died (its rows counted, nothing applied), and then two more
    # tries of the poison event alone that died too
    attempts.count(rt.engine, [row.seq for row in inbox_rows(rt)])
    poison_seq = next(r.seq for r in inbox_rows(rt) if r.event_id == poison["id"])
    attempts.count(rt.engine, [poison_seq])
    attempts.count(rt.engine, [poison_seq])
    # When the tenant is applied again
    while apply.apply_tenant(rt, "shop-1"):
        pass
    # Then every other event is applied, one transaction each, and the poison is set aside
    states = unapplied_attempts(rt)
    assert states.pop(poison["id"]) == ("rejected", 3)
    assert {state for state, _ in states.values()} == {"applied"}
    with rt.engine.connect() as connection:
        reason = connection.scalar(select(c.reason).where(c.event_id == poison["id"]))
    assert reason == "set aside: 3 tries ended the worker process"
    # And a batch that finishes leaves no count behind, so later events go in batches again
    shop.event("conversation.closed", conversation="c2")
    intake.ingest(rt, incoming(shop.lines[-1]))
    apply.apply_tenant(rt, "shop-1")
    assert unapplied_attempts(rt)[shop.lines[-1]["id"]] == ("applied", 1)
    rt.engine.dispose()


def test_a_try_that_ends_with_an_exception_takes_its_counts_back(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Found by the chaos run: three PostgreSQL restarts under the same rows set them aside.
    rt = bootstrap.build(Settings(database_url=pg_url), migrate=True)
    shop = one_respondent_and_c1()
    shop.start("c2")
    intake.ingest(rt, incoming(*shop.lines))

    def server_gone(*_: object) -> None:
        raise OperationalError("COMMIT", {}, Exception("server closed the connection"))

    # Given a try that ends with a database error (its process lives on)
    monkeypatch.setattr(apply.lifecycle, "handle", server_gone)
    with pytest.raises(OperationalError):
        apply.apply_tenant(rt, "shop-1")
    # Then its rows keep no try
    assert {n for _, n in unapplied_attempts(rt).values()} == {0}
    # Given another, whose counts the database cannot take back at once
    with pytest.raises(OperationalError), monkeypatch.context() as down:
        down.setattr(attempts.Tries, "take_back", server_gone)
        apply.apply_tenant(rt, "shop-1")
    # When the database answers, the counts go back soon, without waiting for another try
    monkeypatch.undo()
    deadline = time.monotonic() + 5
    while {n for _, n in unapplied_attempts(rt).values()} != {0}:
        assert time.monotonic() < deadline, unapplied_attempts(rt)
        time.sleep(0.05)
    # And the rows apply together, not one per transaction as suspects (each would count 2)
    while apply.apply_tenant(rt, "shop-1"):
        pass
    assert set(unapplied_attempts(rt).values()) == {("applied", 1)}
    rt.engine.dispose()


def test_a_suspect_row_behind_suspect_timers_is_counted_once_when_tried(pg_url: str) -> None:
    # Found by the chaos run: each suspect timer before it ended a transaction (fired alone)
    # after the row had been counted, so the row reached 3 tries without one, and was set aside.
    clock = VirtualClock(START)
    rt, shop, _ = snoozed_for_ten_minutes(pg_url, clock, "c1", "c2")
    # Given two wake-ups and a later event, all three in a try that never finished
    late = shop.at(START + timedelta(minutes=11)).event("conversation.closed", conversation="c1")
    intake.ingest(rt, received_when_dated(late))
    t = tables.timers.c
    with rt.engine.begin() as connection:
        connection.execute(update(tables.timers).values(attempts=1))
    attempts.count(rt.engine, [row.seq for row in inbox_rows(rt)])
    clock.advance_to(START + timedelta(minutes=12))
    # When the tenant is applied again, each alone
    while apply.apply_tenant(rt, "shop-1"):
        pass
    # Then both timers fired and the event applied, tried once more each, not set aside
    with rt.engine.connect() as connection:
        assert set(connection.execute(select(t.state, t.attempts)).all()) == {("fired", 2)}
    assert unapplied_attempts(rt)[late["id"]] == ("applied", 2)
    rt.engine.dispose()


def test_rows_a_suspect_timer_left_unreached_are_not_counted(pg_url: str) -> None:
    clock = VirtualClock(START)
    rt, shop, until = snoozed_for_ten_minutes(pg_url, clock, "c1")
    # Given a wake-up whose firing never finished, and events before and after it
    with rt.engine.begin() as connection:
        connection.execute(update(tables.timers).values(attempts=1))
    shop.at(until - timedelta(minutes=1)).start("c2")
    shop.at(until + timedelta(minutes=1)).start("c3")
    intake.ingest(rt, received_when_dated(*shop.lines[-2:]))
    clock.advance_to(until + timedelta(minutes=2))
    # When the batch reaches the wake-up, it ends there (the wake-up fires alone next)
    assert apply.apply_tenant(rt, "shop-1")
    # Then the row after it was not counted: it was not tried
    c3 = shop.lines[-1]["id"]
    assert unapplied_attempts(rt)[c3] == ("new", 0)
    while apply.apply_tenant(rt, "shop-1"):
        pass
    assert unapplied_attempts(rt)[c3] == ("applied", 1)
    rt.engine.dispose()


def inbox_rows(rt: bootstrap.Runtime) -> list[inbox.InboxRow]:
    with rt.sessions.begin() as session:
        return inbox.unapplied(session, "shop-1", 100)


def test_bodies_without_a_usable_tenant_are_each_kept_even_when_they_share_an_id(
    rt: bootstrap.Runtime,
) -> None:
    # Found by tests/integration/test_fuzz.py: the second body was taken for a repeat.
    first = b'{"specversion": "1.0", "id": "e1", "tenant": "", "data": {}}'
    second = b'{"specversion": "1.0", "id": "e1", "tenant": "", "data": {"x": 1}}'
    for body in (first, second, first):
        intake.ingest(rt, [intake.Incoming(body)])
    with rt.engine.connect() as connection:
        kept = connection.scalars(
            select(tables.outbox.c.body).where(tables.outbox.c.exchange == "")
        )
        assert sorted(kept) == sorted([first, second])


def test_a_timer_whose_firings_ended_the_worker_is_fired_alone_or_set_aside(pg_url: str) -> None:
    clock = VirtualClock(START)
    rt, _, _ = snoozed_for_ten_minutes(pg_url, clock, "c1", "c2")
    t = tables.timers.c
    with rt.engine.begin() as connection:  # c1's wake ended the worker 3 times, c2's once
        connection.execute(
            update(tables.timers).where(t.conversation_id == "c1").values(attempts=3)
        )
        connection.execute(
            update(tables.timers).where(t.conversation_id == "c2").values(attempts=1)
        )
    clock.advance_to(START + timedelta(minutes=11))
    while apply.apply_tenant(rt, "shop-1"):
        pass
    with rt.engine.connect() as connection:
        states = dict(connection.execute(select(t.conversation_id, t.state)).all())
        woken = connection.scalars(
            select(tables.outbox.c.conversation_id).where(
                tables.outbox.c.routing_key == "shop-1.conversation.woken"
            )
        ).all()
    assert states == {"c1": "failed", "c2": "fired"}
    assert woken == ["c2"]
    rt.engine.dispose()
