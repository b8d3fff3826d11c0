"""Why a decision went where it went: the ``explain`` of contract v2 ("Decisions: v2 fields").

An explanation is built before the decision changes anything, so its figures are as they
were when the choice was made. Counting a group's members never walks the group: the view
keeps a census of them (``TenantView.census``), and only the few passed over are looked at.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chatroute.domain.model import AVAILABLE, Respondent

if TYPE_CHECKING:  # the port names Census: a cycle at run time
    from chatroute.domain.ports import TenantView

# How many eligible respondents an explanation shows, in choice order.
SHOWN = 3
FREE, FULL, UNAVAILABLE = "free", "full", "unavailable"


@dataclass(frozen=True)
class Census:
    """How many members a group has, and how many of them are unavailable or full (available
    with every slot taken); the rest are free."""

    members: int = 0
    unavailable: int = 0
    full: int = 0

    @property
    def free(self) -> int:
        return self.members - self.unavailable - self.full


def standing(respondent: Respondent) -> str:
    """``free``, ``full`` or ``unavailable``: what a member counts as in its groups' census."""
    return standing_of(respondent.status, respondent.load, respondent.slots)


def standing_of(status: str, load: int, slots: int) -> str:
    if status != AVAILABLE:
        return UNAVAILABLE
    return FULL if load >= slots else FREE


@dataclass(frozen=True)
class Skip:
    """A target of a rule passed over, and why: ``closed`` or ``queue_full``."""

    group: str
    why: str


@dataclass(frozen=True)
class Way:
    """How routing came to a group: by a rule (its id, the target's index, the targets
    passed over before it), or not by rule (a transfer, a wake, a reassignment...)."""

    rule: str | None = None
    target: int | None = None
    skipped: Sequence[Skip] = ()

    def at(self, target: int | None) -> Way:
        return Way(self.rule, target, self.skipped)

    def fields(self) -> dict[str, Any]:
        skipped = [{"group": skip.group, "why": skip.why} for skip in self.skipped]
        return {"rule": self.rule, "target": self.target, "skipped": skipped}


NOT_BY_RULE = Way()


def candidate(respondent: Respondent) -> dict[str, Any]:
    """A respondent as a choice saw them."""
    return {
        "respondent": respondent.respondent_id,
        "load": respondent.load,
        "slots": respondent.slots,
        "last_assigned_at": respondent.last_assigned_at,
    }


def no_choice(way: Way, respondent: Respondent | None = None) -> dict[str, Any]:
    """Where nothing was chosen among members: a freed slot taking from its queue, a transfer
    to a respondent, a wake with keep, a sticky assignment (``respondent``), or nobody at all
    (an unrouted conversation, a queued one moved by its priority)."""
    shown = [] if respondent is None else [candidate(respondent)]
    return way.fields() | {"candidates": shown, "eligible": None, "ineligible": None}


def choice(
    view: TenantView,
    group: str,
    way: Way,
    eligible: Sequence[Respondent],
    passed_over: Collection[str],
) -> dict[str, Any]:
    """A choice among ``group``'s free members: ``eligible``, in choice order, are those it
    could pick (at least the best few, as ``TenantView.free_respondents`` promises), the first
    one chosen; ``passed_over`` are the respondents it could not pick (the snoozer or the
    sender while someone else was free, whoever missed the deadline or is moved away from)."""
    census = view.census(group)
    excluded = [view.respondent(rid) for rid in sorted(passed_over)]
    members = [r for r in excluded if r is not None and group in r.groups]
    out = {FREE: 0, FULL: 0, UNAVAILABLE: 0}
    for member in members:
        out[standing(member)] += 1
    return way.fields() | {
        "candidates": [candidate(r) for r in eligible[:SHOWN]],
        "eligible": census.free - out[FREE],
        "ineligible": {
            "excluded": len(members),
            "unavailable": census.unavailable - out[UNAVAILABLE],
            "full": census.full - out[FULL],
        },
    }


def census_of(members: Iterable[Respondent]) -> Census:
    """The census of these members, counted one by one (a view that has them all at hand:
    the loop is ``standing``'s, inline, as it runs for every member of a group)."""
    total = unavailable = full = 0
    for member in members:
        total += 1
        if member.status != AVAILABLE:
            unavailable += 1
        elif member.load >= member.slots:
            full += 1
    return Census(total, unavailable, full)
