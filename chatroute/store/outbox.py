"""The outbox: decisions commit with the state change that caused them, then a relay sends them.

A relay that crashes between publishing and marking a row sent publishes it again with the
same decision id, so a decision is never lost and never carries two ids.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update
from sqlalchemy.orm import Session

from chatroute.amqp import DECISIONS_EXCHANGE, REJECTED_QUEUE
from chatroute.store import tables
from chatroute.store.inbox import insert_ignoring_duplicates


@dataclass(frozen=True)
class OutgoingMessage:
    seq: int
    decision_id: str
    exchange: str
    routing_key: str
    body: bytes
    headers: dict[str, Any] | None


def decision_row(decision: dict[str, Any], created_at: datetime) -> dict[str, Any]:
    """An outbox row publishing ``decision`` (a full envelope) to ``chat.decisions``."""
    return {
        "decision_id": decision["id"],
        "tenant": decision["tenant"],
        "exchange": DECISIONS_EXCHANGE,
        "routing_key": f"{decision['tenant']}.{decision['type']}",
        "conversation_id": decision["data"].get("conversation"),
        "body": json.dumps(decision, separators=(",", ":"), ensure_ascii=False).encode(),
        "headers": None,
        "created_at": created_at,
    }


def rejected_copy_row(
    decision_id: str, tenant: str, body: bytes, reason: str, created_at: datetime
) -> dict[str, Any]:
    """An outbox row keeping a rejected event's original body in ``chat.events.rejected``."""
    return {
        "decision_id": f"copy:{decision_id}",
        "tenant": tenant,
        "exchange": "",
        "routing_key": REJECTED_QUEUE,
        "conversation_id": None,
        "body": body,
        "headers": {"x-reject-reason": reason, "x-decision-id": decision_id},
        "created_at": created_at,
    }


def add(session: Session, rows: list[dict[str, Any]]) -> None:
    """Queue rows for the relay; a row whose decision id exists already is left as it is."""
    insert_ignoring_duplicates(session.connection(), tables.outbox, rows)


def unsent(connection: Connection, limit: int) -> list[OutgoingMessage]:
    c = tables.outbox.c
    query = (
        select(c.seq, c.decision_id, c.exchange, c.routing_key, c.body, c.headers)
        .where(c.sent_at.is_(None))
        .order_by(c.seq)
        .limit(limit)
    )
    return [OutgoingMessage(*row) for row in connection.execute(query)]


def mark_sent(connection: Connection, seqs: list[int], at: datetime) -> None:
    c = tables.outbox.c
    connection.execute(update(tables.outbox).where(c.seq.in_(seqs)).values(sent_at=at))


def relay_once(
    connection: Connection,
    publish: Callable[[list[OutgoingMessage]], None],
    now: datetime,
    limit: int = 500,
) -> int:
    """Publish the oldest unsent rows (``publish`` returns once the broker confirmed them)."""
    with connection.begin():
        messages = unsent(connection, limit)
    if not messages:
        return 0
    publish(messages)
    with connection.begin():
        mark_sent(connection, [m.seq for m in messages], now)
    return len(messages)
