"""Contact outcomes: what each contact and conversation counts for in the statistics.

Pure functions. The stats worker turns every changed conversation into outcomes (one per
contact, one for the conversation) and stores them; ``chatroute stats`` and the report sum
them. Attribution across a conversation's contacts lives here and only here: a rating applies
to every contact, the commission to the last one.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from chatroute.domain.model import Contact, Conversation, TenantSettings

PER_CONTACT = "per_contact"
TRANSFER = "transfer"
# Why a conversation is unrouted (contract v2, ``conversation.unrouted``'s ``code``).
NO_RULE = "no_rule"
UNROUTED_CODES = (NO_RULE, "closed", "queue_full", "wait_timeout")


@dataclass(frozen=True)
class ContactOutcome:
    """One contact as the statistics count it."""

    conversation_id: str
    number: int
    respondent: str
    group: str | None
    started_at: datetime
    answered: bool
    transferred: bool
    transferred_to: str | None  # the next contact's respondent, after a transfer
    snoozes: int
    rating: int | None  # the conversation's score, applied to each of its contacts
    commission: float  # non-zero on the conversation's last contact only
    first_response_s: float | None


@dataclass(frozen=True)
class OverflowMove:
    """A conversation leaving a queue its rule put it in after the target's ``wait_s``:
    ``to_group`` None when no later target took it (``wait_timeout``)."""

    number: int  # 1 for the conversation's first move, then 2, 3, ...
    from_group: str
    to_group: str | None


@dataclass(frozen=True)
class ConversationOutcome:
    """One conversation as the per-group statistics count it."""

    conversation_id: str
    # Its first contact's group; without one, its group: the one it waits in, the first
    # target's of its rule (``closed``, ``queue_full``), the one it left (``wait_timeout``);
    # None when no rule matched.
    group: str | None
    started_at: datetime
    queued: bool  # it waited in a group's queue at least once
    wait_s: float | None  # from its start to its first assignment
    unrouted: bool
    # no_rule | closed | queue_full | wait_timeout; None when routed. A conversation stored
    # before contract v2 (no code) with neither group nor contact was one no rule matched.
    unrouted_code: str | None = None
    overflows: tuple[OverflowMove, ...] = ()


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


def contact_outcomes(
    conversation: Conversation | None, contacts: Sequence[Contact], settings: TenantSettings
) -> list[ContactOutcome]:
    """The outcomes of one conversation's contacts, by contact number."""
    ordered = sorted(contacts, key=lambda c: c.number)
    rating = None if conversation is None else conversation.rating
    commission = conversation_commission(conversation, settings)
    # A transfer to a respondent who could not take it yet leaves the conversation pending
    # for them: they are its target even before their contact starts.
    waiting_for = None if conversation is None else conversation.respondent
    return [
        _outcome(
            contact,
            ordered[i + 1].respondent if i + 1 < len(ordered) else waiting_for,
            i + 1 == len(ordered),
            rating,
            commission,
        )
        for i, contact in enumerate(ordered)
    ]


def _outcome(
    contact: Contact, next_holder: str | None, last: bool, rating: int | None, commission: float
) -> ContactOutcome:
    transferred = contact.end_reason == TRANSFER
    first_response = (
        (contact.first_response_at - contact.started_at).total_seconds()
        if contact.answered and contact.first_response_at is not None
        else None
    )
    return ContactOutcome(
        conversation_id=contact.conversation_id,
        number=contact.number,
        respondent=contact.respondent,
        group=contact.group,
        started_at=contact.started_at,
        answered=contact.answered,
        transferred=transferred,
        transferred_to=next_holder if transferred and next_holder != contact.respondent else None,
        snoozes=contact.snoozes,
        rating=rating,
        commission=commission if last else 0.0,
        first_response_s=first_response,
    )


def conversation_outcome(
    conversation: Conversation, contacts: Sequence[Contact]
) -> ConversationOutcome:
    """How ``conversation`` counts: contacts of any end (a ``no_answer`` or ``idle`` one too)
    only give its first wait and group."""
    first = min(contacts, key=lambda c: c.number) if contacts else None
    wait = None if first is None else first.started_at - conversation.started_at
    code = conversation.unrouted_code
    if code is None and conversation.group is None and first is None:
        code = NO_RULE  # before contract v2, no rule matching was the only way
    moves = tuple(
        OverflowMove(number, str(from_group), to_group)
        for number, (from_group, to_group) in enumerate(conversation.overflows or [], start=1)
    )
    return ConversationOutcome(
        conversation_id=conversation.conversation_id,
        group=first.group if first is not None else conversation.group,
        started_at=conversation.started_at,
        queued=conversation.queued_at is not None,
        wait_s=None if wait is None else wait.total_seconds(),
        unrouted=code is not None,
        unrouted_code=code,
        overflows=moves,
    )


def summarise(outcomes: Iterable[ContactOutcome]) -> Figures:
    """The figures of a set of contact outcomes (one respondent's, a group's, a day's)."""
    rows = list(outcomes)
    answered = sum(o.answered for o in rows)
    ratings = [o.rating for o in rows if o.rating is not None]
    delays = [o.first_response_s for o in rows if o.first_response_s is not None]
    return Figures(
        contacts=len(rows),
        answered=answered,
        unanswered=len(rows) - answered,
        transfers_out=sum(o.transferred for o in rows),
        snoozes=sum(o.snoozes for o in rows),
        satisfaction_count=len(ratings),
        satisfaction_avg=_mean(ratings),
        commission=sum(o.commission for o in rows),
        first_response_avg_s=_mean(delays),
    )


def respondent_figures(
    contacts: Iterable[Contact],
    conversations: Iterable[Conversation] | Mapping[str, Conversation],
    settings: TenantSettings,
) -> dict[str, Figures]:
    """Figures for every respondent with at least one contact, by respondent id."""
    rows = conversations.values() if isinstance(conversations, Mapping) else conversations
    by_id = {conversation.conversation_id: conversation for conversation in rows}
    per_conversation: dict[str, list[Contact]] = defaultdict(list)
    for contact in contacts:
        per_conversation[contact.conversation_id].append(contact)
    own: dict[str, list[ContactOutcome]] = defaultdict(list)
    for cid, its_contacts in per_conversation.items():
        for outcome in contact_outcomes(by_id.get(cid), its_contacts, settings):
            own[outcome.respondent].append(outcome)
    return {rid: summarise(own[rid]) for rid in sorted(own)}


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank percentile (the waits' p90): the smallest value with at least p% of
    ``values`` at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def conversation_commission(conversation: Conversation | None, settings: TenantSettings) -> float:
    """Per-contact mode: the flat amount; percent mode: rate x the conversation's sales."""
    if settings.commission_mode == PER_CONTACT:
        return settings.commission_amount
    sales = 0.0 if conversation is None else conversation.sales
    return settings.commission_rate * sales
