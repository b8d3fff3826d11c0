"""Tenant isolation as a property (CONTRACT.md: "one tenant's events can never read or change
another tenant's state"): random event streams for three tenants that reuse the same
conversation, respondent, group, rule and event ids give each tenant the same decisions, the
same final state and the same statistics whether its events are replayed alone or interleaved
with the others'."""

from __future__ import annotations

import io
import itertools
import json
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, select

from chatroute import bootstrap
from chatroute.settings import Settings
from chatroute.stats import Window, rows
from chatroute.store import tables
from chatroute.tools.replay import replay
from tests.builders import START, rfc3339

TENANTS = ("t1", "t2", "t3")
CONVERSATIONS = ("c1", "c2")
RESPONDENTS = ("r1", "r2")
GROUPS = ("g1", "g2")
# Every table of a tenant's state and statistics (inbox and outbox number rows across
# tenants, so they are compared through the decisions instead).
STATE = ("tenants", "respondents", "memberships", "rules", "groups", "conversations",
         "queue_entries", "pending_holds", "contacts", "timers", "stats_checkpoints",
         "contact_figures", "conversation_figures", "overflow_figures")  # fmt: skip
# Columns that count or date the transactions writing a row, not what happened (a tenant's
# version counts its applying transactions): interleaving splits a tenant's lines into more
# transactions (replay applies a run of one tenant's lines in one), so these differ without
# any tenant seeing another.
PER_TRANSACTION = {
    "respondents": {"version"},
    "conversations": {"stats_seq", "stats_changed_at"},
    "tenants": {"stats_counter", "version"},
    "stats_checkpoints": {"seq"},
}
UNTIL = START + timedelta(days=3)

conversation = st.sampled_from(CONVERSATIONS)
respondent = st.sampled_from(RESPONDENTS)
# Who acts on a conversation: mostly r1, the one who is surely available and so holds most.
holder = st.sampled_from(["r1", "r1", "r2"])
taker = st.sampled_from(["r2", "r2", "r1"])
group = st.sampled_from(GROUPS)
language = st.sampled_from(["fr", "en"])

started = st.tuples(
    st.just("conversation.started"),
    st.fixed_dictionaries(
        {
            "conversation": conversation,
            "visitor": st.just("v1"),
            "attributes": st.fixed_dictionaries({"language": language}),
        }
    ),
)
# (type, data) of one event; many are refused by the domain, which is part of what is compared.
event_data = st.one_of(
    st.tuples(st.just("respondent.updated"), st.fixed_dictionaries(
        {"respondent": respondent, "groups": st.lists(group, min_size=1, max_size=2, unique=True),
         "slots": st.integers(0, 2)})),
    st.tuples(st.just("respondent.status"), st.fixed_dictionaries(
        {"respondent": respondent, "status": st.sampled_from(["available", "unavailable"])})),
    st.tuples(st.just("rule.updated"), st.fixed_dictionaries(
        {"rule": st.sampled_from(["rule1", "rule2"]), "group": group, "priority": st.integers(0, 2),
         "conditions": st.lists(st.fixed_dictionaries(
             {"attribute": st.just("language"), "op": st.just("eq"), "value": language}),
             max_size=1)})),
    st.tuples(st.just("rule.deleted"), st.fixed_dictionaries({"rule": st.just("rule1")})),
    st.tuples(st.just("tenant.updated"), st.fixed_dictionaries(
        {"reassign_after_s": st.sampled_from([120, 3600])})),
    started,
    st.tuples(st.just("message.posted"), st.one_of(
        st.fixed_dictionaries({"conversation": conversation, "author": st.just("visitor")}),
        st.fixed_dictionaries({"conversation": conversation, "author": st.just("respondent"),
                               "respondent": holder}))),
    st.tuples(st.just("visitor.presence"), st.fixed_dictionaries(
        {"conversation": conversation, "online": st.booleans()})),
    st.tuples(st.just("conversation.transferred"), st.one_of(
        st.fixed_dictionaries({"conversation": conversation, "respondent": holder,
                               "to_respondent": taker, "comment": st.just("over to you")}),
        st.fixed_dictionaries({"conversation": conversation, "respondent": holder,
                               "to_group": group}))),
    st.tuples(st.just("conversation.snoozed"), st.fixed_dictionaries(
        {"conversation": conversation, "respondent": holder, "keep": st.booleans()},
        optional={"minutes": st.integers(1, 90)})),
    st.tuples(st.just("conversation.closed"),
              st.fixed_dictionaries({"conversation": conversation})),
    st.tuples(st.just("conversation.rated"), st.fixed_dictionaries(
        {"conversation": conversation, "score": st.integers(1, 5)})),
    st.tuples(st.just("conversation.sale"), st.fixed_dictionaries(
        {"conversation": conversation, "amount": st.sampled_from([0, 12.5, 100])})),
    # routing policy v2
    st.tuples(st.just("rule.updated"), st.fixed_dictionaries(
        {"rule": st.just("rule2"), "priority": st.just(0),
         "targets": st.just([{"group": "g2", "wait_s": 60}, {"group": "g1"}])})),
    st.tuples(st.just("group.updated"), st.fixed_dictionaries(
        {"group": group, "max_queue": st.sampled_from([None, 0, 1]),
         "hours": st.sampled_from([None, {"timezone": "Europe/Paris", "weekly": {}}])})),
    st.tuples(st.just("conversation.prioritized"), st.fixed_dictionaries(
        {"conversation": conversation, "priority": st.sampled_from([-3, 0, 9])})),
    st.tuples(st.just("tenant.updated"), st.fixed_dictionaries(
        {"sticky_within_s": st.sampled_from([0, 3600]),
         "answer_within_s": st.sampled_from([None, 120]),
         "pause_on_no_answer": st.booleans(),
         "close_after_idle_s": st.sampled_from([None, 900])})),
)  # fmt: skip


def routable(slots: tuple[int, int]) -> list[tuple[int, Any]]:
    """Steps that make a tenant routable: a rule for g1, r1 (available) and r2 in it, with
    the given slots, and its conversations started, so that the drawn events find them to
    assign, queue, hold, move, snooze and wake."""
    return [
        (0, ("rule.updated", {"rule": "rule1", "group": "g1", "priority": 1})),
        (0, ("respondent.updated", {"respondent": "r1", "groups": ["g1"], "slots": slots[0]})),
        (
            0,
            ("respondent.updated", {"respondent": "r2", "groups": list(GROUPS), "slots": slots[1]}),
        ),
        (0, ("respondent.status", {"respondent": "r1", "status": "available"})),
        *[
            (1, ("conversation.started", {"conversation": c, "visitor": "v1"}))
            for c in CONVERSATIONS
        ],
    ]


setup = st.tuples(st.integers(1, 2), st.integers(0, 2)).map(routable)
# Conversations start more often than anything else happens to them.
event = st.one_of(event_data, started, started)
# Seconds between a tenant's events: often together, sometimes past a snooze or a reassignment.
gap = st.sampled_from([0, 1, 2, 10, 45, 600, 5400])
# An event, or (None) a repeat of the tenant's previous event, as a redelivery would be.
step = st.tuples(gap, st.one_of(event, st.none()))


def stream(tenant: str, steps: list[tuple[int, Any]]) -> list[dict[str, Any]]:
    """The tenant's events; ids e1, e2, ... are the same in every tenant."""
    events: list[dict[str, Any]] = []
    now, ids = START, itertools.count(1)
    for seconds, drawn in steps:
        now += timedelta(seconds=seconds)
        if drawn is None:
            if events:
                events.append(events[-1])
            continue
        kind, data = drawn
        data = dict(data)
        if "minutes" in data:
            data["until"] = rfc3339(now + timedelta(minutes=data.pop("minutes")))
        envelope = {"specversion": "1.0", "id": f"e{next(ids)}", "source": "widget"}
        events.append(
            envelope | {"type": kind, "time": rfc3339(now), "tenant": tenant, "data": data}
        )
    return events


def interleaved(streams: list[list[dict[str, Any]]], picks: list[int]) -> list[dict[str, Any]]:
    """All streams in one, in time order, each tenant's in its own order; among tenants whose
    next events have the same time, ``picks`` choose which goes first."""
    heads = [list(s) for s in streams]
    merged: list[dict[str, Any]] = []
    while waiting := [h for h in heads if h]:
        first = min(h[0]["time"] for h in waiting)
        candidates = [h for h in waiting if h[0]["time"] == first]
        pick = picks[len(merged) % len(picks)]
        merged.append(candidates[pick % len(candidates)].pop(0))
    return merged


def run(events: list[dict[str, Any]], folder: Path) -> tuple[list[dict[str, Any]], Settings]:
    folder.mkdir()
    config = Settings(database_url=f"sqlite:///{folder}/replay.db")
    out = io.StringIO()
    body = b"".join(json.dumps(e).encode() + b"\n" for e in events)
    replay(config, io.BytesIO(body).readlines(), out, until=UNTIL)
    return [json.loads(line) for line in out.getvalue().splitlines()], config


def tenant_view(config: Settings, tenant: str) -> dict[str, Any]:
    """The tenant's rows in every state and statistics table, and its stats rows."""
    rt = bootstrap.build(config)
    try:
        with rt.engine.connect() as connection:
            state = {name: tenant_rows(connection, name, tenant) for name in STATE}
        for by in ("respondent", "group", "day"):
            state[f"stats by {by}"] = rows(rt, by, Window(tenant))
        return state
    finally:
        rt.engine.dispose()


def tenant_rows(connection: Connection, name: str, tenant: str) -> list[str]:
    table = tables.metadata.tables[name]
    kept = [c for c in table.c if c.name not in PER_TRANSACTION.get(name, set())]
    query = select(*kept).where(table.c.tenant == tenant)
    return sorted(repr(row) for row in connection.execute(query))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(
        st.tuples(setup, st.lists(step, min_size=4, max_size=25)).map(lambda t: t[0] + t[1]),
        min_size=2,
        max_size=3,
    ),
    picks=st.lists(st.integers(0, 2), min_size=1, max_size=10),
)
def test_each_tenant_decides_the_same_alone_or_among_others(
    steps: list[list[tuple[int, Any]]], picks: list[int]
) -> None:
    # Given streams for two or three tenants, with the same ids in each
    streams = [stream(tenant, own) for tenant, own in zip(TENANTS, steps, strict=False)]
    with tempfile.TemporaryDirectory() as folder:
        # When they are replayed together, interleaved by time
        together, shared = run(interleaved(streams, picks), Path(folder, "together"))
        for tenant, own in zip(TENANTS, streams, strict=False):
            # Then each tenant's decisions, state and statistics are those of its stream alone
            alone, apart = run(own, Path(folder, tenant))
            assert [d for d in together if d["tenant"] == tenant] == alone
            assert tenant_view(shared, tenant) == tenant_view(apart, tenant)
