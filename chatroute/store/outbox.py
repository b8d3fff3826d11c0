"""The outbox: decisions commit with the state change that caused them, then a relay sends them.

A relay that crashes between publishing and marking a row sent publishes it again with the
same decision id, so a decision is never lost and never carries two ids.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from chatroute.amqp import DECISIONS_EXCHANGE, REJECTED_QUEUE
from chatroute.store import tables
from chatroute.store.inbox import insert_ignoring_duplicates
from chatroute.store.kept import KeptBody

RELAY_LOCK_KEY = 0x63686174  # "chat": one relay at a time keeps decisions in commit order

# On PostgreSQL a transaction that adds rows notifies this channel (delivered at commit, once
# per transaction), so the relay sleeps until there is work instead of polling.
CHANNEL = "chatroute_outbox"
# Without a notification the relay still looks this often: a safety net, and how soon it
# notices it must stop.
IDLE_LOOK_S = 0.5


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


@dataclass(frozen=True)
class Origin:
    """How a message reached ``chat.events``, kept on its rejected copy (known at intake only:
    the inbox does not record it)."""

    routing_key: str | None = None
    content_type: str | None = None
    # CloudEvents binary content mode: the body kept is its structured-mode translation.
    binary: bool = False
    # The message's ``user_id`` property: its publisher's RabbitMQ user, as the broker checked
    # it (store.publishers); None when the publisher did not set it.
    user_id: str | None = None


def rejected_copy_row(
    decision_id: str,
    tenant: str,
    body: KeptBody,
    reason: str,
    created_at: datetime,
    origin: Origin | None = None,
) -> dict[str, Any]:
    """An outbox row keeping a rejected event's original body (at most 64 KiB of it) in
    ``chat.events.rejected``; the headers say what it was and how it came."""
    headers: dict[str, Any] = {
        "x-reject-reason": reason,
        "x-decision-id": decision_id,
        "x-body-size": body.size,
        "x-body-sha256": body.sha256,
        "x-body-truncated": body.truncated,
    }
    if origin is not None:
        headers["x-original-routing-key"] = origin.routing_key
        headers["x-original-content-type"] = origin.content_type
        headers["x-cloudevents-mode"] = "binary" if origin.binary else "structured"
        headers["x-original-user-id"] = origin.user_id
    return {
        "decision_id": f"copy:{decision_id}",
        "tenant": tenant,
        "exchange": "",
        "routing_key": REJECTED_QUEUE,
        "conversation_id": None,
        "body": body.head,
        "headers": {name: value for name, value in headers.items() if value is not None},
        "created_at": created_at,
    }


def add(session: Session, rows: list[dict[str, Any]]) -> None:
    """Queue rows for the relay; a row whose decision id exists already is left as it is."""
    insert_ignoring_duplicates(session.connection(), tables.outbox, rows)
    if rows and session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"NOTIFY {CHANNEL}"))


def waiter(connection: Connection, poll_s: float) -> Callable[[], None]:
    """How a relay on ``connection`` waits for new rows: until a committing transaction
    notifies (PostgreSQL; at most ``IDLE_LOOK_S``), else ``poll_s``. Listening starts now, so
    rows committed before it are found by the relay's next look, not by a notification."""
    if connection.dialect.name != "postgresql":
        return lambda: time.sleep(poll_s)
    connection.execute(text(f"LISTEN {CHANNEL}"))
    connection.commit()
    driver = connection.connection.driver_connection
    assert driver is not None

    def wait() -> None:
        try:
            for _ in driver.notifies(timeout=IDLE_LOOK_S, stop_after=1):
                pass  # one is enough: a look finds every committed row
        except psycopg.OperationalError as error:
            # The driver's own error, outside any statement: report it as the engine would.
            raise OperationalError(f"LISTEN {CHANNEL}", None, error) from error

    return wait


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


def relay_all(
    engine: Engine, publish: Callable[[list[OutgoingMessage]], None], now: datetime
) -> None:
    """Publish every unsent row, in commit order (``chatroute replay``: nobody else relays)."""
    with engine.connect() as connection:
        while relay_once(connection, publish, now):
            pass


@contextmanager
def leading(engine: Engine) -> Iterator[Connection | None]:
    """A connection that holds the relay lock (one relay publishes at a time), or None while
    another process holds it. The lock, and any listening, end with the block.

    On PostgreSQL each of the relay's statements commits by itself: its reads and marks need
    no BEGIN and COMMIT around them, one round trip each on the way of every decision."""
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.execution_options(isolation_level="AUTOCOMMIT")
        try:
            yield connection if _hold_relay_lock(connection) else None
        finally:
            _release_relay_lock(connection)


def _release_relay_lock(connection: Connection) -> None:
    # A session lock would outlive this loop on a pooled connection and starve other relays;
    # so would the listening, piling up notifications nobody reads.
    if connection.dialect.name != "postgresql":
        return
    try:
        connection.rollback()
        connection.execute(text("SELECT pg_advisory_unlock_all()"))
        connection.execute(text("UNLISTEN *"))
        connection.commit()
    except Exception:
        connection.invalidate()


def _hold_relay_lock(connection: Connection) -> bool:
    if connection.dialect.name != "postgresql":
        return True
    acquired = connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": RELAY_LOCK_KEY})
    connection.commit()
    return bool(acquired.scalar())
