"""Statistics (issue 5): each rule of PRODUCT.md's Statistics through ``chatroute replay``,
the stats worker's fold (exactly once in effect, rebuildable), and the per-group and per-day
rows."""

from __future__ import annotations

import io
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select, update

from chatroute import bootstrap
from chatroute.domain.contacts import respondent_figures
from chatroute.domain.model import Contact, Conversation, TenantSettings
from chatroute.settings import Settings
from chatroute.stats import Window, fold_tenant, rows, stale_tenants
from chatroute.store import tables
from chatroute.tools.replay import replay
from tests.builders import START, Events, jsonl
from tests.integration.test_replay import run


def runtime(tmp_path: Path, name: str) -> bootstrap.Runtime:
    return bootstrap.build(Settings(database_url=f"sqlite:///{tmp_path}/{name}.db"))


def by_respondent(tmp_path: Path, name: str, **window: Any) -> dict[str, dict[str, Any]]:
    rt = runtime(tmp_path, name)
    return {r["respondent"]: r for r in rows(rt, "respondent", Window("shop-1", **window))}


def pick(row: dict[str, Any], *keys: str) -> tuple[Any, ...]:
    return tuple(row[k] for k in keys)


@pytest.fixture
def shop() -> Events:
    events = Events("shop-1")
    events.rule("all", "G")
    return events


def say(shop: Events, conversation: str, respondent: str | None = None) -> None:
    if respondent is None:
        shop.event("message.posted", conversation=conversation, author="visitor")
    else:
        shop.event(
            "message.posted", conversation=conversation, author="respondent", respondent=respondent
        )


def transfer(shop: Events, conversation: str, by: str, to: str) -> None:
    shop.event(
        "conversation.transferred", conversation=conversation, respondent=by, to_respondent=to
    )


def test_a_transfer_without_an_answer_is_an_unanswered_contact(
    tmp_path: Path, shop: Events
) -> None:
    shop.respondent("a", ["G"])
    shop.respondent("b", ["G"])
    shop.start("c1")
    transfer(shop, "c1", "a", "b")
    say(shop, "c1", "b")
    shop.event("conversation.closed", conversation="c1")
    run(tmp_path, jsonl(shop.lines), name="t")
    figures = by_respondent(tmp_path, "t")
    keys = ("contacts", "answered", "unanswered", "transfers_out")
    assert pick(figures["a"], *keys) == (1, 0, 1, 1)
    assert pick(figures["b"], *keys) == (1, 1, 0, 0)


def test_an_open_contact_without_an_answer_counts_as_unanswered(
    tmp_path: Path, shop: Events
) -> None:
    shop.respondent("a", ["G"])
    shop.start("c1")
    run(tmp_path, jsonl(shop.lines), name="t")
    assert pick(by_respondent(tmp_path, "t")["a"], "contacts", "unanswered") == (1, 1)


def test_a_rating_after_a_b_a_counts_twice_for_a_once_for_b_and_a_re_rating_replaces_it(
    tmp_path: Path, shop: Events
) -> None:
    shop.respondent("a", ["G"], slots=2)
    shop.respondent("b", ["G"], slots=2)
    shop.start("c1")
    transfer(shop, "c1", "a", "b")
    transfer(shop, "c1", "b", "a")
    shop.event("conversation.closed", conversation="c1")
    shop.event("conversation.rated", conversation="c1", score=2)
    run(tmp_path, jsonl(shop.lines), name="first")
    figures = by_respondent(tmp_path, "first")
    assert pick(figures["a"], "satisfaction_count", "satisfaction_avg") == (2, 2.0)
    assert pick(figures["b"], "satisfaction_count", "satisfaction_avg") == (1, 2.0)
    shop.event("conversation.rated", conversation="c1", score=5)
    run(tmp_path, jsonl(shop.lines), name="again")
    figures = by_respondent(tmp_path, "again")
    assert pick(figures["a"], "satisfaction_count", "satisfaction_avg") == (2, 5.0)
    assert pick(figures["b"], "satisfaction_count", "satisfaction_avg") == (1, 5.0)


@pytest.mark.parametrize(
    ("commission", "expected_a", "expected_b"),
    [
        ({"mode": "percent", "rate": 0.1}, 0.0, 30.0),  # 10% of 100 + 200, all with b
        ({"mode": "per_contact", "amount": 2.5}, 2.5, 2.5),  # c1 ends with b, c2 with a
    ],
    ids=["percent", "per-contact"],
)
def test_commission_goes_to_the_last_contact_also_after_a_sale_then_transfer(
    tmp_path: Path,
    shop: Events,
    commission: dict[str, Any],
    expected_a: float,
    expected_b: float,
) -> None:
    shop.event("tenant.updated", commission=commission)
    shop.respondent("a", ["G"], slots=2)
    shop.respondent("b", ["G"], slots=2)
    shop.start("c1")
    shop.event("conversation.sale", conversation="c1", amount=100.0)
    transfer(shop, "c1", "a", "b")  # the sale was a's; the last contact is b's
    shop.event("conversation.sale", conversation="c1", amount=200.0)
    shop.start("c2")  # b is busier now: c2 goes to a, no sale
    run(tmp_path, jsonl(shop.lines), name="t")
    figures = by_respondent(tmp_path, "t")
    assert figures["a"]["commission"] == pytest.approx(expected_a)
    assert figures["b"]["commission"] == pytest.approx(expected_b)


def test_snoozes_and_first_response_time(tmp_path: Path, shop: Events) -> None:
    shop.respondent("a", ["G"])
    shop.start("c1")
    shop.later(seconds=44)
    say(shop, "c1", "a")  # 45 s after the assignment
    shop.event("conversation.snoozed", conversation="c1", respondent="a")
    say(shop, "c1")
    shop.event("conversation.snoozed", conversation="c1", respondent="a")
    run(tmp_path, jsonl(shop.lines), name="t")
    row = by_respondent(tmp_path, "t")["a"]
    assert pick(row, "contacts", "answered", "snoozes", "first_response_avg_s") == (1, 1, 2, 45.0)


def test_a_redelivered_event_never_counts_twice(tmp_path: Path, shop: Events) -> None:
    shop.respondent("a", ["G"])
    shop.start("c1")
    say(shop, "c1", "a")
    shop.event("conversation.closed", conversation="c1")
    shop.event("conversation.rated", conversation="c1", score=4)
    once = jsonl(shop.lines)
    twice = b"".join(line + b"\n" + line + b"\n" for line in once.splitlines())
    run(tmp_path, once, name="once")
    run(tmp_path, twice, name="twice")
    assert by_respondent(tmp_path, "once") == by_respondent(tmp_path, "twice")


def lifecycle_day(shop: Events) -> float:
    """Two respondents of G with one slot each, a queue, a transfer, a sale and a rating on
    the first day; an unrouted conversation; a conversation of the empty group P the next day.
    Returns how long c2 waited in G's queue, in seconds."""
    shop.event("rule.deleted", rule="all")
    shop.rule("general", "G", conditions=[{"attribute": "page", "op": "eq", "value": "g"}])
    shop.rule("phones", "P", conditions=[{"attribute": "page", "op": "eq", "value": "p"}])
    shop.event("tenant.updated", commission={"mode": "percent", "rate": 0.05})
    shop.respondent("a", ["G"])
    shop.respondent("b", ["G"])
    for n in range(4):
        shop.start(f"c{n}", page="g")  # c0 -> a, c1 -> b, c2 and c3 queued
    queued_at = shop.now
    shop.start("u1", page="nowhere")
    say(shop, "c0", "a")
    shop.later(minutes=5)
    transfer(shop, "c0", "a", "b")  # b is full: pending for b; a takes c2 from the queue
    waited = (shop.now - queued_at).total_seconds() + 1  # c2 started 1 s before c3
    shop.event("conversation.closed", conversation="c1")  # b's: c0 is delivered to b
    shop.event("conversation.sale", conversation="c0", amount=80.0)
    shop.event("conversation.rated", conversation="c0", score=5)
    shop.later(days=1)
    shop.start("d1", page="p")
    return waited


def test_group_and_day_rows(tmp_path: Path, shop: Events) -> None:
    waited = lifecycle_day(shop)
    run(tmp_path, jsonl(shop.lines), name="t")
    rt = runtime(tmp_path, "t")
    groups = {r["group"]: r for r in rows(rt, "group", Window("shop-1"))}
    assert list(groups) == ["G", "P", None]  # the unrouted row last
    g = groups["G"]
    assert pick(g, "conversations", "queued", "unrouted") == (4, 2, 0)
    assert pick(g, "contacts", "answered", "transfers_out") == (4, 1, 1)  # a, b on c0; c1; c2
    assert g["wait_avg_s"] == pytest.approx(waited / 3)  # c0 and c1 waited 0 s; c3 waits on
    assert g["wait_p90_s"] == pytest.approx(waited)
    assert pick(groups[None], "conversations", "unrouted", "contacts") == (1, 1, 0)
    assert pick(groups["P"], "conversations", "queued", "wait_avg_s") == (1, 1, None)
    days = {r["day"]: r for r in rows(rt, "day", Window("shop-1"))}
    assert sorted(days) == ["2026-11-22", "2026-11-23"]
    assert pick(days["2026-11-22"], "conversations", "contacts", "commission") == (5, 4, 4.0)
    assert pick(days["2026-11-23"], "conversations", "contacts", "queued") == (1, 0, 1)


def test_since_and_until_count_contacts_and_conversations_started_in_the_window(
    tmp_path: Path, shop: Events
) -> None:
    lifecycle_day(shop)
    run(tmp_path, jsonl(shop.lines), name="t")
    rt = runtime(tmp_path, "t")
    second_day = Window("shop-1", since=START + timedelta(hours=14))
    assert [r["conversations"] for r in rows(rt, "group", second_day)] == [1]
    first_day = Window("shop-1", until=START + timedelta(hours=14))
    assert sum(r["contacts"] for r in rows(rt, "respondent", first_day)) == 4


def test_the_fold_from_scratch_gives_the_same_rows_and_a_second_fold_changes_nothing(
    db_url: str, shop: Events
) -> None:
    lifecycle_day(shop)
    settings = Settings(database_url=db_url)
    replay(settings, io.BytesIO(jsonl(shop.lines)).readlines(), io.StringIO())
    rt = bootstrap.build(settings)
    assert stale_tenants(rt) == []
    incremental = {by: rows(rt, by) for by in ("respondent", "group", "day")}
    fold_tenant(rt, "shop-1")
    assert {by: rows(rt, by) for by in incremental} == incremental
    with rt.engine.begin() as connection:
        for table in (
            tables.contact_figures,
            tables.conversation_figures,
            tables.stats_checkpoints,
        ):
            connection.execute(delete(table))
    assert stale_tenants(rt) == ["shop-1"]
    fold_tenant(rt, "shop-1")
    assert {by: rows(rt, by) for by in incremental} == incremental


def test_the_fold_goes_in_chunks_and_a_commission_change_refolds_the_tenant(
    tmp_path: Path, shop: Events
) -> None:
    shop.respondent("a", ["G"], slots=50)
    for n in range(30):
        shop.start(f"c{n}")
        shop.event("conversation.sale", conversation=f"c{n}", amount=10.0)
    run(tmp_path, jsonl(shop.lines), name="t")
    rt = runtime(tmp_path, "t")
    with rt.engine.begin() as connection:
        connection.execute(update(tables.tenants).values(commission_rate=0.5))
    assert stale_tenants(rt) == ["shop-1"]
    assert fold_tenant(rt, "shop-1", limit=7) == 5  # 30 conversations, 7 at a time
    assert rows(rt)[0]["commission"] == pytest.approx(30 * 10.0 * 0.5)
    assert stale_tenants(rt) == []


def test_routing_stamps_each_changed_conversation_with_a_rising_seq(
    tmp_path: Path, shop: Events
) -> None:
    shop.respondent("a", ["G"])
    shop.start("c1")
    shop.start("c2")
    shop.event("conversation.rated", conversation="c1", score=3)
    run(tmp_path, jsonl(shop.lines), name="t")
    rt = runtime(tmp_path, "t")
    c = tables.conversations.c
    with rt.engine.connect() as connection:
        seqs = dict(connection.execute(select(c.conversation_id, c.stats_seq)).all())
        counter = connection.scalar(select(tables.tenants.c.stats_counter))
    assert 0 < seqs["c2"] < seqs["c1"] <= counter  # c1 changed last (its rating)


def test_the_sql_sums_equal_the_domains_figures(tmp_path: Path, shop: Events) -> None:
    """The queries sum stored figures in SQL for speed; the domain's ``respondent_figures``
    over the same contacts is the rule they must match."""
    lifecycle_day(shop)
    run(tmp_path, jsonl(shop.lines), name="t")
    rt = runtime(tmp_path, "t")
    with rt.sessions.begin() as session:
        settings = session.get(TenantSettings, "shop-1")
        contacts = session.scalars(select(Contact).where(Contact.tenant == "shop-1")).all()
        conversations = session.scalars(select(Conversation)).all()
        expected = respondent_figures(contacts, conversations, settings)
    got = {r["respondent"]: r for r in rows(rt, "respondent", Window("shop-1"))}
    assert set(expected) <= set(got)
    for rid, figures in expected.items():
        assert {k: got[rid][k] for k in asdict(figures)} == pytest.approx(asdict(figures))
