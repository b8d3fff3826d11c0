"""``chatroute whatif``: a recorded day replayed twice, as recorded and with configuration
changes, and the two outcomes compared per tenant, group and respondent.

The change run gets each change event right before its tenant's first recorded event (dated
like it), and leaves out the recorded events that would undo it: one of the same type for the
same respondent, rule or group; for ``tenant.updated``, the settings the change sets (the
recorded event keeps its other settings). So the change holds all day. In the change run, the
recording's respondents' actions are their conversation's holder's (``domain.whatif``).

Both runs are ``chatroute replay`` (each in a process of its own, side by side), and their
figures are the statistics' (``store.figures``): the baseline is what ``chatroute replay``
then ``chatroute stats`` give for the same file.
"""

from __future__ import annotations

import io
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from chatroute.domain.contacts import percentile
from chatroute.domain.whatif import holders_act
from chatroute.errors import InvalidEvent
from chatroute.settings import Settings
from chatroute.store import sums
from chatroute.store.db import make_engine
from chatroute.tools.replay import replay
from schemas.events import parse_event

# The configuration events a change file may hold, and what names the object each sets.
CHANGE_TYPES = {
    "rule.updated": "rule",
    "rule.deleted": "rule",
    "group.updated": "group",
    "respondent.updated": "respondent",
    "respondent.status": "respondent",
    "tenant.updated": None,  # its settings, one by one
}
ROUTING_OR_NOT = (
    "conversation.assigned",
    "conversation.queued",
    "conversation.pending",
    "conversation.unrouted",
)
NO_GROUP = "null"  # conversations no rule matched: JSON keys are strings


class InvalidChange(ValueError):
    """A change file line that is not a configuration event."""


# ---------------------------------------------------------------- the change file


@dataclass
class Change:
    """A change file's events by tenant, and what they set."""

    events: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    objects: set[tuple[str, str, str]] = field(default_factory=set)  # tenant, type, object
    settings: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    applied: set[str] = field(default_factory=set)  # tenants whose first event came

    def unapplied(self) -> list[str]:
        """Tenants of the change that no recorded event named: their change was not applied."""
        return sorted(set(self.events) - self.applied)

    def add(self, event: dict[str, Any]) -> None:
        tenant, kind, data = event["tenant"], event["type"], event.get("data") or {}
        self.events[tenant].append(event)
        named = CHANGE_TYPES[kind]
        if named is None:
            self.settings[tenant] |= set(data)
        else:
            self.objects.add((tenant, kind, str(data[named])))

    def undone_by(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """``event`` as the change run gets it: None when it would undo the change, or
        without the tenant settings the change sets."""
        tenant, kind = event.get("tenant"), event.get("type")
        data = event.get("data")
        if not isinstance(tenant, str) or kind not in CHANGE_TYPES or not isinstance(data, dict):
            return event
        named = CHANGE_TYPES[kind]
        if named is not None:
            return None if (tenant, kind, str(data.get(named))) in self.objects else event
        kept = {k: v for k, v in data.items() if k not in self.settings.get(tenant, set())}
        if not kept:
            return None
        return event if kept == data else {**event, "data": kept}


def read_change(lines: Iterable[bytes]) -> Change:
    """The change file's events, each a valid configuration event (``InvalidChange`` names
    the first line that is not)."""
    change = Change()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            event = parse_event(line)
        except InvalidEvent as error:
            raise InvalidChange(f"line {number}: {error.reason}") from error
        if event.type not in CHANGE_TYPES:
            allowed = ", ".join(sorted(CHANGE_TYPES))
            raise InvalidChange(f"line {number}: {event.type} is not a change ({allowed})")
        change.add(json.loads(line))
    return change


def changed(lines: Iterable[bytes], change: Change) -> Iterator[bytes]:
    """The recorded ``lines`` with ``change`` applied (see the module's docstring)."""
    for line in lines:
        event = _json(line)
        if event is None:
            yield line  # not an event: rejected in both runs alike
            continue
        tenant = event.get("tenant")
        if isinstance(tenant, str) and tenant in change.events and tenant not in change.applied:
            change.applied.add(tenant)
            yield from _dated(change.events[tenant], event.get("time"))
        kept = change.undone_by(event)
        if kept is event:
            yield line
        elif kept is not None:
            yield json.dumps(kept).encode()


def _dated(events: list[dict[str, Any]], time: Any) -> Iterator[bytes]:
    """The change events as of ``time`` (their tenant's first event's), with ids of their own
    (a change file's ids may be any: they must not meet the recording's)."""
    for number, event in enumerate(events, 1):
        dated = {**event, "id": f"whatif-{number}-{event['id']}"}
        if isinstance(time, str):
            dated["time"] = time
        yield json.dumps(dated).encode()


def _json(line: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


# ---------------------------------------------------------------- the two runs


@dataclass(frozen=True)
class Side:
    """One run's outcome."""

    figures: dict[str, Any]  # the contract's R: {"tenants": {...}}
    waits: dict[str, list[float]]  # each tenant's waits before a first assignment, seconds
    unapplied: list[str]  # the change's tenants with no recorded event (the change's run)


@dataclass(frozen=True)
class Comparison:
    baseline: Side
    change: Side

    def as_json(self) -> dict[str, Any]:
        """The contract's ``{"baseline": R, "change": R}``."""
        return {"baseline": self.baseline.figures, "change": self.change.figures}


def whatif(events: Path, change: Change, folder: Path, until: datetime | None = None) -> Comparison:
    """The two replays side by side in processes of their own, their databases in ``folder``."""
    with ProcessPoolExecutor(max_workers=2) as pool:
        baseline = pool.submit(_side, events, None, folder / "baseline.db", until)
        changed_run = pool.submit(_side, events, change, folder / "change.db", until)
        return Comparison(baseline.result(), changed_run.result())


def _side(events: Path, change: Change | None, database: Path, until: datetime | None) -> Side:
    """One replay of ``events`` (with ``change``, if any) into ``database``."""
    database.unlink(missing_ok=True)
    first = _FirstRouting()
    settings = Settings(database_url=f"sqlite:///{database}")
    with events.open("rb") as lines:
        recorded = (line.rstrip(b"\r\n") for line in lines)
        if change is None:
            replay(settings, recorded, first, until)
        else:
            replay(settings, changed(recorded, change), first, until, recast=holders_act)
    engine = make_engine(settings.database_url)
    try:
        found = sums.outcomes(engine)
    finally:
        engine.dispose()
    waits: dict[str, list[float]] = defaultdict(list)
    for tenant, _, _, _, wait_s, _ in found.conversations:
        if wait_s is not None:
            waits[tenant].append(wait_s)
    unapplied = change.unapplied() if change is not None else []
    return Side({"tenants": figures(found, first.types)}, dict(waits), unapplied)


class _FirstRouting(io.StringIO):
    """Where a replay writes its decisions (JSON lines): keeps each conversation's first
    routing decision's type, nothing else."""

    def __init__(self) -> None:
        super().__init__()
        self.types: dict[tuple[str, str], str] = {}
        self._rest = ""

    def write(self, text: str) -> int:
        *complete, self._rest = (self._rest + text).split("\n")
        for line in complete:
            decision = json.loads(line)
            if decision["type"] in ROUTING_OR_NOT:
                key = (decision["tenant"], decision["data"]["conversation"])
                self.types.setdefault(key, decision["type"])
        return len(text)


# ---------------------------------------------------------------- the figures


def figures(found: sums.Outcomes, first: dict[tuple[str, str], str]) -> dict[str, Any]:
    """Per tenant: the figures of all its conversations, of each group's, and per respondent."""
    tenants: dict[str, _Tenant] = defaultdict(_Tenant)
    for tenant, conversation, group, queued, wait_s, code in found.conversations:
        at_once = first.get((tenant, conversation)) == "conversation.assigned"
        for scope in tenants[tenant].scopes(group):
            scope.conversation(at_once, queued, wait_s, code)
    left: dict[tuple[str, str], set[str]] = defaultdict(set)
    for tenant, conversation, group in found.overflows:
        left[(tenant, conversation)].add(group)
    for (tenant, _), groups in left.items():
        tenants[tenant].whole.overflowed += 1
        for group in groups:
            tenants[tenant].group(group).overflowed += 1
    for tenant, respondent, group, answered, commission in found.contacts:
        for scope in tenants[tenant].scopes(group):
            scope.unanswered += 1 - answered
            scope.commission += commission
        tenants[tenant].respondents[respondent].update(contacts=1, answered=answered)
    for tenant, respondent in found.respondents:
        tenants[tenant].respondents[respondent].update(contacts=0)
    return {name: tenants[name].as_json() for name in sorted(tenants)}


@dataclass
class _Figures:
    conversations: int = 0
    assigned_at_once: int = 0
    queued: int = 0
    unrouted: Counter[str] = field(default_factory=Counter)
    overflowed: int = 0
    waits: list[float] = field(default_factory=list)
    unanswered: int = 0
    commission: float = 0.0

    def conversation(
        self, at_once: bool, queued: int, wait_s: float | None, code: str | None
    ) -> None:
        self.conversations += 1
        self.assigned_at_once += at_once
        self.queued += queued
        if code is not None:
            self.unrouted[code] += 1
        if wait_s is not None:
            self.waits.append(wait_s)

    def as_json(self) -> dict[str, Any]:
        return {
            "conversations": self.conversations,
            "assigned_at_once": self.assigned_at_once,
            "queued": self.queued,
            "unrouted": dict(sorted(self.unrouted.items())),
            "overflowed": self.overflowed,
            "wait_p50_s": percentile(self.waits, 50) if self.waits else None,
            "wait_p90_s": percentile(self.waits, 90) if self.waits else None,
            "unanswered": self.unanswered,
            "commission": round(self.commission, 6),  # sums of floats: no noise in the last digit
        }


@dataclass
class _Tenant:
    whole: _Figures = field(default_factory=_Figures)
    groups: dict[str, _Figures] = field(default_factory=lambda: defaultdict(_Figures))
    respondents: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))

    def group(self, group: str | None) -> _Figures:
        return self.groups[NO_GROUP if group is None else group]

    def scopes(self, group: str | None) -> tuple[_Figures, _Figures]:
        return self.whole, self.group(group)

    def as_json(self) -> dict[str, Any]:
        respondents = {
            name: {
                "contacts": counts["contacts"],
                "answered": counts["answered"],
                "unanswered": counts["contacts"] - counts["answered"],
            }
            for name, counts in sorted(self.respondents.items())
        }
        groups = {name: self.groups[name].as_json() for name in sorted(self.groups)}
        return self.whole.as_json() | {"groups": groups, "respondents": respondents}


# ---------------------------------------------------------------- the table

LINES = (
    ("conversations", "conversations"),
    ("assigned at once", "assigned_at_once"),
    ("queued", "queued"),
    ("overflowed", "overflowed"),
    ("wait p50 (s)", "wait_p50_s"),
    ("wait p90 (s)", "wait_p90_s"),
    ("unanswered contacts", "unanswered"),
    ("commission", "commission"),
)
PER_RESPONDENT = ("contacts", "answered", "unanswered")


def render(compared: Comparison) -> str:
    """The comparison as aligned text: per tenant, its groups, its respondents."""
    base, other = compared.baseline.figures["tenants"], compared.change.figures["tenants"]
    out = [f"{'':34}{'baseline':>12}{'change':>12}{'delta':>12}"]
    for tenant in sorted(base.keys() | other.keys()):
        b, c = base.get(tenant, {}), other.get(tenant, {})
        out.append(f"tenant {tenant}")
        out += _figure_lines(b, c, "  ")
        for group in sorted(b.get("groups", {}).keys() | c.get("groups", {}).keys()):
            out.append(f"  group {group}")
            out += _figure_lines(
                b.get("groups", {}).get(group, {}), c.get("groups", {}).get(group, {}), "    "
            )
        out += _respondent_lines(b.get("respondents", {}), c.get("respondents", {}))
    return "\n".join(out)


def figure_rows(b: dict[str, Any], c: dict[str, Any]) -> list[tuple[str, str, Any, Any]]:
    """A tenant's or group's figures side by side: (label, key, baseline, change), then one
    row per unrouted code."""
    rows = [(label, key, b.get(key), c.get(key)) for label, key in LINES]
    codes = sorted(b.get("unrouted", {}).keys() | c.get("unrouted", {}).keys())
    rows += [
        (
            f"unrouted: {code}",
            "unrouted",
            b.get("unrouted", {}).get(code, 0),
            c.get("unrouted", {}).get(code, 0),
        )
        for code in codes
    ]
    return rows


def _figure_lines(b: dict[str, Any], c: dict[str, Any], indent: str) -> list[str]:
    return [
        f"{indent}{label:{34 - len(indent)}}{cell(x):>12}{cell(y):>12}{delta(x, y):>12}"
        for label, _, x, y in figure_rows(b, c)
    ]


def _respondent_lines(b: dict[str, Any], c: dict[str, Any]) -> list[str]:
    names = sorted(b.keys() | c.keys())
    if not names:
        return []
    out = ["  respondent" + "".join(f"{name:>20}" for name in PER_RESPONDENT)]
    for name in names:
        cells = [
            f"{cell(b.get(name, {}).get(k, 0))} -> {cell(c.get(name, {}).get(k, 0))}"
            for k in PER_RESPONDENT
        ]
        out.append(f"    {name:8}" + "".join(f"{cell:>20}" for cell in cells))
    return out


def cell(value: Any) -> str:
    """A figure as the table and the page show it."""
    if value is None:
        return "-"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def delta(x: Any, y: Any) -> str:
    """The change's figure minus the baseline's, signed ("" when one is missing)."""
    if x is None or y is None:
        return ""
    difference = y - x
    if isinstance(difference, float):
        return f"{difference:+.2f}"
    return f"{difference:+d}" if difference else "0"
