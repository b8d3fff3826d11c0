"""``chatroute history``: one conversation's timeline, events and decisions in the order they
happened, with its snoozes, reopenings, overflows, missed answer deadlines, the pauses they
caused and idle closes marked, so a respondent sees what came before."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from chatroute.bootstrap import Runtime
from chatroute.store import inbox, reads
from schemas.decisions import format_time

MARKS = {
    "conversation.snoozed": "snoozed",
    "conversation.woken": "reopened",
    # contract v2: the engine made its holder unavailable after a missed answer deadline (the
    # decision names the conversation, so it is in this one's history)
    "respondent.paused": "respondent paused",
}
# A decision's cause (``data.cause``) worth a mark of its own (contract v2).
CAUSE_MARKS = {
    ("conversation.assigned", "overflow"): "overflowed",
    ("conversation.queued", "overflow"): "overflowed",
    ("conversation.assigned", "no_answer"): "deadline missed",
    ("conversation.queued", "no_answer"): "deadline missed",
    ("conversation.closed", "idle"): "closed: idle",
}
# An unrouted conversation, by code: an overflow move that no later target took.
CODE_MARKS = {("conversation.unrouted", "wait_timeout"): "overflowed: no target left"}


def timeline(rt: Runtime, tenant: str, conversation: str) -> list[dict[str, Any]]:
    """Events (applied or rejected), each followed by what it decided; timer decisions come
    before the first event later than them."""
    event_rows, decision_bodies = reads.conversation_record(rt.engine, tenant, conversation)
    events = [_event(row) for row in event_rows]
    decisions = [_decision(body) for body in decision_bodies]
    caused: dict[str, list[dict[str, Any]]] = {}
    timed: list[dict[str, Any]] = []
    for decision in decisions:
        if decision["cause"].startswith("timer:"):
            timed.append(decision)
        else:
            caused.setdefault(decision["cause"], []).append(decision)
    entries: list[dict[str, Any]] = []
    for event in events:
        while timed and _instant(timed[0]) <= _instant(event):
            entries.append(timed.pop(0))
        entries += [event, *caused.get(event["id"], [])]
    return entries + timed


def _event(row: Any) -> dict[str, Any]:
    data = json.loads(row.body)["data"]
    entry = {
        # When the engine took it to happen (timers fire in that order), and its own time.
        "at": format_time(row.effective_at or row.event_time),
        "time": format_time(row.event_time),
        "kind": "event",
        "type": row.type,
        "id": row.event_id,
        "data": data,
    }
    if row.state == inbox.REJECTED:
        entry["rejected"] = row.reason
    return entry


def _decision(body: str) -> dict[str, Any]:
    decision = json.loads(body)
    entry = {
        "at": decision["time"],
        "kind": "decision",
        "type": decision["type"],
        "id": decision["id"],
        "cause": decision["causationid"],
        "data": decision["data"],
    }
    mark = _mark(decision["type"], decision["data"])
    if mark is not None:
        entry["mark"] = mark
    return entry


def _mark(kind: str, data: dict[str, Any]) -> str | None:
    """The readable mark of a decision that changes the course of the conversation, if any."""
    return (
        MARKS.get(kind)
        or CAUSE_MARKS.get((kind, data.get("cause")))
        or CODE_MARKS.get((kind, data.get("code")))
    )


def _instant(entry: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(entry["at"].replace("Z", "+00:00"))
