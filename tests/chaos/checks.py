"""What the chaos run checks, against the oracle and on its own.

Against the oracle (``chatroute replay`` of each tenant's events in the order the pipeline
recorded them): every event has the same outcome; every decision the oracle made reached
``chat.decisions`` with the same id and content, in the same order per tenant, and no other;
the final state and the statistics are equal. On their own: no respondent was ever assigned
beyond their slots (replayed from the decision log, every decision type by its effect on the
slots, each move from where the conversation was), every open conversation is in exactly
one place with the timers its place arms and no others, and no timer due by the horizon is
still armed.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select

from chatroute.store import tables

# Columns whose values depend on how events were split into transactions, or on the clock that
# dated them, not on what the events decided: optimistic versions, statistics stamps and their
# times (the wall clock's or the replay's), try counters, and a tenant's count of events moved
# to another time with its last effective time (the replay receives a line at its time, the
# pipeline a while before: a site's first event, applied before it sets clock_skew_s, moves).
VOLATILE = {
    "version",
    "stats_seq",
    "stats_counter",
    "stats_changed_at",
    "attempts",
    "adjusted_events",
    "effective_at",
}
STATE_TABLES = tables.ROUTING_STATE
OPEN_STATES = {"unrouted", "queued", "assigned", "pending", "snoozed"}
HELD_STATES = {"assigned", "pending", "snoozed"}
UNROUTED_CODES = {"no_rule", "closed", "queue_full", "wait_timeout"}
# What each decision does to the slots: the assigned respondent takes one (and whoever held
# the conversation frees theirs); these free the holder's; these change nothing.
TAKES = "conversation.assigned"
FREES = {
    "conversation.queued",
    "conversation.pending",
    "conversation.snoozed",
    "conversation.unrouted",
    "conversation.closed",
}
NEUTRAL = {"conversation.woken", "visitor.notify", "respondent.paused"}
# The causes of a move, by decision type. A missed answer deadline always takes the
# conversation from the respondent who held it in a slot, a reassignment from a hold or from
# a holder away, to someone else; the others never find it in a slot (a transfer's event
# frees it before its decision).
CAUSES = {
    "conversation.assigned": {
        "new",
        "queue",
        "transfer",
        "wake",
        "reassign",
        "overflow",
        "no_answer",
    },
    "conversation.queued": {"new", "transfer", "wake", "reassign", "overflow", "no_answer"},
}
FROM_A_SLOT = {"no_answer"}
MAYBE_FROM_A_SLOT = {"reassign"}

Snapshot = dict[str, dict[tuple[Any, ...], dict[str, Any]]]


@dataclass(frozen=True)
class InboxEntry:
    seq: int
    tenant: str
    event_id: str
    type: str
    state: str
    reason: str | None
    body: str
    event_time: datetime
    received_at: datetime


@dataclass
class Findings:
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    overbooked: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    redelivered: int = 0  # a decision seen again with its id: allowed (at least once)

    def summary(self) -> dict[str, int]:
        return {
            "lost": len(self.lost),
            "duplicated": len(self.duplicated),
            "overbooked": len(self.overbooked),
            "violations": len(self.violations),
        }


# ---------------------------------------------------------------- reading a store


def inbox(engine: Engine) -> list[InboxEntry]:
    c = tables.inbox.c
    query = select(
        c.seq, c.tenant, c.event_id, c.type, c.state, c.reason, c.body, c.event_time, c.received_at
    ).order_by(c.seq)
    with engine.connect() as connection:
        return [InboxEntry(*row) for row in connection.execute(query)]


def snapshot(engine: Engine) -> Snapshot:
    """Every state table, by primary key, without the volatile columns."""
    found: Snapshot = {}
    with engine.connect() as connection:
        for table in STATE_TABLES:
            keys = [column.name for column in table.primary_key.columns]
            rows = connection.execute(select(table)).mappings()
            found[table.name] = {
                tuple(row[k] for k in keys): {k: v for k, v in row.items() if k not in VOLATILE}
                for row in rows
            }
    return found


# ---------------------------------------------------------------- against the oracle


def events(
    published: Iterable[tuple[str, str]], seen: list[InboxEntry], oracle: list[InboxEntry]
) -> Findings:
    """Every published event recorded and decided (applied, or rejected with a reason),
    with the oracle's outcome."""
    found = Findings()
    recorded = {(e.tenant, e.event_id): e for e in seen}
    expected = {(e.tenant, e.event_id): e for e in oracle}
    for key in sorted(set(published)):
        entry = recorded.get(key)
        if entry is None or entry.state == "new":
            found.lost.append(f"event {key} never {'recorded' if entry is None else 'applied'}")
            continue
        if entry.state == "rejected" and not entry.reason:
            found.violations.append(f"event {key} rejected without a reason")
        twin = expected.get(key)
        if twin is None or (twin.state, twin.reason) != (entry.state, entry.reason):
            theirs = None if twin is None else (twin.state, twin.reason)
            found.violations.append(
                f"event {key}: {entry.state} ({entry.reason}) but the oracle: {theirs}"
            )
    return found


def decisions(seen: list[dict[str, Any]], oracle: list[dict[str, Any]]) -> Findings:
    """The decision log against the oracle's decisions."""
    found = Findings()
    first: dict[str, dict[str, Any]] = {}
    for decision in seen:
        earlier = first.get(decision["id"])
        if earlier is None:
            first[decision["id"]] = decision
            continue
        found.redelivered += 1
        if earlier != decision:
            found.duplicated.append(f"decision {decision['id']} came with two contents")
    expected = {d["id"]: d for d in oracle}
    causes: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for d in oracle:
        causes[(d["tenant"], d["causationid"], d["type"])].add(d["id"])
    for decision_id, decision in first.items():
        twin = expected.get(decision_id)
        if twin is None:
            cause = (decision["tenant"], decision["causationid"], decision["type"])
            (found.duplicated if cause in causes else found.violations).append(
                f"decision {decision_id} ({cause}) that the oracle did not make"
            )
        elif _essence(twin) != _essence(decision):
            found.violations.append(
                f"decision {decision_id}: {_essence(decision)} but the oracle: {_essence(twin)}"
            )
    found.lost += [
        f"decision {i} ({expected[i]['type']}) never published" for i in expected if i not in first
    ]
    found.violations += _order(list(first.values()), oracle)
    return found


def _essence(decision: dict[str, Any]) -> dict[str, Any]:
    # A rejection at intake is stamped with the clock's time: the wall clock or a virtual one.
    skip = {"time"} if decision["type"] == "event.rejected" else set()
    return {k: v for k, v in decision.items() if k not in skip}


def _order(seen: list[dict[str, Any]], oracle: list[dict[str, Any]]) -> list[str]:
    """Per tenant, decisions (but rejections, decided when the event arrives) in the oracle's
    order."""

    def by_tenant(ds: list[dict[str, Any]]) -> dict[str, list[str]]:
        grouped: dict[str, list[str]] = defaultdict(list)
        for d in ds:
            if d["type"] != "event.rejected":
                grouped[d["tenant"]].append(d["id"])
        return grouped

    ours, theirs = by_tenant(seen), by_tenant(oracle)
    wrong = []
    for tenant in sorted(set(ours) | set(theirs)):
        a, b = ours.get(tenant, []), theirs.get(tenant, [])
        if a != b:
            at = next(
                (n for n, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                min(len(a), len(b)),
            )
            wrong.append(f"tenant {tenant}: decisions out of the oracle's order from #{at}")
    return wrong


def state(seen: Snapshot, oracle: Snapshot) -> Findings:
    found = Findings()
    for table, rows in oracle.items():
        ours = seen.get(table, {})
        for key in sorted(set(rows) | set(ours), key=repr):
            if rows.get(key) != ours.get(key):
                found.violations.append(
                    f"{table} {key}: {ours.get(key)} but the oracle: {rows.get(key)}"
                )
    return found


def statistics(seen: list[dict[str, Any]], oracle: list[dict[str, Any]]) -> Findings:
    found = Findings()

    def keyed(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
        return {(r["tenant"], r["respondent"]): r for r in rows}

    ours, theirs = keyed(seen), keyed(oracle)
    for key in sorted(set(ours) | set(theirs)):
        if not _same_row(ours.get(key), theirs.get(key)):
            found.violations.append(
                f"stats {key}: {ours.get(key)} but the oracle: {theirs.get(key)}"
            )
    return found


def _same_row(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """Equal, but for floating-point sums taken in another order (PostgreSQL, SQLite)."""
    if a is None or b is None or a.keys() != b.keys():
        return a == b
    return all(
        math.isclose(a[k], b[k], rel_tol=1e-9, abs_tol=1e-9)
        if isinstance(a[k], float) and isinstance(b[k], float)
        else a[k] == b[k]
        for k in a
    )


def kept_copies(seen: list[dict[str, Any]], copies: set[str]) -> Findings:
    """Every rejection's original body kept in ``chat.events.rejected``."""
    found = Findings()
    for decision in seen:
        if decision["type"] == "event.rejected" and decision["id"] not in copies:
            found.lost.append(f"rejected event {decision['data']['event_id']}: body not kept")
            copies.add(decision["id"])  # once
    return found


# ---------------------------------------------------------------- on their own


def placement(seen: Snapshot, horizon: datetime) -> Findings:
    """Every open conversation in exactly one place, loads as counted, the routing policy's
    marks where they belong, each armed timer one that its conversation's place arms, timers
    due by the horizon fired."""
    found = Findings()
    queued = Counter((k[0], k[1]) for k in seen["queue_entries"])
    held = Counter((k[0], k[1]) for k in seen["pending_holds"])
    load: Counter[tuple[str, str]] = Counter()
    for (tenant, cid), c in seen["conversations"].items():
        where = c["state"]
        if where == "assigned":
            load[(tenant, c["respondent"])] += 1
        expected = (int(where == "queued"), int(where == "pending"), where in HELD_STATES)
        actual = (queued[(tenant, cid)], held[(tenant, cid)], c["respondent"] is not None)
        if where not in OPEN_STATES | {"closed"} or expected != actual:
            found.violations.append(
                f"conversation {tenant}/{cid} is {where} with (queue entries, holds, "
                f"respondent) = {actual}"
            )
        found.violations += _policy_marks(seen, tenant, cid, c)
    for (tenant, rid), r in seen["respondents"].items():
        if r["load"] != load[(tenant, rid)]:
            found.violations.append(
                f"respondent {tenant}/{rid}: load {r['load']}, holds {load[(tenant, rid)]}"
            )
    for (tenant, tid), t in seen["timers"].items():
        if t["state"] != "armed":
            continue
        if t["due"] <= horizon:
            found.violations.append(f"timer {tenant}/{tid} due {t['due']} never fired")
        wrong = _misplaced_timer(seen, tenant, t)
        if wrong:
            found.violations.append(f"timer {tenant}/{tid} armed, but {wrong}")
    return found


def _policy_marks(seen: Snapshot, tenant: str, cid: str, c: dict[str, Any]) -> list[str]:
    """The v2 marks of a conversation, against its state: the rule's target it waits at
    (queued by its rule only, in that target's queue, the entry with its priority), its
    unrouted code (unrouted only, with a group but for ``no_rule``), an idle close (closed)."""
    wrong = []
    where, name = c["state"], f"conversation {tenant}/{cid} ({c['state']})"
    entry = seen["queue_entries"].get((tenant, cid))
    if c["target"] is not None:
        targets = c["rule_targets"] or []
        group = targets[c["target"]]["group"] if 0 <= c["target"] < len(targets) else None
        if where != "queued" or entry is None or entry["group_id"] != group:
            wrong.append(f"{name} waits at target {c['target']} ({group}) of {targets}")
    if entry is not None and entry["priority"] != c["priority"]:
        wrong.append(f"{name}: priority {c['priority']}, its queue entry's {entry['priority']}")
    code = c["unrouted_code"]
    if where == "unrouted" and (
        code not in UNROUTED_CODES or (code == "no_rule") != (c["group_id"] is None)
    ):
        wrong.append(f"{name}: code {code}, group {c['group_id']}")
    if c["close_cause"] == "idle" and where != "closed":
        wrong.append(f"{name} closed for idleness")
    return wrong


def _misplaced_timer(seen: Snapshot, tenant: str, t: dict[str, Any]) -> str | None:
    """Why an armed timer should not be armed, or None: each kind belongs to a place (a
    wake to a snooze, a reassignment to a hold or to a holder away, an overflow to a rule's
    queue, an answer deadline to an unanswered contact, an idle close to an awake open one
    while the setting is on); every move and a close cancel the timers of the place left."""
    c = seen["conversations"].get((tenant, t["conversation_id"]))
    if c is None or c["state"] == "closed":
        return "its conversation is " + ("unknown" if c is None else "closed")
    who, where, holder = t["respondent"], c["state"], c["respondent"]
    kind = t["kind"]
    if kind == "wake":
        fits = where == "snoozed" and holder == who
    elif kind == "reassign":
        hold = seen["pending_holds"].get((tenant, t["conversation_id"]))
        away = seen["respondents"].get((tenant, who), {}).get("status") == "unavailable"
        fits = (where == "pending" and hold is not None and hold["respondent"] == who) or (
            where == "assigned" and holder == who and away
        )
    elif kind == "overflow":
        fits = where == "queued" and c["target"] is not None
    elif kind == "answer":
        contacts = [
            row
            for (ten, conversation, _), row in seen["contacts"].items()
            if ten == tenant and conversation == t["conversation_id"] and row["ended_at"] is None
        ]
        fits = (
            where == "assigned"
            and holder == who
            and len(contacts) == 1
            and contacts[0]["respondent"] == who
            and not contacts[0]["answered"]
        )
    elif kind == "idle":
        settings = seen["tenants"].get((tenant,), {})
        fits = where != "snoozed" and settings.get("close_after_idle_s") is not None
    else:
        return f"its kind {kind!r} is unknown"
    return None if fits else f"its conversation is {where} (respondent {holder})"


def overbooking(entries: list[InboxEntry], log: list[dict[str, Any]]) -> Findings:
    """Replays each tenant's decision log against its recorded events: nobody is ever assigned
    beyond their slots.

    Events that release a slot without a decision (a close) are placed by their arrival order;
    a timer's decisions come after the events that arrived before the next decided event and
    have an earlier time, as timers fire before the first event with a later time.
    """
    found = Findings()
    first: dict[str, dict[str, Any]] = {}
    for decision in log:
        first.setdefault(decision["id"], decision)
    by_tenant: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for decision in first.values():
        by_tenant[decision["tenant"]].append(decision)
    recorded: dict[str, list[InboxEntry]] = defaultdict(list)
    for entry in entries:
        recorded[entry.tenant].append(entry)
    for tenant, decided in by_tenant.items():
        slots = _Slots(tenant, recorded[tenant])
        found.overbooked += slots.replay(decided)
        found.violations += slots.wrong
    return found


class _Slots:
    """One tenant's slots, replayed: who holds which conversation (in a slot), and which
    conversations are closed. A decision that does not fit (a type it does not know, a move
    from where the conversation cannot be, a decision for a closed one) is a violation."""

    def __init__(self, tenant: str, entries: list[InboxEntry]) -> None:
        self.tenant = tenant
        self.entries = entries
        self.position = {e.event_id: n for n, e in enumerate(entries)}
        self.next = 0  # the first event not replayed yet
        self.holder: dict[str, str] = {}
        self.load: Counter[str] = Counter()
        self.slots: dict[str, int] = {}
        self.closed: set[str] = set()
        # (cause, conversation) -> the respondent who just missed its answer deadline
        self.missed: dict[tuple[str, str], str] = {}
        self.overbooked: list[str] = []
        self.wrong: list[str] = []

    def replay(self, decided: list[dict[str, Any]]) -> list[str]:
        # A rejection takes and frees no slot, and one of an event that waited for its
        # conversation comes long after the event arrived: it says nothing of the order.
        decided = [d for d in decided if d["type"] != "event.rejected"]
        for n, decision in enumerate(decided):
            cause = decision["causationid"]
            if cause in self.position:
                self._events_until(self.position[cause] + 1)
            elif cause.startswith("timer:"):
                self._events_before_timer(decided[n + 1 :], _time(decision["time"]))
            self._decision(decision)
        return self.overbooked

    def _events_until(self, end: int) -> None:
        while self.next < end:
            self._event(self.entries[self.next])
            self.next += 1

    def _events_before_timer(self, later: list[dict[str, Any]], due: datetime) -> None:
        # Events that arrived before the next decided event, with a time before the timer's.
        bound = next(
            (self.position[d["causationid"]] for d in later if d["causationid"] in self.position),
            len(self.entries),
        )
        while self.next < bound and self.entries[self.next].event_time < due:
            self._event(self.entries[self.next])
            self.next += 1

    def _event(self, entry: InboxEntry) -> None:
        if entry.state != "applied":
            return
        data = json.loads(entry.body)["data"]
        if entry.type == "respondent.updated":
            self.slots[data["respondent"]] = data["slots"]
        elif entry.type == "conversation.closed":
            # Also a frontend's close of a conversation the engine closed for idleness.
            self._release(data["conversation"])
            self.closed.add(data["conversation"])
        elif entry.type == "conversation.transferred":
            self._release(data["conversation"])

    def _decision(self, decision: dict[str, Any]) -> None:
        data, kind = decision["data"], decision["type"]
        conversation = data.get("conversation")
        if conversation in self.closed:
            self._wrong(decision, "for a closed conversation")
        if kind == TAKES:
            self._move(decision)
        elif kind in FREES:
            self._check_freeing(decision)
            self._release(conversation)
            if kind == "conversation.closed":
                self.closed.add(conversation)
        elif kind == "respondent.paused":
            # Changes no slot: it follows, in the same cause, the missed deadline's move.
            missed = self.missed.get((decision["causationid"], conversation))
            if missed != data["respondent"] or data.get("reason") != "no_answer":
                self._wrong(decision, f"but the missed deadline's respondent is {missed}")
        elif kind not in NEUTRAL:
            self._wrong(decision, "of a type the slot replay does not know")

    def _move(self, decision: dict[str, Any]) -> None:
        data = decision["data"]
        conversation, respondent, cause = (
            data["conversation"],
            data["respondent"],
            data.get("cause"),
        )
        before = self.holder.get(conversation)
        self._check_source(decision, before)
        if cause in FROM_A_SLOT | MAYBE_FROM_A_SLOT and before == respondent:
            self._wrong(decision, f"back to {before}, who held it")
        self._release(conversation)
        self.holder[conversation] = respondent
        self.load[respondent] += 1
        if self.load[respondent] > self.slots.get(respondent, 0):
            self.overbooked.append(
                f"{self.tenant}/{respondent} holds {self.load[respondent]} "
                f"(slots {self.slots.get(respondent, 0)}) after {decision['id']}"
            )

    def _check_freeing(self, decision: dict[str, Any]) -> None:
        data, kind = decision["data"], decision["type"]
        before = self.holder.get(data["conversation"])
        if kind == "conversation.queued":
            if self._announced_again(decision):
                if before is not None:
                    self._wrong(decision, f"announced again while held by {before}")
                return
            self._check_source(decision, before)
        elif kind in ("conversation.unrouted", "conversation.pending") and before is not None:
            # Only a new conversation or an overflow move from a queue ends unrouted; a hold
            # comes of a transfer (its event freed the slot) or a wake.
            self._wrong(decision, f"while held by {before}")
        elif kind == "conversation.snoozed" and before not in (None, data["respondent"]):
            self._wrong(decision, f"by {data['respondent']} while {before} held it")
        elif kind == "conversation.closed" and data.get("cause") != "idle":
            self._wrong(decision, "without cause idle (the frontend's closes decide nothing)")

    def _check_source(self, decision: dict[str, Any], before: str | None) -> None:
        """A move (assigned or queued) from where its cause says the conversation was."""
        cause = decision["data"].get("cause")
        if cause not in CAUSES[decision["type"]]:
            self._wrong(decision, "with a cause the slot replay does not know")
        elif cause in FROM_A_SLOT:
            if before is None:
                self._wrong(decision, "but nobody held it in a slot")
            else:
                self.missed[(decision["causationid"], decision["data"]["conversation"])] = before
        elif cause not in MAYBE_FROM_A_SLOT and before is not None:
            self._wrong(decision, f"while {before} held it in a slot")

    def _announced_again(self, decision: dict[str, Any]) -> bool:
        """A ``conversation.queued`` of a ``conversation.prioritized``: its place, again."""
        position = self.position.get(decision["causationid"])
        return position is not None and self.entries[position].type == "conversation.prioritized"

    def _wrong(self, decision: dict[str, Any], why: str) -> None:
        data = decision["data"]
        what = data.get("cause") or data.get("code") or data.get("reason")
        self.wrong.append(
            f"{self.tenant}: {decision['type']} ({what}) {decision['id']} of "
            f"{data.get('conversation')} {why}"
        )

    def _release(self, conversation: str) -> None:
        respondent = self.holder.pop(conversation, None)
        if respondent is not None:
            self.load[respondent] -= 1


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def merge(*parts: Findings) -> Findings:
    total = Findings()
    for part in parts:
        total.lost += part.lost
        total.duplicated += part.duplicated
        total.overbooked += part.overbooked
        total.violations += part.violations
        total.redelivered += part.redelivered
    return total
