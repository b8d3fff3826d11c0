"""Contact outcomes per respondent: the figures behind ``chatroute stats``.

Pure functions over contacts and conversations; the caller loads them (one tenant) and
formats the rows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from chatroute.domain.model import Contact, Conversation, TenantSettings

PER_CONTACT = "per_contact"


@dataclass(frozen=True)
class Figures:
    """One respondent's row of the statistics (without tenant and respondent id)."""

    contacts: int
    answered: int
    unanswered: int
    transfers_out: int
    snoozes: int
    satisfaction_count: int
    satisfaction_avg: float | None
    commission: float
    first_response_avg_s: float | None


def respondent_figures(
    contacts: Iterable[Contact],
    conversations: Iterable[Conversation] | Mapping[str, Conversation],
    settings: TenantSettings,
) -> dict[str, Figures]:
    """Figures for every respondent with at least one contact, by respondent id."""
    by_id = _index(conversations)
    own: dict[str, list[Contact]] = defaultdict(list)
    for contact in contacts:
        own[contact.respondent].append(contact)
    credit = _commissions([c for cs in own.values() for c in cs], by_id, settings)
    return {rid: _figures(own[rid], by_id, credit.get(rid, 0.0)) for rid in sorted(own)}


def _index(
    conversations: Iterable[Conversation] | Mapping[str, Conversation],
) -> dict[str, Conversation]:
    rows = conversations.values() if isinstance(conversations, Mapping) else conversations
    return {conversation.conversation_id: conversation for conversation in rows}


def _figures(
    own: Sequence[Contact], conversations: Mapping[str, Conversation], commission: float
) -> Figures:
    answered = [c for c in own if c.answered]
    ratings = [r for c in own if (r := _rating(conversations, c)) is not None]
    delays = [
        (c.first_response_at - c.started_at).total_seconds()
        for c in answered
        if c.first_response_at is not None
    ]
    return Figures(
        contacts=len(own),
        answered=len(answered),
        unanswered=len(own) - len(answered),
        transfers_out=sum(c.end_reason == "transfer" for c in own),
        snoozes=sum(c.snoozes for c in own),
        satisfaction_count=len(ratings),
        satisfaction_avg=_mean(ratings),
        commission=commission,
        first_response_avg_s=_mean(delays),
    )


def _rating(conversations: Mapping[str, Conversation], contact: Contact) -> int | None:
    conversation = conversations.get(contact.conversation_id)
    return None if conversation is None else conversation.rating


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _commissions(
    contacts: Iterable[Contact], conversations: Mapping[str, Conversation], settings: TenantSettings
) -> dict[str, float]:
    """Each conversation's commission, credited to the respondent of its last contact."""
    last: dict[str, Contact] = {}
    for contact in contacts:
        seen = last.get(contact.conversation_id)
        if seen is None or contact.number > seen.number:
            last[contact.conversation_id] = contact
    credit: dict[str, float] = defaultdict(float)
    for cid, contact in sorted(last.items()):
        credit[contact.respondent] += conversation_commission(conversations.get(cid), settings)
    return credit


def conversation_commission(conversation: Conversation | None, settings: TenantSettings) -> float:
    """Per-contact mode: the flat amount; percent mode: rate x the conversation's sales."""
    if settings.commission_mode == PER_CONTACT:
        return settings.commission_amount
    sales = 0.0 if conversation is None else conversation.sales
    return settings.commission_rate * sales
