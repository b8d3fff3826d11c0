"""The stats worker's fold: changed conversations become stored contact, conversation and
overflow figures.

Figures are snapshots, recomputed whole from a conversation and its contacts and written over
the previous ones, never increments: folding a conversation twice, or two folds racing, can
not count anything twice, and a fold from scratch gives the same rows as the incremental ones.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

from sqlalchemy import Table, delete, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from chatroute.domain.contacts import (
    ContactOutcome,
    ConversationOutcome,
    contact_outcomes,
    conversation_outcome,
)
from chatroute.domain.model import Contact, Conversation, TenantSettings
from chatroute.store import tables
from chatroute.store.inbox import insert_ignoring_duplicates
from chatroute.store.view import stats_counter

FOLD_LIMIT = 2000  # conversations per transaction


def commission_terms(settings: TenantSettings) -> str:
    """The commission terms figures were folded under: a change refolds the tenant."""
    return f"{settings.commission_mode}:{settings.commission_rate!r}:{settings.commission_amount!r}"


def fold(session: Session, tenant: str, limit: int = FOLD_LIMIT) -> bool:
    """Fold ``tenant``'s conversations changed since its checkpoint (at most ``limit``).

    Returns True when more may be waiting. Another fold of the same tenant holding the
    checkpoint makes this one return at once: it will fold what is there.
    """
    settings = session.get(TenantSettings, tenant)
    checkpoint = _lock_checkpoint(session, tenant)
    if settings is None or checkpoint is None:
        return False
    # Read before the conversations: whatever committed up to this value is visible below.
    counter = stats_counter(settings)
    terms = commission_terms(settings)
    since = checkpoint.seq if checkpoint.commission == terms else -1
    changed = _changed(session, tenant, since, limit)
    _store(session, tenant, changed, settings)
    full = len(changed) == limit
    reached = int(getattr(changed[-1], "stats_seq")) if full else counter  # noqa: B009
    c = tables.stats_checkpoints.c
    session.execute(
        update(tables.stats_checkpoints)
        .where(c.tenant == tenant)
        .values(seq=reached, commission=terms)
    )
    return full


def _lock_checkpoint(session: Session, tenant: str) -> Any:
    table = tables.stats_checkpoints
    row = {"tenant": tenant, "seq": -1, "commission": ""}
    insert_ignoring_duplicates(session.connection(), table, [row])
    query = select(table).where(table.c.tenant == tenant)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return session.execute(query).first()


def _changed(session: Session, tenant: str, since: int, limit: int) -> list[Conversation]:
    stats_seq = tables.conversations.c.stats_seq
    query = (
        select(Conversation)
        .where(Conversation.tenant == tenant, stats_seq > since)
        .order_by(stats_seq)
        .limit(limit)
    )
    return list(session.scalars(query))


def _store(
    session: Session, tenant: str, conversations: Sequence[Conversation], settings: TenantSettings
) -> None:
    if not conversations:
        return
    ids = [c.conversation_id for c in conversations]
    contacts: dict[str, list[Contact]] = defaultdict(list)
    query = select(Contact).where(Contact.tenant == tenant, Contact.conversation_id.in_(ids))
    for contact in session.scalars(query):
        contacts[contact.conversation_id].append(contact)
    for table in FIGURES:
        session.execute(
            delete(table).where(table.c.tenant == tenant, table.c.conversation_id.in_(ids))
        )
    for table, rows in figure_rows(tenant, conversations, contacts, settings).items():
        if rows:
            session.execute(insert(table), rows)


FIGURES = (tables.contact_figures, tables.conversation_figures, tables.overflow_figures)


def figure_rows(
    tenant: str,
    conversations: Iterable[Conversation],
    contacts: Mapping[str, Sequence[Contact]],
    settings: TenantSettings,
) -> dict[Table, list[dict[str, Any]]]:
    """The rows of ``FIGURES`` for ``conversations`` (``contacts``: theirs, by conversation)."""
    contact_rows: list[dict[str, Any]] = []
    conversation_rows: list[dict[str, Any]] = []
    overflow_rows: list[dict[str, Any]] = []
    for conversation in conversations:
        own = list(contacts.get(conversation.conversation_id, []))
        contact_rows += [_row(tenant, o) for o in contact_outcomes(conversation, own, settings)]
        outcome = conversation_outcome(conversation, own)
        conversation_rows.append(_row(tenant, outcome))
        overflow_rows += _overflow_rows(tenant, outcome)
    return dict(zip(FIGURES, (contact_rows, conversation_rows, overflow_rows), strict=True))


def checkpoint_row(settings: TenantSettings) -> dict[str, Any]:
    """``settings``' tenant's checkpoint once every change up to now is folded."""
    terms = commission_terms(settings)
    return {"tenant": settings.tenant, "seq": stats_counter(settings), "commission": terms}


def _row(tenant: str, outcome: ContactOutcome | ConversationOutcome) -> dict[str, Any]:
    """The outcome as a row: its group in ``group_id``, its UTC day, flags as 0 or 1 (a
    conversation's overflow moves go to rows of their own)."""
    row = asdict(outcome)
    row.pop("overflows", None)
    group = row.pop("group")
    flags = {k: int(v) for k, v in row.items() if isinstance(v, bool)}
    day = outcome.started_at.date().isoformat()
    return row | flags | {"tenant": tenant, "group_id": group, "day": day}


def _overflow_rows(tenant: str, outcome: ConversationOutcome) -> list[dict[str, Any]]:
    """A row per overflow move, dated (and windowed) by its conversation's start."""
    day = outcome.started_at.date().isoformat()
    return [
        asdict(move)
        | {
            "tenant": tenant,
            "conversation_id": outcome.conversation_id,
            "started_at": outcome.started_at,
            "day": day,
        }
        for move in outcome.overflows
    ]


def fold_all(sessions: sessionmaker[Session], tenant: str, limit: int = FOLD_LIMIT) -> int:
    """Fold all of ``tenant``'s changed conversations, ``limit`` per transaction; returns how
    many transactions it took."""
    rounds = 1
    while True:
        with sessions.begin() as session:
            more = fold(session, tenant, limit)
        if not more:
            return rounds
        rounds += 1


def stale_tenants(sessions: sessionmaker[Session]) -> list[str]:
    """Tenants with conversations changed since their checkpoint, or new commission terms."""
    with sessions.begin() as session:
        return _stale(session)


def _stale(session: Session) -> list[str]:
    c = tables.stats_checkpoints.c
    folded = {
        tenant: (seq, terms)
        for tenant, seq, terms in session.execute(select(c.tenant, c.seq, c.commission))
    }
    stale = []
    for settings in session.scalars(select(TenantSettings).order_by(TenantSettings.tenant)):
        seq, terms = folded.get(settings.tenant, (-1, ""))
        if stats_counter(settings) > seq or (seq >= 0 and terms != commission_terms(settings)):
            stale.append(settings.tenant)
    return stale
